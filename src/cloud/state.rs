//! What has been launched, kept next to the PKI: `launch.json` (ids, IPs, user-data
//! hashes) and `launched/<node>.yaml` (the user-data each server got, for `diff`).
//! Every write is atomic, so an interrupted launch never leaves a torn file.

use super::Kind;
use crate::fsutil::{write_atomic, PRIVATE};
pub use crate::render::EtcdRecovery;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub kind: Kind,
    pub id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub server_id: String,
    pub status: String,
    pub private_ip: String,
    pub public_ip: Option<String>,
    pub port_ids: Vec<String>,
    pub user_data_sha256: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchState {
    pub cluster: String,
    /// Every resource created or found, by name.
    pub resources: BTreeMap<String, Record>,
    pub nodes: BTreeMap<String, NodeRecord>,
    /// etcd members that joined a running cluster (`rebuild`): their user-data says
    /// `initial-cluster-state: existing`, and every later render keeps saying so.
    #[serde(default)]
    pub etcd_joined: BTreeSet<String>,
    /// Set by `recover`, which founded etcd again from a snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd_recovery: Option<EtcdRecovery>,
    /// `network.public: floating`: the floating IP `launch` allocated before rendering,
    /// the users' entry point (every render reads its address from here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floating_ip: Option<FloatingIpRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FloatingIpRecord {
    pub id: String,
    pub address: std::net::Ipv4Addr,
}

/// One line of launch.journal.
#[derive(Debug, Serialize, Deserialize)]
struct Created {
    name: String,
    #[serde(flatten)]
    record: Record,
}

pub struct StateFile {
    dir: PathBuf,
}

impl StateFile {
    pub fn new(state_dir: &Path) -> StateFile {
        StateFile {
            dir: state_dir.to_path_buf(),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.join("launch.json")
    }

    /// Resources created since launch.json was last written, one JSON line each: a
    /// create is recorded at once without rewriting a file that grows with the cluster.
    fn journal_path(&self) -> PathBuf {
        self.dir.join("launch.journal")
    }

    pub fn load(&self) -> Result<Option<LaunchState>> {
        let path = self.path();
        let mut state = None;
        if path.exists() {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            state = Some(
                serde_json::from_str::<LaunchState>(&text)
                    .with_context(|| format!("parsing {}", path.display()))?,
            );
        }
        let journal = self.journal_path();
        if journal.exists() {
            let text = std::fs::read_to_string(&journal)
                .with_context(|| format!("reading {}", journal.display()))?;
            let state = state.get_or_insert_with(LaunchState::default);
            // A line cut short by a crash is a record that was never complete; the
            // resource itself is found again by name.
            for entry in text
                .lines()
                .filter_map(|l| serde_json::from_str::<Created>(l).ok())
            {
                state.resources.insert(entry.name, entry.record);
            }
        }
        Ok(state)
    }

    pub fn save(&self, state: &LaunchState) -> Result<()> {
        crate::fsutil::private_dir(&self.dir)?;
        let json = serde_json::to_string_pretty(state)? + "\n";
        write_atomic(&self.path(), json.as_bytes(), PRIVATE)?;
        crate::fsutil::sync_dir(&self.dir)?;
        // launch.json now holds everything the journal recorded.
        match std::fs::remove_file(self.journal_path()) {
            Ok(()) => crate::fsutil::sync_dir(&self.dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("removing {}", self.journal_path().display())),
        }
    }

    /// Records a created resource at once (flushed to disk), in time proportional to the
    /// record, not to the state; the next `save` folds it into launch.json.
    pub fn record_created(&self, name: &str, record: &Record) -> Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        crate::fsutil::private_dir(&self.dir)?;
        let path = self.journal_path();
        let new = !path.exists();
        let line = serde_json::to_string(&Created {
            name: name.to_string(),
            record: record.clone(),
        })? + "\n";
        let append = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .mode(PRIVATE)
                .open(&path)?;
            f.write_all(line.as_bytes())?;
            f.sync_data()
        };
        append().with_context(|| format!("writing {}", path.display()))?;
        if new {
            crate::fsutil::sync_dir(&self.dir)?;
        }
        Ok(())
    }

    pub fn launched_user_data_path(&self, node: &str) -> PathBuf {
        self.dir.join("launched").join(format!("{node}.yaml"))
    }

    pub fn save_launched_user_data(&self, node: &str, user_data: &str) -> Result<()> {
        crate::fsutil::private_dir(&self.dir.join("launched"))?;
        write_atomic(
            &self.launched_user_data_path(node),
            user_data.as_bytes(),
            PRIVATE,
        )
    }

    pub fn launched_user_data(&self, node: &str) -> Result<Option<String>> {
        let path = self.launched_user_data_path(node);
        if !path.exists() {
            return Ok(None);
        }
        Ok(Some(
            std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?,
        ))
    }
}
