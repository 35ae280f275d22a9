//! `paasgen backup now | list`: etcd snapshots taken through the etcd API (the
//! maintenance snapshot stream, reached through the gateways like `rebuild`), kept in
//! the state dir's `backups/`: `<cluster>-<UTC time>-r<revision>.db`, byte for byte what
//! `etcdctl snapshot save` writes (so `etcdutl snapshot restore` takes it), and next to
//! it a `.json` record with its size and sha256. The record is written last: a backup
//! without one is unfinished and not listed.

use super::{load_spec, state_dir_for};
use crate::etcd_admin::EtcdAdmin;
use crate::fsutil::{self, write_atomic, PRIVATE};
use crate::lock::StateLock;
use crate::pki::{hex, Pki};
use crate::render::sha256_hex;
use crate::spec::Role;
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub struct BackupArgs<'a> {
    pub file: &'a Path,
    pub state_dir: Option<&'a Path>,
    pub etcd_via: Option<std::net::SocketAddr>,
    pub timeout: Duration,
    pub wait_lock: bool,
}

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

fn backups_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("backups")
}

/// `2026-11-29T21:30:05Z` and `20261129T213005Z` for now.
fn now_stamps() -> (String, String) {
    let t = time::OffsetDateTime::now_utc();
    let (y, mo, d, h, mi, s) = (
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
    );
    (
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z"),
        format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z"),
    )
}

/// Hashes what passes through to the file.
struct HashingWriter<W> {
    inner: W,
    hash: Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

pub fn backup_now(args: &BackupArgs) -> Result<()> {
    let spec = load_spec(args.file)?;
    let state_dir = state_dir_for(args.file, args.state_dir);
    let lock = StateLock::acquire(&state_dir, "backup", args.wait_lock)?;
    let pki = Pki::ensure(&state_dir, &spec).context("preparing the PKI")?;
    pki.save(&lock)?;
    let etcd = EtcdAdmin::new(&spec, &pki, args.etcd_via, args.timeout)?;
    let dir = backups_dir(&state_dir);
    fsutil::private_dir(&dir)?;
    let rt = super::cloud::runtime()?;
    let (taken_at, stamp) = now_stamps();
    let part = dir.join(format!(
        ".{}-{stamp}.db.tmp{}",
        spec.name,
        std::process::id()
    ));
    let result = rt.block_on(async {
        let mut last_error = None;
        for member in spec.nodes_with_role(Role::Etcd) {
            if !etcd.healthy(&member.name).await {
                continue;
            }
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(PRIVATE)
                .open(&part)
                .with_context(|| format!("creating {}", part.display()))?;
            let mut out = HashingWriter {
                inner: std::io::BufWriter::new(file),
                hash: Sha256::new(),
            };
            match etcd.snapshot(&member.name, &mut out).await {
                Ok(taken) => {
                    out.flush()?;
                    let sha = hex(&out.hash.finalize());
                    let file = out.inner.into_inner().map_err(|e| anyhow!("{e}"))?;
                    file.sync_all()?;
                    return Ok((taken, sha));
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow!("no etcd member is healthy: nothing to back up")))
    });
    let (taken, sha256) = match result {
        Ok(t) => t,
        Err(e) => {
            let _ = std::fs::remove_file(&part);
            return Err(e);
        }
    };
    let name = format!("{}-{stamp}-r{}", spec.name, taken.revision);
    let db = dir.join(format!("{name}.db"));
    std::fs::rename(&part, &db).with_context(|| format!("keeping {}", db.display()))?;
    let record = BackupRecord {
        file: format!("{name}.db"),
        taken_at,
        member: taken.member,
        revision: taken.revision,
        bytes: taken.bytes,
        sha256,
    };
    write_atomic(
        &dir.join(format!("{name}.json")),
        (serde_json::to_string_pretty(&record)? + "\n").as_bytes(),
        PRIVATE,
    )?;
    fsutil::sync_dir(&dir)?;
    println!(
        "backup {} ({} bytes, revision {}, from {}), sha256 {}",
        db.display(),
        record.bytes,
        record.revision,
        record.member,
        record.sha256
    );
    Ok(())
}

/// Every finished backup, oldest first, each checked against its record.
pub fn list(state_dir: &Path) -> Result<Vec<(BackupRecord, Result<()>)>> {
    let dir = backups_dir(state_dir);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let mut records: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    records.sort();
    records
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path)?;
            let record: BackupRecord = serde_json::from_str(&text)
                .with_context(|| format!("reading {}", path.display()))?;
            let check = std::fs::read(dir.join(&record.file))
                .map_err(anyhow::Error::from)
                .and_then(|bytes| {
                    if sha256_hex(&bytes) != record.sha256 {
                        bail!("sha256 differs from the record");
                    }
                    Ok(())
                });
            Ok((record, check))
        })
        .collect()
}

pub fn backup_list(file: &Path, state_dir: Option<&Path>) -> Result<()> {
    let state_dir = state_dir_for(file, state_dir);
    let backups = list(&state_dir)?;
    if backups.is_empty() {
        println!("no backups in {}", backups_dir(&state_dir).display());
        return Ok(());
    }
    println!(
        "{:<21} {:>9} {:>11} {:<12} {:<8} FILE",
        "TAKEN", "REVISION", "BYTES", "SHA256", "CHECK"
    );
    for (r, check) in backups {
        println!(
            "{:<21} {:>9} {:>11} {:<12} {:<8} {}",
            r.taken_at,
            r.revision,
            r.bytes,
            &r.sha256[..12.min(r.sha256.len())],
            match &check {
                Ok(()) => "ok".to_string(),
                Err(e) => format!("BAD: {e}"),
            },
            r.file
        );
    }
    Ok(())
}
