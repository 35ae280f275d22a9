//! The render output directory: `<node>.yaml` per node and `manifest.json`.

use super::NodeDocument;
use crate::fsutil::{private_dir, write_atomic, PRIVATE, PUBLIC};
use crate::pki::hex;
use crate::spec::{Role, Spec};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub cluster: String,
    pub network: ManifestNetwork,
    pub nodes: Vec<ManifestNode>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestNetwork {
    pub private_cidr: String,
    pub private_interface: String,
    pub private_vip: String,
    pub public_cidr: String,
    pub public_gateway: String,
    pub public_interface: String,
    pub public_vip: String,
    pub api_port: u16,
    pub ingress_http_node_port: u16,
    pub ingress_https_node_port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestNode {
    pub name: String,
    pub role: Role,
    pub private_ip: String,
    pub public_ip: Option<String>,
    /// File name of the user-data, relative to the manifest.
    pub user_data: String,
    pub sha256: String,
    pub bytes: usize,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

pub fn manifest(spec: &Spec, docs: &[NodeDocument]) -> Manifest {
    let n = &spec.network;
    Manifest {
        cluster: spec.name.clone(),
        network: ManifestNetwork {
            private_cidr: n.private_cidr.to_string(),
            private_interface: n.private_interface.clone(),
            private_vip: n.private_vip.to_string(),
            public_cidr: n.public_cidr.to_string(),
            public_gateway: n.public_gateway.to_string(),
            public_interface: n.public_interface.clone(),
            public_vip: n.public_vip.to_string(),
            api_port: 6443,
            ingress_http_node_port: spec.kubernetes.ingress_http_node_port,
            ingress_https_node_port: spec.kubernetes.ingress_https_node_port,
        },
        nodes: docs
            .iter()
            .map(|d| ManifestNode {
                name: d.name.clone(),
                role: d.role,
                private_ip: d.private_ip.to_string(),
                public_ip: d.public_ip.map(|ip| ip.to_string()),
                user_data: format!("{}.yaml", d.name),
                sha256: sha256_hex(d.user_data.as_bytes()),
                bytes: d.user_data.len(),
            })
            .collect(),
    }
}

/// Writes every document (0600: they hold private keys) and the manifest into `out`.
/// Documents of nodes that left the spec since the last render are removed.
pub fn write_output(out: &Path, spec: &Spec, docs: &[NodeDocument]) -> Result<Manifest> {
    let manifest = manifest(spec, docs);
    private_dir(out)?;
    if let Ok(previous) = read_manifest(out) {
        for old in previous
            .nodes
            .iter()
            .filter(|o| !manifest.nodes.iter().any(|n| n.name == o.name))
        {
            let _ = std::fs::remove_file(out.join(&old.user_data));
        }
    }
    for d in docs {
        write_atomic(
            &out.join(format!("{}.yaml", d.name)),
            d.user_data.as_bytes(),
            PRIVATE,
        )?;
    }
    let json = serde_json::to_string_pretty(&manifest)? + "\n";
    write_atomic(&out.join("manifest.json"), json.as_bytes(), PUBLIC)?;
    Ok(manifest)
}

pub fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join("manifest.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}
