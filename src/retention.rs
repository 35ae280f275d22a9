//! Which off-site copies `backup prune` deletes: per member (and paasgen's own), all but
//! the newest `keep`, newest by when Swift stored them. A node's upload signature lets it
//! write any name under its prefix, so names are not trusted for order: a name that
//! sorts last would otherwise push the genuine copies out. Names that are not a copy's
//! (`<member>/<member>-<time>.db`, `paasgen/<cluster>-<time>-r<revision>.db`), or that
//! claim a time after their upload, are left alone and reported, never deleted.

use crate::cloud::openstack::swift::Version;
use std::collections::BTreeMap;
use time::{Duration, PrimitiveDateTime};

/// A copy may be named up to this long after Swift's clock says it arrived (clocks
/// differ between a node and Swift).
const CLOCK_SKEW: Duration = Duration::minutes(15);

/// What prune does with a container's versions.
#[derive(Debug, Default)]
pub struct Pruning<'a> {
    /// Every version of the copies beyond the newest `keep` of their prefix.
    pub delete: Vec<&'a Version>,
    /// Object names that are no copy's, with why (shown escaped by the caller).
    pub ignored: Vec<(String, String)>,
}

/// `20261130T010000Z` as a time.
fn compact_time(stamp: &str) -> Option<PrimitiveDateTime> {
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    PrimitiveDateTime::parse(stamp, &format).ok()
}

/// Swift's `last_modified` (`2026-11-30T01:00:03.123450`, UTC) to the second.
pub fn swift_time(last_modified: &str) -> Option<PrimitiveDateTime> {
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    PrimitiveDateTime::parse(last_modified.get(..19)?, &format).ok()
}

/// The prefix and claimed time of a copy's name, if it is one.
fn copy_name(name: &str, members: &[&str], cluster: &str) -> Option<(String, PrimitiveDateTime)> {
    let (prefix, file) = name.split_once('/')?;
    let stem = file.strip_suffix(".db")?;
    let stamp = if prefix == "paasgen" {
        // `<cluster>-<time>-r<revision>`
        let rest = stem.strip_prefix(cluster)?.strip_prefix('-')?;
        let (stamp, revision) = rest.split_once("-r")?;
        if revision.is_empty() || !revision.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        stamp
    } else if members.contains(&prefix) {
        stem.strip_prefix(prefix)?.strip_prefix('-')?
    } else {
        return None;
    };
    Some((prefix.to_string(), compact_time(stamp)?))
}

/// The member (or `paasgen`) whose copy `name` is, and when Swift stored it, if it is
/// a copy stored no earlier than the time its name claims; else why not.
pub fn genuine_copy(
    name: &str,
    last_modified: &str,
    members: &[&str],
    cluster: &str,
) -> Result<(String, PrimitiveDateTime), String> {
    let Some(uploaded) = swift_time(last_modified) else {
        return Err(format!("Swift gives no time for it (`{last_modified}`)"));
    };
    match copy_name(name, members, cluster) {
        None => Err("not the name of a copy".into()),
        Some((_, claimed)) if claimed > uploaded + CLOCK_SKEW => Err(format!(
            "named after a time later than its upload ({uploaded})"
        )),
        Some((prefix, _)) => Ok((prefix, uploaded)),
    }
}

/// What to delete so that each prefix keeps its newest `keep` copies with all their
/// versions; `members` are the spec's etcd nodes.
pub fn plan<'a>(
    versions: &'a [Version],
    keep: usize,
    members: &[&str],
    cluster: &str,
) -> Pruning<'a> {
    let mut pruning = Pruning::default();
    // name -> (prefix, newest upload of any of its versions)
    let mut copies: BTreeMap<&str, (String, PrimitiveDateTime)> = BTreeMap::new();
    let mut refused: BTreeMap<&str, String> = BTreeMap::new();
    for v in versions {
        match genuine_copy(&v.name, &v.last_modified, members, cluster) {
            Err(why) => {
                refused.insert(&v.name, why);
            }
            Ok((prefix, uploaded)) => {
                let entry = copies.entry(&v.name).or_insert((prefix, uploaded));
                entry.1 = entry.1.max(uploaded);
            }
        }
    }
    // A name with one bad version is not trusted with its others either.
    copies.retain(|name, _| !refused.contains_key(name));
    let mut by_prefix: BTreeMap<&str, Vec<(PrimitiveDateTime, &str)>> = BTreeMap::new();
    for (name, (prefix, uploaded)) in &copies {
        by_prefix.entry(prefix).or_default().push((*uploaded, name));
    }
    let mut old: Vec<&str> = Vec::new();
    for list in by_prefix.values_mut() {
        // Newest first; equal times by name, so the answer does not depend on order.
        list.sort_by(|a, b| b.cmp(a));
        old.extend(list.iter().skip(keep).map(|(_, name)| *name));
    }
    pruning.delete = versions
        .iter()
        .filter(|v| old.contains(&v.name.as_str()))
        .collect();
    pruning.ignored = refused
        .into_iter()
        .map(|(name, why)| (name.to_string(), why))
        .collect();
    pruning
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(name: &str, id: &str, uploaded: &str) -> Version {
        Version {
            name: name.into(),
            version_id: id.into(),
            last_modified: format!("2026-11-30T{uploaded}.000000"),
        }
    }

    const MEMBERS: [&str; 3] = ["etcd-1", "etcd-2", "etcd-3"];

    fn deleted<'a>(p: &Pruning<'a>) -> Vec<&'a str> {
        p.delete.iter().map(|v| v.version_id.as_str()).collect()
    }

    #[test]
    fn prune_keeps_the_newest_copies_of_each_member_with_all_their_versions() {
        let versions = [
            v("etcd-1/etcd-1-20261130T010000Z.db", "a", "01:00:05"),
            v("etcd-1/etcd-1-20261130T020000Z.db", "b", "02:00:05"),
            v("etcd-1/etcd-1-20261130T020000Z.db", "b2", "02:00:09"),
            v("etcd-1/etcd-1-20261130T030000Z.db", "c", "03:00:05"),
            v("etcd-2/etcd-2-20261130T000000Z.db", "d", "00:00:05"),
            v("paasgen/demo-20261130T010000Z-r5.db", "e", "01:00:01"),
            v("paasgen/demo-20261130T020000Z-r9.db", "f", "02:00:01"),
        ];
        let p = |keep| plan(&versions, keep, &MEMBERS, "demo");
        assert_eq!(deleted(&p(2)), ["a"]);
        assert_eq!(deleted(&p(1)), ["a", "b", "b2", "e"]);
        assert!(p(1).ignored.is_empty());
    }

    #[test]
    fn hostile_names_neither_push_genuine_copies_out_nor_get_deleted() {
        let versions = [
            v("etcd-1/etcd-1-20261130T010000Z.db", "a", "01:00:05"),
            v("etcd-1/etcd-1-20261130T020000Z.db", "b", "02:00:05"),
            // Planted later by a node, named to sort last or first.
            v("etcd-1/etcd-1-99991231T235959Z.db", "x1", "02:30:00"),
            v("etcd-1/zzzz.db", "x2", "02:30:01"),
            v("etcd-1/etcd-1-20261130T020000Z.db.bak", "x3", "02:30:02"),
            v(
                "etcd-1/../etcd-2/etcd-2-20261130T000000Z.db",
                "x4",
                "02:30:03",
            ),
            v("etcd-1/etcd-2-20261130T000000Z.db", "x5", "02:30:04"),
            v("etcd-9/etcd-9-20261130T000000Z.db", "x6", "02:30:05"),
            v("etcd-1/etcd-1-20261130T023000Z.db", "x7", "not a time"),
            v("etcd-2/etcd-2-20261130T000000Z.db", "d", "00:00:05"),
        ];
        let p = plan(&versions, 2, &MEMBERS, "demo");
        assert!(deleted(&p).is_empty(), "{:?}", deleted(&p));
        let ignored: Vec<&str> = p.ignored.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(ignored.len(), 7, "{ignored:?}");
        let why = |name: &str| {
            let found = p.ignored.iter().find(|(n, _)| n == name);
            found.map(|(_, why)| why.clone()).unwrap_or_default()
        };
        assert!(why("etcd-1/etcd-1-99991231T235959Z.db").contains("later than its upload"));
        assert!(why("etcd-1/zzzz.db").contains("not the name of a copy"));
        assert!(why("etcd-1/etcd-1-20261130T023000Z.db").contains("no time"));
        // keep 1: the older genuine copy goes, the planted ones stay.
        let p = plan(&versions, 1, &MEMBERS, "demo");
        assert_eq!(deleted(&p), ["a"]);
    }

    #[test]
    fn order_is_by_upload_not_by_name() {
        // An old-looking name uploaded last is the newest copy.
        let versions = [
            v("etcd-1/etcd-1-20261130T020000Z.db", "b", "02:00:05"),
            v("etcd-1/etcd-1-20261130T010000Z.db", "late", "03:00:00"),
        ];
        assert_eq!(deleted(&plan(&versions, 1, &MEMBERS, "demo")), ["b"]);
    }
}
