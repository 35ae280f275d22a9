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
    /// `fixed` or `floating` (then the public_* fields are absent: the floating IP is
    /// in the state dir's launch.json).
    #[serde(default = "fixed")]
    pub public: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_cidr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_gateway: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_interface: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_vip: Option<String>,
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

impl ManifestNetwork {
    /// `ip` with the private network's prefix length ("10.0.0.5/24").
    pub fn on_private(&self, ip: &str) -> Result<String> {
        with_prefix(ip, &self.private_cidr, "network.private_cidr")
    }

    /// `ip` with the public network's prefix length; an error when the render has no
    /// fixed public network.
    pub fn on_public(&self, ip: &str) -> Result<String> {
        let Some(cidr) = &self.public_cidr else {
            bail!("the render has no fixed public network (network.public: fixed)");
        };
        with_prefix(ip, cidr, "network.public_cidr")
    }
}

fn with_prefix(ip: &str, cidr: &str, field: &str) -> Result<String> {
    let net: ipnet::Ipv4Net = cidr
        .parse()
        .with_context(|| format!("{field}: {cidr:?} is not an IPv4 CIDR"))?;
    Ok(format!("{ip}/{}", net.prefix_len()))
}

fn fixed() -> String {
    "fixed".into()
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
            public: n.mode().as_str().to_string(),
            public_cidr: n.public_cidr().map(|c| c.to_string()),
            public_gateway: n.public_gateway().map(|ip| ip.to_string()),
            public_interface: (!n.is_floating()).then(|| n.public_interface().to_string()),
            public_vip: n.public_vip().map(|ip| ip.to_string()),
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
    let documents: Vec<(std::path::PathBuf, &[u8])> = docs
        .iter()
        .map(|d| (out.join(format!("{}.yaml", d.name)), d.user_data.as_bytes()))
        .collect();
    write_documents(out, &documents)?;
    let json = serde_json::to_string_pretty(&manifest)? + "\n";
    write_atomic(&out.join("manifest.json"), json.as_bytes(), PUBLIC)?;
    crate::fsutil::sync_dir(out)?;
    Ok(manifest)
}

/// Flushes of temporaries under way at once: a disk merges concurrent flushes, so a
/// render of thousands of documents waits for a few dozen, not one per document.
const FLUSHES_IN_FLIGHT: usize = 32;

/// Writes each document (0600) as `write_atomic` does: to a temporary beside it, flushed
/// to disk, then renamed over it, so a reader sees the old document or the new one. A
/// document that already holds these bytes and mode is left as it is (a render is a
/// pure function: most documents of a re-render are unchanged). The temporaries are
/// written and flushed in parallel, and renamed only once all of them are on disk.
fn write_documents(out: &Path, documents: &[(std::path::PathBuf, &[u8])]) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let unchanged = |path: &Path, bytes: &[u8]| {
        std::fs::metadata(path).is_ok_and(|m| {
            m.is_file()
                && m.len() == bytes.len() as u64
                && m.permissions().mode() & 0o7777 == PRIVATE
        }) && std::fs::read(path).is_ok_and(|have| have == bytes)
    };
    let temporary = |path: &Path| {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.join(format!(".{name}.tmp{}", std::process::id()))
    };
    let chunk = documents.len().div_ceil(FLUSHES_IN_FLIGHT).max(1);
    // Each thread compares its run of documents with what is there and writes and
    // flushes the temporaries of those that changed.
    let mut changed: Vec<&Path> = Vec::new();
    let written: Result<()> = std::thread::scope(|scope| {
        let workers: Vec<_> = documents
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || -> (Vec<&Path>, Result<()>) {
                    let mut changed = Vec::new();
                    for (path, bytes) in part {
                        if unchanged(path, bytes) {
                            continue;
                        }
                        changed.push(path.as_path());
                        if let Err(e) =
                            crate::fsutil::write_synced(&temporary(path), bytes, PRIVATE)
                        {
                            let e = anyhow::Error::new(e)
                                .context(format!("writing {}", path.display()));
                            return (changed, Err(e));
                        }
                    }
                    (changed, Ok(()))
                })
            })
            .collect();
        let mut result = Ok(());
        for w in workers {
            let (paths, r) = w.join().expect("a writer thread panicked");
            changed.extend(paths);
            if result.is_ok() {
                result = r;
            }
        }
        result
    });
    let renamed = written.and_then(|()| {
        changed.iter().try_for_each(|path| {
            crate::fsutil::txn::fault_point();
            std::fs::rename(temporary(path), path)
                .with_context(|| format!("writing {}", path.display()))
        })
    });
    if renamed.is_err() {
        for path in &changed {
            let _ = std::fs::remove_file(temporary(path));
        }
    }
    renamed
}

pub fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join("manifest.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}
