//! Every copy of etcd that `recover` could restore, local (`backups/`, with paasgen's
//! records) and off-site (the Swift container the members' timers and `backup now`
//! upload to), in one list, newest first. `backup list` shows it; `recover` downloads
//! the newest, checks it (sha256 against its record or the object's metadata, then the
//! snapshot's own hash as etcdutl does) and goes to the next one when it is damaged.

use super::records::{self, BackupRecord};
use crate::cloud::openstack::swift::Swift;
use crate::render::sha256_hex;
use crate::retention;
use crate::spec::{shown, Role, Spec};
use anyhow::{anyhow, bail, Result};
use std::path::Path;
use time::PrimitiveDateTime;

/// Where a copy is: a local one with the record it was listed from.
#[derive(Debug, Clone)]
pub enum Place {
    Local(BackupRecord),
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
            Place::Local(_) => self.name.clone(),
            Place::Swift => format!("swift:{}", self.name),
        }
    }

    fn in_swift(&self) -> bool {
        matches!(self.place, Place::Swift)
    }
}

/// How records write times: `2026-11-29T21:30:05Z`.
const RECORD_TIME: &[time::format_description::FormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");

pub fn local(state_dir: &Path) -> Result<Vec<Copy>> {
    Ok(records::records(state_dir)?
        .into_iter()
        .map(|r: BackupRecord| Copy {
            time: PrimitiveDateTime::parse(&r.taken_at, RECORD_TIME)
                .unwrap_or(PrimitiveDateTime::MIN),
            revision: Some(r.revision),
            bytes: r.bytes,
            sha256: Some(r.sha256.clone()),
            member: r.member.clone(),
            name: r.file.clone(),
            place: Place::Local(r),
        })
        .collect())
}

/// A local copy's bytes, if they match its record and are a whole snapshot.
fn read_local(state_dir: &Path, record: &BackupRecord) -> Result<Vec<u8>> {
    let bytes = records::read_checked(state_dir, record)?;
    crate::snapshot::check(&bytes)?;
    Ok(bytes)
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
            .then(a.in_swift().cmp(&b.in_swift()))
            .then(b.name.cmp(&a.name))
    });
}

/// The bytes of `copy` if they are whole and the ones its record or metadata names.
pub async fn fetch(
    copy: &Copy,
    state_dir: &Path,
    swift: Option<(&Swift, &str)>,
) -> Result<Vec<u8>> {
    match &copy.place {
        Place::Local(record) => read_local(state_dir, record),
        Place::Swift => {
            let (swift, container) = swift.ok_or_else(|| anyhow!("Swift is not connected"))?;
            let (bytes, sha) = swift.get_object(container, &copy.name).await?;
            let Some(sha) = sha else {
                bail!("the object carries no sha256 to check it against");
            };
            if sha256_hex(&bytes) != sha {
                bail!("sha256 differs from the one it was uploaded with");
            }
            crate::snapshot::check(&bytes)?;
            Ok(bytes)
        }
    }
}

/// One table: where, member, time, revision, size, sha256, and the check of the local
/// ones (read and hashed; Swift copies are checked when recover downloads them).
pub fn print(copies: &[Copy], state_dir: &Path) {
    println!(
        "{:<6} {:<10} {:<20} {:>9} {:>11} {:<12} {:<10} NAME",
        "WHERE", "MEMBER", "TIME (UTC)", "REVISION", "BYTES", "SHA256", "CHECK"
    );
    for c in copies {
        let check = match &c.place {
            Place::Swift => "unchecked".to_string(),
            Place::Local(record) => match read_local(state_dir, record) {
                Ok(_) => "ok".into(),
                Err(e) => format!("BAD: {e}"),
            },
        };
        println!(
            "{:<6} {:<10} {:<20} {:>9} {:>11} {:<12} {:<10} {}",
            if c.in_swift() { "swift" } else { "local" },
            shown(&c.member, 10),
            c.time.format(RECORD_TIME).unwrap_or_else(|_| "?".into()),
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
