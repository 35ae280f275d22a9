//! Every copy of etcd that `recover` could restore, local (`backups/`, with paasgen's
//! records) and off-site (the Swift container the members' timers and `backup now`
//! upload to), in one list, newest first. `backup list` shows it; `recover` downloads
//! the newest, checks it (sha256 against its record or the object's metadata, then the
//! snapshot's own hash as etcdutl does) and goes to the next one when it is damaged.

use super::backup::{self, BackupRecord};
use crate::cloud::openstack::swift::Swift;
use crate::render::sha256_hex;
use crate::retention;
use crate::spec::{shown, Role, Spec};
use anyhow::{anyhow, bail, Result};
use std::path::Path;
use time::PrimitiveDateTime;

/// Where a copy is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    Local,
    Swift,
}

/// One copy of etcd.
#[derive(Debug, Clone)]
pub struct Copy {
    pub place: Place,
    /// The file name in `backups/`, or the object name in the container.
    pub name: String,
    /// The member it was taken from (`paasgen` for paasgen's own uploads).
    pub member: String,
    /// When it was taken (local: its record) or stored (Swift's own clock), UTC.
    pub time: PrimitiveDateTime,
    pub revision: Option<u64>,
    pub bytes: u64,
    /// The sha256 its record (local) or its object metadata (Swift) gives.
    pub sha256: Option<String>,
}

impl Copy {
    /// How `--from` names it: the file name, or `swift:<object>`.
    pub fn id(&self) -> String {
        match self.place {
            Place::Local => self.name.clone(),
            Place::Swift => format!("swift:{}", self.name),
        }
    }
}

fn show_time(t: PrimitiveDateTime) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    t.format(&format).unwrap_or_else(|_| "?".into())
}

/// `2026-11-29T21:30:05Z` (a record's `taken_at`).
fn record_time(taken_at: &str) -> Option<PrimitiveDateTime> {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    PrimitiveDateTime::parse(taken_at, &format).ok()
}

pub fn local(state_dir: &Path) -> Result<Vec<Copy>> {
    Ok(backup::records(state_dir)?
        .into_iter()
        .map(|r: BackupRecord| Copy {
            place: Place::Local,
            time: record_time(&r.taken_at).unwrap_or(PrimitiveDateTime::MIN),
            revision: Some(r.revision),
            bytes: r.bytes,
            sha256: Some(r.sha256),
            member: r.member,
            name: r.file,
        })
        .collect())
}

/// The container's copies, and the objects in it that are none (name, why).
pub async fn offsite(
    swift: &Swift,
    spec: &Spec,
    container: &str,
) -> Result<(Vec<Copy>, Vec<(String, String)>)> {
    let members: Vec<&str> = spec
        .nodes_with_role(Role::Etcd)
        .map(|n| n.name.as_str())
        .collect();
    let (mut copies, mut ignored) = (Vec::new(), Vec::new());
    for o in swift.list(container).await? {
        match retention::genuine_copy(&o.name, &o.last_modified, &members, &spec.name) {
            Err(why) => ignored.push((o.name, why)),
            Ok((member, time)) => {
                let sha256 = swift.object_meta(container, &o.name, "sha256").await?;
                copies.push(Copy {
                    place: Place::Swift,
                    member,
                    time,
                    revision: None,
                    bytes: o.bytes,
                    sha256,
                    name: o.name,
                });
            }
        }
    }
    Ok((copies, ignored))
}

/// Newest first (local before Swift at the same second: no download).
pub fn sort_newest_first(copies: &mut [Copy]) {
    copies.sort_by(|a, b| {
        b.time
            .cmp(&a.time)
            .then((a.place == Place::Swift).cmp(&(b.place == Place::Swift)))
            .then(b.name.cmp(&a.name))
    });
}

/// The bytes of `copy` if they are whole and the ones its record or metadata names.
pub async fn fetch(
    copy: &Copy,
    state_dir: &Path,
    swift: Option<(&Swift, &str)>,
) -> Result<Vec<u8>> {
    let bytes = match copy.place {
        Place::Local => {
            let records = backup::records(state_dir)?;
            let record = records
                .iter()
                .find(|r| r.file == copy.name)
                .ok_or_else(|| anyhow!("its record is gone"))?;
            backup::read_checked(state_dir, record)?
        }
        Place::Swift => {
            let (swift, container) = swift.ok_or_else(|| anyhow!("Swift is not connected"))?;
            let (bytes, sha) = swift.get_object(container, &copy.name).await?;
            let Some(sha) = sha else {
                bail!("the object carries no sha256 to check it against");
            };
            if sha256_hex(&bytes) != sha {
                bail!("sha256 differs from the one it was uploaded with");
            }
            bytes
        }
    };
    crate::snapshot::check(&bytes)?;
    Ok(bytes)
}

/// One table: where, member, time, revision, size, sha256, and the check of the local
/// ones (read and hashed; Swift copies are checked when recover downloads them).
pub fn print(copies: &[Copy], state_dir: &Path) {
    println!(
        "{:<6} {:<10} {:<20} {:>9} {:>11} {:<12} {:<10} NAME",
        "WHERE", "MEMBER", "TIME (UTC)", "REVISION", "BYTES", "SHA256", "CHECK"
    );
    for c in copies {
        let check = match c.place {
            Place::Swift => "unchecked".to_string(),
            Place::Local => match backup::records(state_dir).map(|rs| {
                rs.into_iter().find(|r| r.file == c.name).map(|r| {
                    backup::read_checked(state_dir, &r).map(|b| crate::snapshot::check(&b))
                })
            }) {
                Ok(Some(Ok(Ok(())))) => "ok".into(),
                Ok(Some(Ok(Err(e)))) | Ok(Some(Err(e))) => format!("BAD: {e}"),
                Ok(None) => "BAD: no record".into(),
                Err(e) => format!("BAD: {e}"),
            },
        };
        println!(
            "{:<6} {:<10} {:<20} {:>9} {:>11} {:<12} {:<10} {}",
            match c.place {
                Place::Local => "local",
                Place::Swift => "swift",
            },
            shown(&c.member, 10),
            show_time(c.time),
            c.revision.map_or("-".into(), |r| r.to_string()),
            c.bytes,
            shown(
                &c.sha256
                    .as_deref()
                    .unwrap_or("-")
                    .chars()
                    .take(12)
                    .collect::<String>(),
                12
            ),
            check,
            shown(&c.id(), 200)
        );
    }
}
