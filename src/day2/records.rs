//! What the state dir's `backups/` holds and how it is read: each snapshot's record
//! (written by `backup now`, read by `backup list`, `recover` and `status`) and the
//! Swift container `backup setup` prepared, which render signs the nodes' uploads for.

use crate::render::sha256_hex;
use crate::spec::shown;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What `backups/<name>.json` says of `backups/<name>.db`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupRecord {
    pub file: String,
    pub taken_at: String,
    pub member: String,
    pub revision: u64,
    pub bytes: u64,
    pub sha256: String,
}

pub fn backups_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("backups")
}

/// Every finished backup's record, oldest first.
pub fn records(state_dir: &Path) -> Result<Vec<BackupRecord>> {
    let dir = backups_dir(state_dir);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        // The Swift container's record is not a backup's.
        .filter(|p| p.file_name().is_some_and(|n| n != SWIFT_RECORD))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path)?;
            serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))
        })
        .collect()
}

/// Whether a record's `file` names a plain snapshot file inside `backups/`: no path,
/// no hidden or temporary file, nothing a terminal would take as a command.
pub(super) fn plain_backup_name(file: &str) -> bool {
    !file.starts_with('.')
        && file.ends_with(".db")
        && file
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The bytes of a backup, if they are the ones its record names.
pub fn read_checked(state_dir: &Path, record: &BackupRecord) -> Result<Vec<u8>> {
    if !plain_backup_name(&record.file) {
        bail!(
            "the record names `{}`, not a snapshot file in backups/",
            shown(&record.file, 100)
        );
    }
    let bytes = std::fs::read(backups_dir(state_dir).join(&record.file))?;
    if sha256_hex(&bytes) != record.sha256 {
        bail!("sha256 differs from the record");
    }
    Ok(bytes)
}
/// What `backup setup` recorded (`backups/swift.json`); the key is apart, in
/// `backups/swift-tempurl.key` (0600).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SwiftRecord {
    pub container: String,
    /// The catalog's account URL, where paasgen lists and reads.
    pub account_url: String,
    /// `/v1/AUTH_<project>/<container>`.
    pub container_path: String,
    /// `scheme://host[:port]` the nodes upload to.
    pub upload_endpoint: String,
    /// Unix seconds: the nodes' signatures stop working then; run setup again before.
    pub expires: u64,
}

pub(super) const SWIFT_RECORD: &str = "swift.json";
pub(super) const SWIFT_KEY: &str = "swift-tempurl.key";

/// The prepared container and its key, if `backup setup` ran.
pub fn offsite_target(state_dir: &Path) -> Result<Option<crate::render::OffsiteTarget>> {
    let dir = backups_dir(state_dir);
    let record_path = dir.join(SWIFT_RECORD);
    if !record_path.exists() {
        return Ok(None);
    }
    let record: SwiftRecord = serde_json::from_str(&std::fs::read_to_string(&record_path)?)
        .with_context(|| format!("reading {}", record_path.display()))?;
    let key_path = dir.join(SWIFT_KEY);
    let key = std::fs::read_to_string(&key_path).with_context(|| {
        format!(
            "reading {} (written by `paasgen backup setup`)",
            key_path.display()
        )
    })?;
    let key = key.trim().to_string();
    if key.len() < 32 {
        bail!("{}: the key is too short (damaged?)", key_path.display());
    }
    // Checked here, where a damaged record can be named: render signs with it.
    crate::tempurl::sign_put_prefix(key.as_bytes(), &record.container_path, "x/", 0)
        .with_context(|| format!("{}: container_path", record_path.display()))?;
    Ok(Some(crate::render::OffsiteTarget {
        container_path: record.container_path,
        upload_endpoint: record.upload_endpoint,
        key,
        expires: record.expires,
    }))
}
