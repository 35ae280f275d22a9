//! Creating what the plan lacks: in dependency waves, `parallel` calls in flight,
//! transient failures retried with jittered exponential backoff, every created id
//! recorded at once so an interrupted launch resumes without duplicates.

use super::state::{FloatingIpRecord, LaunchState, NodeRecord, Record, StateFile};
use super::{Cloud, Existing, Ids, Kind, Resource, ServerState, Spec};
use crate::render::NodeDocument;
use anyhow::{anyhow, bail, Result};
use futures::stream::{self, StreamExt};
use rand::Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// An error worth retrying: 5xx, 429, timeouts, refused connections.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Transient(pub String);

#[derive(Debug, Clone)]
pub struct Options {
    /// Calls in flight at once.
    pub parallel: usize,
    /// Delete and recreate a server that went ERROR (once).
    pub replace_failed: bool,
    /// How long a server may take to become ACTIVE.
    pub server_timeout: Duration,
    /// Tries per call for transient failures.
    pub attempts: u32,
    /// First retry delay; doubles each time, capped at 8 s, with full jitter.
    pub backoff: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            parallel: 10,
            replace_failed: false,
            server_timeout: Duration::from_secs(600),
            attempts: 6,
            backoff: Duration::from_millis(500),
        }
    }
}

/// Where a node ended up.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodeOutcome {
    pub server_id: String,
    pub status: String,
    pub fault: Option<String>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Outcome {
    pub created: Vec<String>,
    pub nodes: BTreeMap<String, NodeOutcome>,
}

impl Outcome {
    pub fn failed(&self) -> Vec<(&String, &NodeOutcome)> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.status != "ACTIVE")
            .collect()
    }
}

async fn sleep_backoff(opts: &Options, attempt: u32) {
    let cap = Duration::from_secs(8).min(opts.backoff * 2u32.saturating_pow(attempt));
    let jitter = rand::rng().random_range(0.0..=1.0);
    tokio::time::sleep(cap.mul_f64(jitter)).await;
}

/// Runs `call` until it succeeds, fails for good, or runs out of attempts.
pub async fn retry<T, F, Fut>(opts: &Options, what: &str, mut call: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut attempt = 0;
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) if e.downcast_ref::<Transient>().is_some() && attempt + 1 < opts.attempts => {
                tracing::warn!("{what}: {e}; retrying");
                sleep_backoff(opts, attempt).await;
                attempt += 1;
            }
            Err(e) => return Err(e.context(what.to_string())),
        }
    }
}

fn find<'a>(existing: &'a [Existing], r: &Resource) -> Option<&'a Existing> {
    existing
        .iter()
        .find(|e| e.kind == r.kind && e.name == r.name)
}

/// Creates one resource. After a transient failure the create may have happened anyway,
/// so the cloud is asked before trying again.
async fn create_one<C: Cloud>(
    cloud: &C,
    cluster: &str,
    r: &Resource,
    ids: &Ids,
    opts: &Options,
) -> Result<String> {
    let mut attempt = 0;
    loop {
        match cloud.create(cluster, r, ids).await {
            Ok(id) => return Ok(id),
            Err(e) if e.downcast_ref::<Transient>().is_some() && attempt + 1 < opts.attempts => {
                tracing::warn!("creating {} {}: {e}; checking and retrying", r.kind, r.name);
                sleep_backoff(opts, attempt).await;
                attempt += 1;
                let now = retry(opts, "listing resources", || cloud.inventory(cluster)).await?;
                if let Some(found) = find(&now, r) {
                    return Ok(found.id.clone());
                }
            }
            Err(e) => return Err(e.context(format!("creating {} {}", r.kind, r.name))),
        }
    }
}

/// `network.public: floating`: the floating IP `fip` (desired::floating_ip), found again
/// by name or, with `allocate`, allocated now, and then recorded in launch.json, all
/// before anything is rendered with its address. Without `allocate` (plan, dry runs) it
/// only looks: None when the cloud has none yet.
pub async fn floating_ip<C: Cloud>(
    cloud: &C,
    cluster: &str,
    fip: &Resource,
    state: &StateFile,
    opts: &Options,
    allocate: bool,
) -> Result<Option<FloatingIpRecord>> {
    let list = || retry(opts, "listing resources", || cloud.inventory(cluster));
    let mut found = find(&list().await?, fip).cloned();
    if found.is_none() && allocate {
        let id = create_one(cloud, cluster, fip, &Ids::new(), opts).await?;
        found = list().await?.into_iter().find(|e| e.id == id);
    }
    let Some(e) = found else {
        return match allocate {
            true => Err(anyhow!(
                "floating ip {} was allocated but is not listed",
                fip.name
            )),
            false => Ok(None),
        };
    };
    let address = e
        .address
        .ok_or_else(|| anyhow!("floating ip {} ({}) has no address", e.name, e.id))?;
    let record = FloatingIpRecord { id: e.id, address };
    if allocate {
        let mut launched = state.load()?.unwrap_or_default();
        if launched.floating_ip.as_ref() != Some(&record) {
            launched.cluster = cluster.to_string();
            launched.floating_ip = Some(record.clone());
            launched.resources.insert(
                fip.name.clone(),
                Record {
                    kind: fip.kind,
                    id: record.id.clone(),
                },
            );
            state.save(&launched)?;
        }
    }
    Ok(Some(record))
}

/// Progress of a launch, for bars on a terminal or plain lines elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A phase begins with this many items.
    Phase { what: String, total: usize },
    /// One item of the current phase is done.
    Done { what: String },
    /// Something worth a line of its own.
    Note(String),
}

pub struct Launch<'a, C: Cloud> {
    pub cloud: &'a C,
    pub cluster: &'a str,
    pub desired: &'a [Resource],
    pub opts: &'a Options,
    pub state: &'a StateFile,
    /// The rendered nodes: their user-data is recorded for `diff` once its server exists.
    pub docs: &'a [NodeDocument],
    /// Told about each step, for progress output.
    pub report: &'a (dyn Fn(Event) + Sync),
}

impl<C: Cloud> Launch<'_, C> {
    pub async fn run(&self) -> Result<Outcome> {
        let existing = retry(self.opts, "listing resources", || {
            self.cloud.inventory(self.cluster)
        })
        .await?;
        let mut state = self.state.load()?.unwrap_or_default();
        state.cluster = self.cluster.to_string();
        let mut ids = Ids::new();
        let by_key: std::collections::HashMap<(Kind, &str), &Existing> = existing
            .iter()
            .map(|e| ((e.kind, e.name.as_str()), e))
            .collect();
        for r in self.desired {
            if let Some(e) = by_key.get(&(r.kind, r.name.as_str())) {
                ids.insert(r.name.clone(), e.id.clone());
                state.resources.insert(
                    r.name.clone(),
                    Record {
                        kind: r.kind,
                        id: e.id.clone(),
                    },
                );
            }
        }
        self.state.save(&state)?;
        let mut outcome = Outcome::default();
        self.create_missing(&mut ids, &mut state, &mut outcome)
            .await?;
        // What the servers that already existed were launched with (from their metadata).
        let running: BTreeMap<String, String> = existing
            .iter()
            .filter(|e| e.kind == Kind::Server)
            .filter_map(|e| Some((e.name.clone(), e.user_data_sha256.clone()?)))
            .collect();
        self.settle_servers(&mut ids, &mut state, &mut outcome, &running)
            .await?;
        Ok(outcome)
    }

    async fn create_missing(
        &self,
        ids: &mut Ids,
        state: &mut LaunchState,
        outcome: &mut Outcome,
    ) -> Result<()> {
        let mut remaining: Vec<&Resource> = self
            .desired
            .iter()
            .filter(|r| !ids.contains_key(&r.name))
            .collect();
        while !remaining.is_empty() {
            let (ready, blocked): (Vec<&Resource>, Vec<&Resource>) = remaining
                .into_iter()
                .partition(|r| r.depends_on().iter().all(|d| ids.contains_key(*d)));
            if ready.is_empty() {
                let names: Vec<&str> = blocked.iter().map(|r| r.name.as_str()).collect();
                bail!("cannot order the creation of {}", names.join(", "));
            }
            (self.report)(Event::Phase {
                what: format!("creating {}", kinds(&ready)),
                total: ready.len(),
            });
            let snapshot = ids.clone();
            let mut results = stream::iter(lanes(&ready))
                .map(|lane| {
                    let snapshot = &snapshot;
                    Box::pin(stream::iter(lane).then(move |r| async move {
                        let result = self.create_and_place(r, snapshot).await;
                        (r, result)
                    }))
                })
                .flatten_unordered(self.opts.parallel.max(1));
            let mut first_error = None;
            while let Some((r, result)) = results.next().await {
                match result {
                    Ok(id) => {
                        (self.report)(Event::Done {
                            what: format!("created {} {} ({id})", r.kind, r.name),
                        });
                        ids.insert(r.name.clone(), id.clone());
                        let record = Record { kind: r.kind, id };
                        self.state.record_created(&r.name, &record)?;
                        state.resources.insert(r.name.clone(), record);
                        outcome.created.push(r.name.clone());
                    }
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
            self.state.save(state)?;
            if let Some(e) = first_error {
                return Err(e);
            }
            remaining = blocked;
        }
        Ok(())
    }

    /// Creates `r`; a member of a server group is also waited for until the scheduler
    /// has placed it, so that the next member's anti-affinity check sees it (boots in
    /// parallel race the check and fail with "exhausted all hosts" on a full cloud).
    async fn create_and_place(&self, r: &Resource, ids: &Ids) -> Result<String> {
        let id = create_one(self.cloud, self.cluster, r, ids, self.opts).await?;
        if let Spec::Server {
            server_group: Some(_),
            ..
        } = &r.spec
        {
            self.wait_server(&id).await?;
        }
        Ok(id)
    }

    /// Waits for every server to leave BUILD; replaces failed ones when asked to.
    async fn settle_servers(
        &self,
        ids: &mut Ids,
        state: &mut LaunchState,
        outcome: &mut Outcome,
        running: &BTreeMap<String, String>,
    ) -> Result<()> {
        let servers: Vec<&Resource> = self
            .desired
            .iter()
            .filter(|r| r.kind == Kind::Server)
            .collect();
        let mut replaced = BTreeSet::new();
        let docs: std::collections::HashMap<&str, &NodeDocument> =
            self.docs.iter().map(|d| (d.name.as_str(), d)).collect();
        loop {
            let created: std::collections::HashSet<&str> =
                outcome.created.iter().map(String::as_str).collect();
            (self.report)(Event::Phase {
                what: format!("waiting for {} server(s)", servers.len()),
                total: servers.len(),
            });
            let results: Vec<(&Resource, Result<ServerState>)> =
                stream::iter(servers.iter().map(|r| {
                    let id = ids[&r.name].clone();
                    async move {
                        let state = self.wait_server(&id).await;
                        (self.report)(Event::Done {
                            what: format!(
                                "server {}: {:?}",
                                r.name,
                                state.as_ref().map_err(|e| e.to_string())
                            ),
                        });
                        (*r, state)
                    }
                }))
                .buffer_unordered(self.opts.parallel.max(1))
                .collect()
                .await;
            let mut to_replace = Vec::new();
            for (r, result) in results {
                let Spec::Server {
                    node,
                    user_data_sha256,
                    ..
                } = &r.spec
                else {
                    continue;
                };
                let id = ids[&r.name].clone();
                let (status, fault) = match result? {
                    ServerState::Active => ("ACTIVE".to_string(), None),
                    ServerState::Building => (
                        "BUILD".to_string(),
                        Some("still building at the timeout".to_string()),
                    ),
                    ServerState::Error(fault) => ("ERROR".to_string(), Some(fault)),
                };
                if status == "ERROR" && self.opts.replace_failed && replaced.insert(r.name.clone())
                {
                    to_replace.push(r);
                }
                let doc = docs.get(node.as_str()).copied();
                // A server keeps the user-data it booted with: only a server created
                // now, or one launched with this very document, records it for `diff`.
                let created_now = created.contains(r.name.as_str()) || replaced.contains(&r.name);
                let running_sha = match created_now {
                    true => Some(user_data_sha256.clone()),
                    false => running.get(&r.name).cloned(),
                };
                if let (Some(doc), true) = (doc, running_sha.as_ref() == Some(user_data_sha256)) {
                    self.state.save_launched_user_data(node, &doc.user_data)?;
                }
                state.nodes.insert(
                    node.clone(),
                    NodeRecord {
                        server_id: id.clone(),
                        status: status.clone(),
                        private_ip: doc.map(|d| d.private_ip.to_string()).unwrap_or_default(),
                        public_ip: doc.and_then(|d| d.public_ip.map(|ip| ip.to_string())),
                        port_ids: match &r.spec {
                            Spec::Server { ports, .. } => {
                                ports.iter().filter_map(|p| ids.get(p).cloned()).collect()
                            }
                            _ => vec![],
                        },
                        user_data_sha256: running_sha.unwrap_or_default(),
                    },
                );
                outcome.nodes.insert(
                    node.clone(),
                    NodeOutcome {
                        server_id: id,
                        status,
                        fault,
                    },
                );
            }
            self.state.save(state)?;
            if to_replace.is_empty() {
                return Ok(());
            }
            for r in to_replace {
                (self.report)(Event::Note(format!("replacing failed server {}", r.name)));
                let old = ids
                    .remove(&r.name)
                    .ok_or_else(|| anyhow!("no id for {}", r.name))?;
                retry(self.opts, "deleting a failed server", || {
                    self.cloud.delete(Kind::Server, &old)
                })
                .await?;
                let id = create_one(self.cloud, self.cluster, r, ids, self.opts).await?;
                ids.insert(r.name.clone(), id.clone());
                state.resources.insert(
                    r.name.clone(),
                    Record {
                        kind: Kind::Server,
                        id,
                    },
                );
                self.state.save(state)?;
            }
        }
    }

    async fn wait_server(&self, id: &str) -> Result<ServerState> {
        let deadline = tokio::time::Instant::now() + self.opts.server_timeout;
        // Short, steady polls: a server-group member's wait holds up the next member.
        let mut delay = Duration::from_millis(250);
        loop {
            let s = retry(self.opts, "reading server status", || {
                self.cloud.server_state(id)
            })
            .await?;
            if s != ServerState::Building || tokio::time::Instant::now() >= deadline {
                return Ok(s);
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(1));
        }
    }
}

/// Groups a wave into lanes run one after the other inside, in parallel across:
/// members of one server group share a lane, everything else has its own.
fn lanes<'r>(ready: &[&'r Resource]) -> Vec<Vec<&'r Resource>> {
    let mut lanes: Vec<Vec<&Resource>> = Vec::new();
    let mut group_lane: BTreeMap<&str, usize> = BTreeMap::new();
    for r in ready {
        let group = match &r.spec {
            Spec::Server {
                server_group: Some(g),
                ..
            } => Some(g.as_str()),
            _ => None,
        };
        match group.and_then(|g| group_lane.get(g)) {
            Some(&lane) => lanes[lane].push(r),
            None => {
                if let Some(g) = group {
                    group_lane.insert(g, lanes.len());
                }
                lanes.push(vec![r]);
            }
        }
    }
    lanes
}

fn kinds(rs: &[&Resource]) -> String {
    let mut counts: BTreeMap<Kind, usize> = BTreeMap::new();
    for r in rs {
        *counts.entry(r.kind).or_default() += 1;
    }
    counts
        .iter()
        .map(|(k, n)| format!("{n} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}
