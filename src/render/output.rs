//! The render output directory: `<node>.yaml` per node and `manifest.json`.

use super::NodeDocument;
use crate::fsutil::{private_dir, remove_temporaries, write_atomic, PRIVATE, PUBLIC};
use crate::pki::hex;
use crate::spec::{Role, Spec};
use anyhow::{bail, Context, Result};
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
    /// Resolvers the cloud's subnet hands the nodes.
    #[serde(default)]
    pub dns_servers: Vec<String>,
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
            dns_servers: n.dns_servers.iter().map(|ip| ip.to_string()).collect(),
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

/// The manifest of the last render into `out`, if any, once it is known to be this
/// cluster's: another cluster's documents are only replaced with `force`. A manifest that
/// cannot be read is ignored (with a warning): nothing it names is deleted.
pub fn previous_manifest(out: &Path, spec: &Spec, force: bool) -> Result<Option<Manifest>> {
    if !out.join("manifest.json").exists() {
        return Ok(None);
    }
    let previous = match read_manifest(out) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("warning: {e:#}; its documents are left alone");
            return Ok(None);
        }
    };
    if previous.cluster != spec.name {
        let other = crate::spec::shown(&previous.cluster, 64);
        if !force {
            bail!(
                "{} holds the documents of cluster `{other}`, not `{}`: render each cluster into its own directory (-o DIR), or pass --force to replace them",
                out.display(),
                spec.name
            );
        }
        eprintln!(
            "warning: replacing the documents of cluster `{other}` in {} (--force)",
            out.display()
        );
    }
    Ok(Some(previous))
}

/// A manifest's document name, if it is a plain file name of a document in `out`: an old
/// manifest is only a hint, never a licence to delete elsewhere.
fn own_document(name: &str) -> bool {
    let path = Path::new(name);
    name.ends_with(".yaml")
        && !name.starts_with('.')
        && path.components().count() == 1
        && matches!(
            path.components().next(),
            Some(std::path::Component::Normal(_))
        )
}

/// Writes every document (0600: they hold private keys) and the manifest into `out`.
/// Documents the `previous` render wrote for nodes that left the spec are removed.
pub fn write_output(
    out: &Path,
    spec: &Spec,
    docs: &[NodeDocument],
    previous: Option<&Manifest>,
) -> Result<Manifest> {
    let manifest = manifest(spec, docs);
    private_dir(out)?;
    // Temporaries of a killed render; the caller holds the state lock.
    remove_temporaries(out)?;
    for old in previous.iter().flat_map(|p| &p.nodes) {
        if manifest.nodes.iter().any(|n| n.user_data == old.user_data) {
            continue;
        }
        if !own_document(&old.user_data) {
            eprintln!(
                "warning: {}/manifest.json names `{}`, which is not a document in it: left alone",
                out.display(),
                crate::spec::shown(&old.user_data, 100)
            );
            continue;
        }
        match std::fs::remove_file(out.join(&old.user_data)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("removing {}", old.user_data))
            }
            _ => {}
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
    crate::fsutil::sync_dir(out)?;
    Ok(manifest)
}

pub fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join("manifest.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}
