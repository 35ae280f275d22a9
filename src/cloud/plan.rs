//! What launch would do: desired resources against what the cloud has.

use super::{Existing, Kind, Resource, Spec};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "action")]
pub enum Action {
    Create,
    /// Exists as wanted.
    Keep {
        id: String,
    },
    /// Exists but differs in a way launch does not change (servers are immutable:
    /// `paasgen rebuild` replaces them).
    Differs {
        id: String,
        why: String,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub kind: Kind,
    pub name: String,
    #[serde(flatten)]
    pub action: Action,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    pub steps: Vec<Step>,
    /// Resources named like the cluster's that the spec no longer has.
    pub orphans: Vec<Existing>,
}

impl Plan {
    pub fn to_create(&self) -> impl Iterator<Item = &Step> {
        self.steps.iter().filter(|s| s.action == Action::Create)
    }

    pub fn is_empty(&self) -> bool {
        self.to_create().next().is_none()
    }

    fn count(&self, f: impl Fn(&Action) -> bool) -> usize {
        self.steps.iter().filter(|s| f(&s.action)).count()
    }
}

/// Matches desired resources to existing ones by kind and name.
pub fn plan(desired: &[Resource], existing: &[Existing]) -> Plan {
    let by_key: BTreeMap<(Kind, &str), &Existing> = existing
        .iter()
        .map(|e| ((e.kind, e.name.as_str()), e))
        .collect();
    let steps = desired
        .iter()
        .map(|r| {
            let action = match by_key.get(&(r.kind, r.name.as_str())) {
                None => Action::Create,
                Some(e) => match (&r.spec, &e.user_data_sha256) {
                    (
                        Spec::Server {
                            user_data_sha256, ..
                        },
                        Some(have),
                    ) if have != user_data_sha256 => Action::Differs {
                        id: e.id.clone(),
                        why: "user-data changed since launch (see `paasgen diff`)".into(),
                    },
                    _ if e.status.as_deref() == Some("ERROR") => Action::Differs {
                        id: e.id.clone(),
                        why: format!(
                            "server is in ERROR: {}",
                            e.fault.as_deref().unwrap_or("no fault given")
                        ),
                    },
                    _ => Action::Keep { id: e.id.clone() },
                },
            };
            Step {
                kind: r.kind,
                name: r.name.clone(),
                action,
            }
        })
        .collect();
    let wanted: std::collections::HashSet<(Kind, &str)> =
        desired.iter().map(|r| (r.kind, r.name.as_str())).collect();
    let orphans = existing
        .iter()
        .filter(|e| !wanted.contains(&(e.kind, e.name.as_str())))
        .cloned()
        .collect();
    Plan { steps, orphans }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.steps {
            match &s.action {
                Action::Create => writeln!(f, "  + create  {:<20} {}", s.kind, s.name)?,
                Action::Keep { .. } => writeln!(f, "    keep    {:<20} {}", s.kind, s.name)?,
                Action::Differs { why, .. } => {
                    writeln!(f, "  ~ differs {:<20} {}: {why}", s.kind, s.name)?
                }
            }
        }
        for o in &self.orphans {
            writeln!(f, "  ? not in the spec: {} {} ({})", o.kind, o.name, o.id)?;
        }
        write!(
            f,
            "Plan: {} to create, {} unchanged, {} differ.",
            self.count(|a| *a == Action::Create),
            self.count(|a| matches!(a, Action::Keep { .. })),
            self.count(|a| matches!(a, Action::Differs { .. }))
        )
    }
}
