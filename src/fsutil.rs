//! File writes that are never half-done and never too readable.

pub mod txn;

use anyhow::{Context, Result};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode for private keys and anything else only the owner may read.
pub const PRIVATE: u32 = 0o600;
/// Mode for certificates, user-data and other public material.
pub const PUBLIC: u32 = 0o644;

/// Creates `dir` and its missing parents with mode 0700 (state dirs hold keys). A dir that
/// already exists keeps its mode: `-o /tmp/x` must not take the sticky bit off anything.
pub fn private_dir(dir: &Path) -> Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        private_dir(parent)?;
    }
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        // The umask may have taken bits away; this dir is ours, so it gets exactly 0700.
        Ok(()) => fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("setting the mode of {}", dir.display())),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e).with_context(|| format!("creating {}", dir.display())),
    }
}

/// Makes a rename or removal in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))
}

/// Writes `bytes` to a new file at `path` with `mode` set before any byte is written,
/// and flushes it to disk.
pub fn write_synced(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)?;
    f.set_permissions(fs::Permissions::from_mode(mode))?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Writes `bytes` to `path` through a temporary file, fsync and a rename, so readers see
/// the old content or the new one. Callers that need the rename itself to survive a power
/// loss sync the dir once after their last write (`sync_dir`).
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    private_dir(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let write = || -> Result<()> {
        write_synced(&tmp, bytes, mode)?;
        txn::fault_point();
        fs::rename(&tmp, path)?;
        Ok(())
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        e.context(format!("writing {}", path.display()))
    })
}

/// Removes `path`; one already gone is fine.
pub fn remove_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(anyhow::Error::new(e).context(format!("removing {}", path.display())))
        }
        _ => Ok(()),
    }
}

/// Whether `name` is a temporary file left by `write_atomic` or a transaction.
pub fn is_temporary(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('.') else {
        return false;
    };
    if rest.ends_with(txn::STAGED_SUFFIX) {
        return true;
    }
    rest.rsplit_once(".tmp")
        .is_some_and(|(_, pid)| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
}

/// Removes the temporaries a killed run left in `dir` (not recursive). Only call it
/// while holding the state lock: then no other writer has temporaries in flight.
pub fn remove_temporaries(dir: &Path) -> Result<usize> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(0);
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if entry.file_type().is_ok_and(|t| t.is_file()) && is_temporary(&name.to_string_lossy()) {
            fs::remove_file(entry.path())
                .with_context(|| format!("removing {}", entry.path().display()))?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporaries_are_recognised_by_name() {
        assert!(is_temporary(".ca.key.tmp1234"));
        assert!(is_temporary(".ca.key.paasgen-new"));
        assert!(!is_temporary("ca.key"));
        assert!(!is_temporary(".ca.key.tmp"));
        assert!(!is_temporary("worker-1.yaml"));
    }
}
