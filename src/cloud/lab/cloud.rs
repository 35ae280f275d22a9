//! `--cloud lab`: the lab behind the same `Cloud` trait as OpenStack.

use super::{disk, host, state, Lab};
use crate::cloud::{Cloud, Existing, Ids, Kind, Resource, ServerState, Spec};
use crate::fsutil;
use anyhow::{anyhow, bail, Context, Result};
use base64::Engine;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

pub struct LabCloud {
    lab: Lab,
    /// Serialises the record file's read-modify-write.
    records: Mutex<()>,
}

type Records = BTreeMap<String, (Kind, String)>;

impl LabCloud {
    /// The lab `paasgen lab up` made (in `$PAASGEN_LAB_DIR`, default /run/paasgen-lab);
    /// `script` is scripts/lab, its host plumbing.
    pub fn connect(script: PathBuf) -> Result<LabCloud> {
        let lab = Lab::new(script);
        lab.state()?;
        Ok(LabCloud {
            lab,
            records: Mutex::new(()),
        })
    }

    /// A booted node's container, or a stand-in's listener, is alive.
    fn running(&self, node: &str) -> bool {
        ["nspawn.pid", "standin.pid"]
            .iter()
            .any(|f| self.lab.host.pid_file(node, f).is_some_and(host::alive))
    }

    fn records_path(&self) -> PathBuf {
        self.lab.host.dir.join("cloud-records.json")
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
        let lab = self.lab.state()?;
        for n in &lab.nodes {
            let node = &n.node.name;
            let (status, sha) = match lab.kind(n) {
                // Listeners standing for a master or worker (a lab without
                // --kubernetes): servers as if launched with the render `lab up` used.
                state::Kind::StandIn => {
                    let copy = self.lab.host.node_dir(node).join("user-data");
                    let sha = disk::user_data_sha256(&copy)?
                        .with_context(|| format!("{} is missing", copy.display()))?;
                    ("ACTIVE", Some(sha))
                }
                state::Kind::Booted => {
                    if self.lab.removed(node) {
                        continue; // deleted
                    }
                    let seed = disk::seed_user_data(&self.lab.root(node));
                    let Some(sha) = disk::user_data_sha256(&seed)? else {
                        continue;
                    };
                    let status = if self.running(node) {
                        "ACTIVE"
                    } else {
                        "SHUTOFF"
                    };
                    (status, Some(sha))
                }
            };
            found.push(Existing {
                status: Some(status.into()),
                user_data_sha256: sha,
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
        if self.lab.state()?.node(node).is_err() {
            bail!("the lab has no place for {node}: bring it up from a render that has it");
        }
        let file = self.lab.host.node_dir(node).join("user-data.next");
        let bytes = base64::engine::general_purpose::STANDARD.decode(user_data)?;
        fsutil::write_atomic(&file, &bytes, 0o600)?;
        self.lab.replace(node, &file)?;
        Ok(node.clone())
    }

    async fn server_state(&self, id: &str) -> Result<ServerState> {
        Ok(if self.lab.removed(id) {
            ServerState::Error(format!("{id} was deleted"))
        } else if self.running(id) {
            ServerState::Active
        } else {
            ServerState::Error(format!("{id} is powered off"))
        })
    }

    async fn server_states(&self, cluster: &str) -> Result<BTreeMap<String, ServerState>> {
        let mut states = BTreeMap::new();
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
            return self.lab.remove(id);
        }
        self.update_records(|rs| rs.retain(|_, (_, rid)| rid != id))
    }

    async fn stop_server(&self, id: &str) -> Result<()> {
        self.lab.shutdown(id)
    }

    async fn server_user_data(&self, id: &str) -> Result<Option<String>> {
        match std::fs::read_to_string(disk::seed_user_data(&self.lab.root(id))) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}
