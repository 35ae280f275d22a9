//! Several files of a state dir replaced together or not at all: a certificate and its
//! key must never be seen from two different issues.
//!
//! Commit: every new file is written beside its target as `.<name>.paasgen-new` and
//! flushed; then the journal (the list of targets) is written atomically; only then are
//! the staged files renamed over their targets, and the journal removed. A run killed
//! before the journal exists leaves the old files (its staged files are removed by the
//! next writer); one killed after leaves a journal that the next writer finishes.

use super::{private_dir, remove_temporaries, sync_dir, write_atomic, write_synced, PRIVATE};
use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Name of the journal in the root of a state dir.
pub const JOURNAL: &str = "transaction.journal";
/// Ending of a staged file's name (`.<name>.paasgen-new`).
pub const STAGED_SUFFIX: &str = ".paasgen-new";

fn staged(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    target.with_file_name(format!(".{name}{STAGED_SUFFIX}"))
}

/// Test hook: `PAASGEN_CRASH_AFTER=N` kills the process at the N-th write step, so
/// tests can stop a run between any two steps of a commit.
pub fn fault_point() {
    static STEPS: AtomicUsize = AtomicUsize::new(0);
    static LIMIT: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    let limit = LIMIT.get_or_init(|| {
        std::env::var("PAASGEN_CRASH_AFTER")
            .ok()
            .and_then(|v| v.parse().ok())
    });
    if let Some(limit) = limit {
        if STEPS.fetch_add(1, Ordering::SeqCst) + 1 >= *limit {
            std::process::abort();
        }
    }
}

/// Writes `files` (paths under `root` -> (content, mode)) as one transaction. The
/// caller holds the state lock.
pub fn commit(root: &Path, files: &BTreeMap<PathBuf, (Vec<u8>, u32)>) -> Result<()> {
    if files.is_empty() {
        return Ok(());
    }
    private_dir(root)?;
    let mut targets = Vec::new();
    let mut dirs = BTreeSet::new();
    for (path, (bytes, mode)) in files {
        let rel = relative(root, path)?;
        let dir = path.parent().unwrap_or(root).to_path_buf();
        private_dir(&dir)?;
        write_synced(&staged(path), bytes, *mode)
            .with_context(|| format!("writing {}", staged(path).display()))?;
        fault_point();
        dirs.insert(dir);
        targets.push(rel);
    }
    for dir in &dirs {
        sync_dir(dir)?;
    }
    let journal: String = targets
        .iter()
        .map(|t| format!("{}\n", t.display()))
        .collect();
    write_atomic(&root.join(JOURNAL), journal.as_bytes(), PRIVATE)?;
    // The journal must be durable before any target is replaced.
    sync_dir(root)?;
    fault_point();
    finish(root, &targets)
}

/// The target's path relative to `root`, refusing anything that would leave it.
fn relative(root: &Path, path: &Path) -> Result<PathBuf> {
    let rel = path.strip_prefix(root).unwrap_or(path);
    if rel.as_os_str().is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        bail!("{} is not a file inside {}", path.display(), root.display());
    }
    Ok(rel.to_path_buf())
}

/// Renames every staged file that is still there over its target, then drops the journal.
fn finish(root: &Path, targets: &[PathBuf]) -> Result<()> {
    let mut dirs = BTreeSet::new();
    for rel in targets {
        let target = root.join(rel);
        let from = staged(&target);
        if from.exists() {
            fs::rename(&from, &target)
                .with_context(|| format!("replacing {}", target.display()))?;
            fault_point();
        }
        dirs.insert(target.parent().unwrap_or(root).to_path_buf());
    }
    for dir in &dirs {
        sync_dir(dir)?;
    }
    fs::remove_file(root.join(JOURNAL)).context("removing the transaction journal")?;
    sync_dir(root)
}

/// Whether a commit under `root` is in progress or was interrupted.
pub fn pending(root: &Path) -> bool {
    root.join(JOURNAL).exists()
}

/// Finishes a commit a killed run left behind and removes stray temporaries anywhere in
/// the state dir. The caller holds the state lock. Returns what it did, for the user.
pub fn recover(root: &Path) -> Result<Option<String>> {
    let mut done = None;
    let journal = root.join(JOURNAL);
    if journal.exists() {
        let text = fs::read_to_string(&journal)
            .with_context(|| format!("reading {}", journal.display()))?;
        let targets = text
            .lines()
            .map(|l| relative(root, Path::new(l)))
            .collect::<Result<Vec<_>>>()
            .with_context(|| format!("{} is damaged", journal.display()))?;
        finish(root, &targets)?;
        done = Some(format!(
            "finished an interrupted write of {} file(s) in {}",
            targets.len(),
            root.display()
        ));
    }
    let mut stack = vec![root.to_path_buf()];
    let mut removed = 0;
    while let Some(dir) = stack.pop() {
        removed += remove_temporaries(&dir)?;
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(entry.path());
            }
        }
    }
    if removed > 0 && done.is_none() {
        done = Some(format!(
            "removed {removed} temporary file(s) an interrupted run left in {}",
            root.display()
        ));
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(pairs: &[(&Path, &str)]) -> BTreeMap<PathBuf, (Vec<u8>, u32)> {
        pairs
            .iter()
            .map(|(p, s)| (p.to_path_buf(), (s.as_bytes().to_vec(), PRIVATE)))
            .collect()
    }

    #[test]
    fn commit_writes_every_file_and_leaves_no_journal() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("pki/a.crt"), dir.path().join("pki/a.key"));
        commit(dir.path(), &files(&[(&a, "cert"), (&b, "key")])).unwrap();
        assert_eq!(fs::read_to_string(&a).unwrap(), "cert");
        assert_eq!(fs::read_to_string(&b).unwrap(), "key");
        assert!(!pending(dir.path()));
    }

    #[test]
    fn recovery_finishes_a_journaled_commit_and_drops_an_unjournaled_one() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("pki/a.crt"), dir.path().join("pki/a.key"));
        commit(dir.path(), &files(&[(&a, "old cert"), (&b, "old key")])).unwrap();
        // Killed after the journal and one rename: the other staged file is still there.
        fs::write(staged(&b), "new key").unwrap();
        fs::write(&a, "new cert").unwrap();
        fs::write(dir.path().join(JOURNAL), "pki/a.crt\npki/a.key\n").unwrap();
        assert!(recover(dir.path()).unwrap().is_some());
        assert_eq!(fs::read_to_string(&b).unwrap(), "new key");
        assert!(!pending(dir.path()));
        // Killed before the journal: staged files are dropped, the old pair stays.
        fs::write(staged(&a), "newer cert").unwrap();
        recover(dir.path()).unwrap();
        assert_eq!(fs::read_to_string(&a).unwrap(), "new cert");
        assert!(!staged(&a).exists());
    }

    #[test]
    fn a_journal_naming_paths_outside_the_root_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(JOURNAL), "../escape\n").unwrap();
        assert!(recover(dir.path()).is_err());
    }
}
