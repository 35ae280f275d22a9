//! Whether a member is dead, from positive evidence only. A day-2 verb deletes what it
//! has seen to be dead, never what it merely could not reach: both gateways down, an
//! operator outside `admin_cidrs` or a wrong `--etcd-via` make every member silent
//! while etcd is fine.
//!
//! Evidence is the cloud saying the member's server is gone, in ERROR or SHUTOFF, or
//! the member itself answering (through TLS checked against its own certificate) that
//! it is unhealthy: no leader, an alarm.

use crate::cloud::{Cloud, Kind};
use crate::etcd_admin::{EtcdAdmin, Health};
use crate::spec::{Role, Spec};
use anyhow::Result;
use std::collections::BTreeMap;
use std::fmt;

/// What is known of one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    Healthy,
    /// It cannot serve, and the cloud says so: why.
    Dead(String),
    /// It answers that it cannot serve (no leader, an alarm): etcd's reason. Dead by its
    /// own word, which an election in progress also says for a moment.
    SaysUnhealthy(String),
    /// It did not answer and nothing says it is dead: why not.
    Unreachable(String),
}

/// Server statuses that say the machine does not run (Nova's, and the lab's).
const NOT_RUNNING: [&str; 4] = ["ERROR", "SHUTOFF", "DELETED", "SOFT_DELETED"];

/// One member, from its answer and its server's status (None: no such server).
pub fn judge(health: Health, server: Option<&str>) -> Seen {
    match (health, server) {
        (Health::Healthy, _) => Seen::Healthy,
        (Health::Unhealthy(reason), _) => Seen::SaysUnhealthy(reason),
        (Health::NoAnswer(_), None) => Seen::Dead("its server is gone".into()),
        (Health::NoAnswer(why), Some(status)) if NOT_RUNNING.contains(&status) => {
            Seen::Dead(format!("its server is {status} (no answer: {why})"))
        }
        (Health::NoAnswer(why), Some(status)) => {
            Seen::Unreachable(format!("no answer ({why}) while its server is {status}"))
        }
    }
}

/// Every etcd member of the spec, as seen now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Census(pub Vec<(String, Seen)>);

impl Census {
    pub fn healthy(&self) -> Vec<String> {
        self.0
            .iter()
            .filter(|(_, s)| *s == Seen::Healthy)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Whether a member said it is unhealthy (worth asking again a moment later).
    pub fn has_unhealthy_answers(&self) -> bool {
        self.0
            .iter()
            .any(|(_, s)| matches!(s, Seen::SaysUnhealthy(_)))
    }

    /// The members but `except`.
    pub fn without(&self, except: &str) -> Census {
        Census(
            self.0
                .iter()
                .filter(|(n, _)| n != except)
                .cloned()
                .collect(),
        )
    }

    /// Why nothing may be deleted on what this census shows, if it may not: some
    /// member was not seen, dead or alive.
    pub fn blind_spots(&self) -> Option<String> {
        let unseen: Vec<String> = self
            .0
            .iter()
            .filter_map(|(n, s)| match s {
                Seen::Unreachable(why) => Some(format!("{n}: {why}")),
                _ => None,
            })
            .collect();
        if unseen.is_empty() {
            return None;
        }
        Some(format!(
            "unreachable is not dead, and {} could not be seen:\n  {}\nLikely: neither gateway runs haproxy or holds the public VIP; this machine's address is not in network.admin_cidrs; or --etcd-via points elsewhere. If a member's server is really broken, stop it (`openstack server stop <server>`) so the cloud says so, and run this again.",
            if unseen.len() == 1 { "a member" } else { "members" },
            unseen.join("\n  ")
        ))
    }
}

impl fmt::Display for Census {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(n, s)| match s {
                Seen::Healthy => format!("{n} healthy"),
                Seen::Dead(why) => format!("{n} dead ({why})"),
                Seen::SaysUnhealthy(why) => format!("{n} answers unhealthy ({why})"),
                Seen::Unreachable(why) => format!("{n} unreachable ({why})"),
            })
            .collect();
        f.write_str(&parts.join("; "))
    }
}

/// Asks every member and the cloud at once.
pub async fn etcd_census<C: Cloud>(spec: &Spec, etcd: &EtcdAdmin, cloud: &C) -> Result<Census> {
    let (health, inventory) = tokio::join!(etcd.health_of_all(), cloud.inventory(&spec.name));
    let servers: BTreeMap<String, Option<String>> = inventory?
        .into_iter()
        .filter(|e| e.kind == Kind::Server)
        .map(|e| (e.name, e.status))
        .collect();
    let members = spec.nodes_with_role(Role::Etcd).map(|n| {
        let server = servers.get(&format!("{}-{}", spec.name, n.name));
        let health = health
            .iter()
            .find(|(name, _)| *name == n.name)
            .map(|(_, h)| h.clone())
            .unwrap_or_else(|| Health::NoAnswer("not asked".into()));
        // A server the listing shows without a status is taken as running.
        let status = server.map(|s| s.as_deref().unwrap_or("of unknown status"));
        (n.name.clone(), judge(health, status))
    });
    Ok(Census(members.collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_is_death_only_when_the_cloud_says_so() {
        let silent = || Health::NoAnswer("connection refused".into());
        assert!(matches!(
            judge(silent(), Some("ACTIVE")),
            Seen::Unreachable(_)
        ));
        assert!(matches!(
            judge(silent(), Some("BUILD")),
            Seen::Unreachable(_)
        ));
        assert!(matches!(
            judge(silent(), Some("REBOOT")),
            Seen::Unreachable(_)
        ));
        for status in ["SHUTOFF", "ERROR", "DELETED"] {
            assert!(
                matches!(judge(silent(), Some(status)), Seen::Dead(_)),
                "{status}"
            );
        }
        assert_eq!(
            judge(silent(), None),
            Seen::Dead("its server is gone".into())
        );
        let no_leader = Health::Unhealthy("RAFT NO LEADER".into());
        assert!(judge(no_leader, Some("ACTIVE")) == Seen::SaysUnhealthy("RAFT NO LEADER".into()));
        assert_eq!(judge(Health::Healthy, Some("SHUTOFF")), Seen::Healthy);
    }

    #[test]
    fn an_unseen_member_is_a_blind_spot_that_names_the_likely_causes() {
        let census = Census(vec![
            ("etcd-1".into(), Seen::Dead("its server is gone".into())),
            (
                "etcd-2".into(),
                Seen::Unreachable("no answer (timed out) while its server is ACTIVE".into()),
            ),
            ("etcd-3".into(), Seen::Healthy),
        ]);
        let why = census.blind_spots().unwrap();
        assert!(why.contains("etcd-2: no answer (timed out)"), "{why}");
        assert!(
            why.contains("admin_cidrs") && why.contains("--etcd-via"),
            "{why}"
        );
        assert!(!why.contains("etcd-1") && !why.contains("etcd-3"), "{why}");
        assert_eq!(census.healthy(), ["etcd-3"]);
        assert_eq!(census.without("etcd-2").blind_spots(), None);
    }
}
