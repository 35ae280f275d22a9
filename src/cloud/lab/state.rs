//! What `lab up` knows of the lab it made, kept as one JSON file in the lab's dir: the
//! render it booted, the image, and every node with its place on the fabric.

use crate::fsutil::write_atomic;
use crate::render::{ManifestNetwork, ManifestNode};
use crate::spec::Role;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabState {
    pub cluster: String,
    /// The render output `up` booted (its manifest and user-data files).
    pub out: PathBuf,
    /// The unpacked image every node's disk is an overlay of.
    pub lower: PathBuf,
    /// The cgroup (unified hierarchy) the nodes' own cgroups live under.
    pub cgroup_root: PathBuf,
    /// Masters and workers boot too (else they are stand-ins: listeners on their ports).
    pub kubernetes: bool,
    pub network: ManifestNetwork,
    pub nodes: Vec<LabNode>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabNode {
    /// Its ports' number on the fabric (veth names, MACs): fixed for the lab's life.
    pub index: usize,
    #[serde(flatten)]
    pub node: ManifestNode,
}

impl LabNode {
    /// Masters and workers: what runs kubeadm, containerd and the kubelet.
    pub fn runs_kubernetes(&self) -> bool {
        matches!(self.node.role, Role::Master | Role::Worker)
    }
}

/// How a node takes part in the lab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A container booting the image with its user-data.
    Booted,
    /// A master or worker of a lab without `--kubernetes`: a listener on its ports.
    StandIn,
}

impl LabState {
    pub const FILE: &'static str = "lab.json";

    pub fn load(dir: &Path) -> Result<LabState> {
        let path = dir.join(Self::FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                bail!(
                    "no lab in {} (run `paasgen lab up -d OUT` first)",
                    dir.display()
                )
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        serde_json::from_slice(&bytes).with_context(|| format!("{} is damaged", path.display()))
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        write_atomic(
            &dir.join(Self::FILE),
            &serde_json::to_vec_pretty(self)?,
            0o600,
        )
    }

    pub fn node(&self, name: &str) -> Result<&LabNode> {
        match self.nodes.iter().find(|n| n.node.name == name) {
            Some(n) => Ok(n),
            None => bail!("the lab has no node {name}"),
        }
    }

    pub fn kind(&self, node: &LabNode) -> Kind {
        if node.runs_kubernetes() && !self.kubernetes {
            Kind::StandIn
        } else {
            Kind::Booted
        }
    }

    /// A node this lab boots, or an error naming it.
    pub fn booted(&self, name: &str) -> Result<&LabNode> {
        let node = self.node(name)?;
        if self.kind(node) != Kind::Booted {
            bail!("{name} is a stand-in of this lab, not a booted node");
        }
        Ok(node)
    }
}
