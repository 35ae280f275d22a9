//! One writer at a time: every verb that writes the state dir or out/ holds an exclusive
//! lock (flock) on `<state dir>/lock` for its whole run. The holder writes who it is into
//! the file, so a second writer can name it. Read-only verbs take no lock.

use crate::fsutil::{private_dir, txn};
use anyhow::{bail, Context, Result};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Proof that this process is the only writer of a state dir, until dropped.
#[derive(Debug)]
pub struct StateLock {
    dir: PathBuf,
    _file: File,
}

impl StateLock {
    /// Takes the lock of `state_dir` (created if missing) for `verb`; fails naming the
    /// holder when another process has it, or waits for it when `wait`. Then finishes or
    /// rolls back what a killed writer left half done.
    pub fn acquire(state_dir: &Path, verb: &str, wait: bool) -> Result<StateLock> {
        private_dir(state_dir)?;
        let path = state_dir.join("lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            // A symlink planted as the lock would have its target truncated by the
            // holder line: it is refused, not followed.
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ELOOP) => anyhow::anyhow!(
                    "{} is a symbolic link: paasgen's lock is a plain file; remove the link",
                    path.display()
                ),
                _ => anyhow::Error::new(e).context(format!("opening {}", path.display())),
            })?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = holder(&mut file);
                if !wait {
                    bail!(
                        "{} is locked by {holder}: one writer at a time; wait for it to finish, or pass --wait-lock",
                        path.display()
                    );
                }
                eprintln!(
                    "waiting for the lock on {} held by {holder}",
                    path.display()
                );
                file.lock()
                    .with_context(|| format!("locking {}", path.display()))?;
            }
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", path.display()))
            }
        }
        let me = format!(
            "pid {} (paasgen {verb}) on {} since {}\n",
            std::process::id(),
            hostname(),
            now()
        );
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(me.as_bytes()))
            .with_context(|| format!("writing {}", path.display()))?;
        if let Some(what) = txn::recover(state_dir)? {
            eprintln!("note: {what}");
        }
        Ok(StateLock {
            dir: state_dir.to_path_buf(),
            _file: file,
        })
    }

    /// The state dir this lock covers.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Who holds the lock, as its holder wrote it (shown escaped and cut short: the file is
/// only ours by convention).
fn holder(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.rewind().and_then(|()| file.read_to_string(&mut text));
    let text = text.trim();
    if text.is_empty() {
        "another paasgen (it has not said who yet)".into()
    } else {
        crate::spec::shown(text, 200)
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "this host".into())
}

fn now() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}
