//! What has been launched, kept next to the PKI: `launch.json` (ids, IPs, user-data
//! hashes) and `launched/<node>.yaml` (the user-data each server got, for `diff`).
//! Every write is atomic, so an interrupted launch never leaves a torn file.

use super::Kind;
use crate::fsutil::{write_atomic, PRIVATE};
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

    pub fn load(&self) -> Result<Option<LaunchState>> {
        let path = self.path();
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        Ok(Some(
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?,
        ))
    }

    pub fn save(&self, state: &LaunchState) -> Result<()> {
        crate::fsutil::private_dir(&self.dir)?;
        let json = serde_json::to_string_pretty(state)? + "\n";
        write_atomic(&self.path(), json.as_bytes(), PRIVATE)?;
        crate::fsutil::sync_dir(&self.dir)
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
