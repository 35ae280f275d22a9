//! The boot lab as a cloud (`--cloud lab`), so that launch, rebuild and the other verbs
//! run the same planner on the lab as on OpenStack.
//!
//! Servers are the lab's systemd-nspawn nodes: creating one boots a fresh copy of the
//! image on the node's NICs and fixed addresses, fed the server's user-data
//! (`scripts/lab replace`); deleting one powers it off and drops its disk
//! (`scripts/lab remove`). The network side (networks, ports, addresses) is the fabric
//! `paasgen lab up` built from the render, so those resources are records here only:
//! the lab does not enforce security groups or anti-affinity.

use super::{Cloud, Existing, Ids, Kind, Resource, ServerState, Spec};
use crate::fsutil;
use crate::render::config_sha256;
use anyhow::{anyhow, bail, Context, Result};
use base64::Engine;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub struct LabCloud {
    dir: PathBuf,
    script: PathBuf,
    /// Serialises the record file's read-modify-write.
    records: Mutex<()>,
}

type Records = BTreeMap<String, (Kind, String)>;

impl LabCloud {
    /// The lab `paasgen lab up` made (in `$PAASGEN_LAB_DIR`, default /run/paasgen-lab).
    pub fn connect(script: PathBuf) -> Result<LabCloud> {
        let dir = std::env::var_os("PAASGEN_LAB_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/run/paasgen-lab"));
        if !dir.join("nodes.txt").exists() {
            bail!(
                "no lab at {} (run `paasgen lab up -d OUT` first)",
                dir.display()
            );
        }
        Ok(LabCloud {
            dir,
            script,
            records: Mutex::new(()),
        })
    }

    fn node_dir(&self, node: &str) -> PathBuf {
        self.dir.join("nodes").join(node)
    }

    fn seed(&self, node: &str) -> PathBuf {
        self.node_dir(node)
            .join("merged/var/lib/cloud/seed/nocloud/user-data")
    }

    /// Nodes of the lab, as `scripts/lab up` listed them (nodes.txt: name role ...).
    fn nodes(&self) -> Result<Vec<String>> {
        let text = std::fs::read_to_string(self.dir.join("nodes.txt"))?;
        Ok(text
            .lines()
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect())
    }

    /// The sha256 launch records of the user-data a node runs: a stand-in's is the
    /// render `lab up` used (copied to its node dir), a booted node's its seed.
    fn user_data_sha(&self, path: &Path) -> Result<String> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Ok(config_sha256(&String::from_utf8_lossy(&bytes)))
    }

    /// A booted node's container, or a stand-in's listener, is alive.
    fn running(&self, node: &str) -> bool {
        ["nspawn.pid", "standin.pid"].iter().any(|f| {
            std::fs::read_to_string(self.node_dir(node).join(f))
                .ok()
                .is_some_and(|pid| Path::new("/proc").join(pid.trim()).exists())
        })
    }

    fn is_standin(&self, node: &str) -> bool {
        self.node_dir(node).join("standin.pid").exists()
    }

    fn removed(&self, node: &str) -> bool {
        self.node_dir(node).join("removed").exists()
    }

    fn records_path(&self) -> PathBuf {
        self.dir.join("cloud-records.json")
    }

    fn load_records(&self) -> Result<Records> {
        match std::fs::read(self.records_path()) {
            Ok(bytes) => serde_json::from_slice(&bytes).context("lab cloud records"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Records::new()),
            Err(e) => Err(e.into()),
        }
    }

    fn update_records(&self, f: impl FnOnce(&mut Records)) -> Result<()> {
        let _guard = self.records.lock().map_err(|_| anyhow!("records lock"))?;
        let mut records = self.load_records()?;
        f(&mut records);
        fsutil::write_atomic(&self.records_path(), &serde_json::to_vec(&records)?, 0o600)
    }

    fn lab(&self, args: &[&str]) -> Result<()> {
        let out = std::process::Command::new(&self.script)
            .args(args)
            .env("PAASGEN_LAB_DIR", &self.dir)
            .output()
            .with_context(|| format!("running {}", self.script.display()))?;
        if !out.status.success() {
            bail!(
                "lab {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }
}

impl Cloud for LabCloud {
    async fn inventory(&self, cluster: &str) -> Result<Vec<Existing>> {
        let prefix = format!("{cluster}-");
        let mut found: Vec<Existing> = self
            .load_records()?
            .into_iter()
            .filter(|(name, _)| name.starts_with(&prefix))
            .map(|(name, (kind, id))| Existing::new(kind, name, id))
            .collect();
        for node in self.nodes()? {
            let seed = self.seed(&node);
            if self.is_standin(&node) {
                let rendered_sha = self.user_data_sha(&self.node_dir(&node).join("user-data"))?;
                // Listeners standing for a master or worker (a lab without
                // --kubernetes): servers as if launched with the render `lab up` used.
                found.push(Existing {
                    status: Some("ACTIVE".into()),
                    user_data_sha256: Some(rendered_sha),
                    ..Existing::new(Kind::Server, format!("{prefix}{node}"), node.clone())
                });
                continue;
            }
            if self.removed(&node) || !seed.exists() {
                continue; // deleted
            }
            let user_data_sha256 = self.user_data_sha(&seed)?;
            found.push(Existing {
                status: Some(
                    if self.running(&node) {
                        "ACTIVE"
                    } else {
                        "SHUTOFF"
                    }
                    .into(),
                ),
                user_data_sha256: Some(user_data_sha256),
                ..Existing::new(Kind::Server, format!("{prefix}{node}"), node.clone())
            });
        }
        Ok(found)
    }

    async fn create(&self, _cluster: &str, r: &Resource, _ids: &Ids) -> Result<String> {
        if matches!(r.spec, Spec::FloatingIp { .. }) {
            bail!("the boot lab has no floating IPs: `network.public: floating` launches on OpenStack only");
        }
        let Spec::Server {
            node, user_data, ..
        } = &r.spec
        else {
            let id = format!("lab-{}", r.name);
            self.update_records(|rs| {
                rs.insert(r.name.clone(), (r.kind, id.clone()));
            })?;
            return Ok(id);
        };
        if !self.nodes()?.iter().any(|n| n == node) {
            bail!("the lab has no place for {node}: bring it up from a render that has it");
        }
        let file = self.node_dir(node).join("user-data.next");
        let bytes = base64::engine::general_purpose::STANDARD.decode(user_data)?;
        fsutil::write_atomic(&file, &bytes, 0o600)?;
        self.lab(&["replace", node, &file.to_string_lossy()])?;
        Ok(node.clone())
    }

    async fn server_state(&self, id: &str) -> Result<ServerState> {
        Ok(if self.removed(id) {
            ServerState::Error(format!("{id} was deleted"))
        } else if self.running(id) {
            ServerState::Active
        } else {
            ServerState::Error(format!("{id} is powered off"))
        })
    }

    async fn server_states(
        &self,
        cluster: &str,
    ) -> Result<std::collections::BTreeMap<String, ServerState>> {
        let mut states = std::collections::BTreeMap::new();
        for e in self.inventory(cluster).await? {
            if e.kind == Kind::Server {
                let state = self.server_state(&e.id).await?;
                states.insert(e.id, state);
            }
        }
        Ok(states)
    }

    async fn delete(&self, kind: Kind, id: &str) -> Result<()> {
        if kind == Kind::Server {
            return self.lab(&["remove", id]);
        }
        self.update_records(|rs| rs.retain(|_, (_, rid)| rid != id))
    }

    async fn stop_server(&self, id: &str) -> Result<()> {
        if self.is_standin(id) {
            bail!("{id} is a stand-in of this lab: it has no system to shut down");
        }
        self.lab(&["shutdown", id])
    }

    async fn server_user_data(&self, id: &str) -> Result<Option<String>> {
        match std::fs::read_to_string(self.seed(id)) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}
