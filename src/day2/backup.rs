//! What `paasgen backup now | setup | prune` do once the verb has the spec and the
//! state dir: etcd snapshots taken through the etcd API (the
//! maintenance snapshot stream, reached through the gateways like `rebuild`), kept in
//! the state dir's `backups/`: `<cluster>-<UTC time>-r<revision>.db`, byte for byte what
//! `etcdctl snapshot save` writes (so `etcdutl snapshot restore` takes it), and next to
//! it a `.json` record with its size and sha256. The record is written last: a backup
//! without one is unfinished and not listed (see `records`).

use super::copies;
use super::records::{
    backups_dir, plain_backup_name, BackupRecord, SwiftRecord, SWIFT_KEY, SWIFT_RECORD,
};
use super::setup::runtime;
use crate::cloud::openstack::swift::Swift;
use crate::etcd_admin::EtcdAdmin;
use crate::fsutil::{self, write_atomic, PRIVATE};
use crate::pki::{hex, Pki};
use crate::retention;
use crate::spec::{shown, Role, Spec, SwiftBackups};
use anyhow::{anyhow, Context, Result};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

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

/// `backup now` once the state dir is locked and the PKI saved: a snapshot from the
/// first healthy member through `via`, its record, the local pruning, and the copy to
/// Swift when the spec keeps copies there.
pub fn take(
    spec: &Spec,
    pki: &Pki,
    state_dir: &Path,
    via: std::net::SocketAddr,
    os_cloud: Option<&str>,
    timeout: Duration,
) -> Result<()> {
    let etcd = EtcdAdmin::new(spec, pki, via, timeout)?;
    let dir = backups_dir(state_dir);
    fsutil::private_dir(&dir)?;
    let rt = runtime()?;
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
    let keep = spec
        .etcd
        .swift_backups
        .as_ref()
        .map_or(spec.etcd.snapshot_keep, |w| w.keep);
    prune_local(state_dir, keep as usize)?;
    let Some(wanted) = &spec.etcd.swift_backups else {
        return Ok(());
    };
    if super::records::offsite_target(state_dir)?.is_none() {
        println!("note: no copy in Swift: run `paasgen backup setup` first");
        return Ok(());
    }
    // paasgen's own copies sit apart from the nodes' (`<node>/...`).
    let object = format!("paasgen/{}", record.file);
    let swift = rt
        .block_on(async {
            let swift = Swift::connect(os_cloud, timeout).await?;
            let bytes = std::fs::read(&db)?;
            swift
                .put_object(&wanted.container, &object, bytes, &record.sha256)
                .await?;
            Ok::<_, anyhow::Error>(swift)
        })
        .with_context(|| {
            format!("the local backup is kept, but its copy to Swift failed ({object})")
        })?;
    println!("copied to Swift: {}/{object}", wanted.container);
    rt.block_on(prune_swift(&swift, spec, &wanted.container, wanted.keep))
}

/// Deletes the container's old copies beyond the newest `keep` per member.
pub async fn prune_swift(swift: &Swift, spec: &Spec, container: &str, keep: u32) -> Result<()> {
    let versions = swift.list_versions(container).await?;
    let members: Vec<&str> = spec
        .nodes_with_role(Role::Etcd)
        .map(|n| n.name.as_str())
        .collect();
    let pruning = retention::plan(&versions, keep as usize, &members, &spec.name);
    for (name, why) in &pruning.ignored {
        eprintln!(
            "warning: Swift object `{}` in {container} left alone: {why}",
            shown(name, 200)
        );
    }
    let mut names: Vec<&str> = pruning.delete.iter().map(|v| v.name.as_str()).collect();
    names.dedup();
    for v in &pruning.delete {
        swift
            .delete_version(container, &v.name, &v.version_id)
            .await?;
    }
    println!(
        "pruned Swift: {} version(s) of {} old copies deleted, the newest {keep} per member kept{}",
        pruning.delete.len(),
        names.len(),
        match pruning.ignored.len() {
            0 => String::new(),
            n => format!(", {n} object(s) that are no copy left alone"),
        }
    );
    Ok(())
}
/// Deletes the local backups beyond the newest `keep` (by their records' time; the
/// records are paasgen's own): the record first, so a half-pruned one is unlisted.
fn prune_local(state_dir: &Path, keep: usize) -> Result<()> {
    let mut all = copies::local(state_dir)?;
    copies::sort_newest_first(&mut all);
    let dir = backups_dir(state_dir);
    let mut pruned = 0;
    for old in all.iter().skip(keep) {
        let Some(stem) = old
            .name
            .strip_suffix(".db")
            .filter(|_| plain_backup_name(&old.name))
        else {
            continue;
        };
        fsutil::remove_if_exists(&dir.join(format!("{stem}.json")))?;
        fsutil::remove_if_exists(&dir.join(&old.name))?;
        pruned += 1;
    }
    if pruned > 0 {
        fsutil::sync_dir(&dir)?;
        println!("pruned {pruned} local backup(s), the newest {keep} kept");
    }
    Ok(())
}

/// How long the nodes' upload signatures last.
const UPLOAD_SIGNATURE_LIFE: u64 = 2 * 365 * 86_400;

/// `backup setup` once the state dir is locked: the container (versioned, so an
/// overwrite keeps the earlier copy) with a TempURL key that only paasgen holds,
/// recorded in `backups/`.
pub fn prepare_swift(
    wanted: &SwiftBackups,
    state_dir: &Path,
    os_cloud: Option<&str>,
    timeout: Duration,
) -> Result<()> {
    let dir = backups_dir(state_dir);
    fsutil::private_dir(&dir)?;
    let key_path = dir.join(SWIFT_KEY);
    let key = match std::fs::read_to_string(&key_path) {
        Ok(k) => k.trim().to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 32];
            rand::Rng::fill(&mut rand::rng(), &mut bytes);
            let k = hex(&bytes);
            write_atomic(&key_path, format!("{k}\n").as_bytes(), PRIVATE)?;
            k
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", key_path.display())),
    };
    let rt = runtime()?;
    let swift = rt.block_on(Swift::connect(os_cloud, timeout))?;
    rt.block_on(swift.ensure_container(&wanted.container, &key))?;
    let account = &swift.account_url;
    let catalog_endpoint = format!(
        "{}://{}{}",
        account.scheme(),
        account.host_str().unwrap_or_default(),
        account.port().map(|p| format!(":{p}")).unwrap_or_default()
    );
    let now = time::OffsetDateTime::now_utc().unix_timestamp().max(0) as u64;
    let record = SwiftRecord {
        container: wanted.container.clone(),
        account_url: account.to_string(),
        container_path: format!("{}/{}", swift.account_path(), wanted.container),
        upload_endpoint: wanted
            .upload_endpoint
            .clone()
            .unwrap_or(catalog_endpoint)
            .trim_end_matches('/')
            .to_string(),
        expires: crate::tempurl::expires_after(now, UPLOAD_SIGNATURE_LIFE),
    };
    write_atomic(
        &dir.join(SWIFT_RECORD),
        (serde_json::to_string_pretty(&record)? + "\n").as_bytes(),
        PRIVATE,
    )?;
    fsutil::sync_dir(&dir)?;
    println!(
        "backups: container {} at {} (versioned; TempURL key in {}); etcd nodes upload to {} with PUT-only signatures under their own names, good until unix time {}",
        record.container,
        record.account_url,
        key_path.display(),
        record.upload_endpoint,
        record.expires
    );
    println!("render and roll out (`paasgen upgrade`) so that running etcd nodes get them");
    Ok(())
}
