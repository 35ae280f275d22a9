//! Creating what the plan lacks: each resource once its dependencies exist, `parallel`
//! calls in flight, transient failures retried with jittered exponential backoff, every
//! created id recorded at once so an interrupted launch resumes without duplicates.

use super::state::{FloatingIpRecord, LaunchState, NodeRecord, Record, StateFile};
use super::{Cloud, Existing, Ids, Kind, Resource, ServerState, Spec};
use crate::render::NodeDocument;
use anyhow::{anyhow, bail, Result};
use futures::stream::StreamExt;
use rand::Rng;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
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

    /// Creates what is missing, each resource as soon as what it refers to exists (not
    /// in waves), `parallel` at a time, one member of a server group at a time. The
    /// anti-affinity chains (gateways, etcd, masters) are the longest sequential path, so
    /// they and what they need go first; workers fill the free slots around them.
    async fn create_missing(
        &self,
        ids: &mut Ids,
        state: &mut LaunchState,
        outcome: &mut Outcome,
    ) -> Result<()> {
        let missing: Vec<&Resource> = self
            .desired
            .iter()
            .filter(|r| !ids.contains_key(&r.name))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        (self.report)(Event::Phase {
            what: format!("creating {}", kinds(&missing)),
            total: missing.len(),
        });
        let mut order = Order::new(&missing, ids);
        let mut in_flight = futures::stream::FuturesUnordered::new();
        let mut first_error = None;
        loop {
            while first_error.is_none() && in_flight.len() < self.opts.parallel.max(1) {
                let Some(i) = order.next_ready() else { break };
                let r = missing[i];
                // Only its dependencies' ids: a snapshot of all would cost O(n) per create.
                let deps: Ids = r
                    .depends_on()
                    .into_iter()
                    .filter_map(|d| Some((d.to_string(), ids.get(d)?.clone())))
                    .collect();
                in_flight.push(async move { (i, self.create_and_place(r, &deps).await) });
            }
            let Some((i, result)) = in_flight.next().await else {
                break;
            };
            let r = missing[i];
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
                    order.done(i);
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
        let left = order.left();
        if !left.is_empty() {
            let names: Vec<&str> = left.iter().map(|&i| missing[i].name.as_str()).collect();
            bail!("cannot order the creation of {}", names.join(", "));
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
            let states = self.wait_servers(&servers, ids).await?;
            let mut to_replace = Vec::new();
            for r in servers.iter().copied() {
                let Spec::Server {
                    node,
                    user_data_sha256,
                    ..
                } = &r.spec
                else {
                    continue;
                };
                let id = ids[&r.name].clone();
                let (status, fault) = match states[&r.name].clone() {
                    ServerState::Active => ("ACTIVE".to_string(), None),
                    ServerState::Building | ServerState::Placed => (
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

    /// Waits until no server is BUILD any more (or the timeout), reading them all with
    /// one listing per round: their states by resource name.
    async fn wait_servers(
        &self,
        servers: &[&Resource],
        ids: &Ids,
    ) -> Result<BTreeMap<String, ServerState>> {
        let deadline = tokio::time::Instant::now() + self.opts.server_timeout;
        let mut delay = Duration::from_millis(500);
        let mut settled = BTreeMap::new();
        loop {
            let now = retry(self.opts, "listing servers", || {
                self.cloud.server_states(self.cluster)
            })
            .await?;
            let timed_out = tokio::time::Instant::now() >= deadline;
            for r in servers {
                if settled.contains_key(&r.name) {
                    continue;
                }
                // Not listed yet (just created): still building.
                let state = now.get(&ids[&r.name]).cloned();
                let state = match state {
                    Some(ServerState::Building | ServerState::Placed) | None if !timed_out => {
                        continue
                    }
                    other => other.unwrap_or(ServerState::Building),
                };
                (self.report)(Event::Done {
                    what: format!("server {}: {state:?}", r.name),
                });
                settled.insert(r.name.clone(), state);
            }
            if settled.len() == servers.len() {
                return Ok(settled);
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
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

/// Which missing resource may be created next: Kahn's topological order (a resource is
/// ready once every dependency exists), the ready ones by priority, and at most one
/// member of each server group under way.
struct Order {
    /// Per resource: dependencies not created yet.
    waiting_on: Vec<usize>,
    /// Per resource: the missing resources that depend on it.
    dependents: Vec<Vec<usize>>,
    /// Per resource: its server group's index in `group_busy`/`parked`, if any.
    group: Vec<Option<usize>>,
    group_busy: Vec<bool>,
    /// Ready members of a busy group, by priority.
    parked: Vec<BinaryHeap<Reverse<(bool, usize)>>>,
    /// Ready resources as (not on a critical path, index): smallest first.
    ready: BinaryHeap<Reverse<(bool, usize)>>,
    critical: Vec<bool>,
    created: Vec<bool>,
}

impl Order {
    fn new(missing: &[&Resource], existing: &Ids) -> Order {
        let n = missing.len();
        let index: HashMap<&str, usize> = missing
            .iter()
            .enumerate()
            .map(|(i, r)| (r.name.as_str(), i))
            .collect();
        let mut waiting_on = vec![0; n];
        let mut dependents = vec![Vec::new(); n];
        let mut deps_of = vec![Vec::new(); n];
        for (i, r) in missing.iter().enumerate() {
            for d in r.depends_on() {
                if existing.contains_key(d) {
                    continue;
                }
                // A dependency neither there nor planned stays unmet: `left` names it.
                waiting_on[i] += 1;
                if let Some(&j) = index.get(d) {
                    dependents[j].push(i);
                    deps_of[i].push(j);
                }
            }
        }
        let mut groups: HashMap<&str, usize> = HashMap::new();
        let group: Vec<Option<usize>> = missing
            .iter()
            .map(|r| match &r.spec {
                Spec::Server {
                    server_group: Some(g),
                    ..
                } => {
                    let next = groups.len();
                    Some(*groups.entry(g.as_str()).or_insert(next))
                }
                _ => None,
            })
            .collect();
        // Server-group members and everything they need, transitively.
        let mut critical = vec![false; n];
        let mut stack: Vec<usize> = (0..n).filter(|&i| group[i].is_some()).collect();
        while let Some(i) = stack.pop() {
            if !std::mem::replace(&mut critical[i], true) {
                stack.extend(&deps_of[i]);
            }
        }
        let ready = (0..n)
            .filter(|&i| waiting_on[i] == 0)
            .map(|i| Reverse((!critical[i], i)))
            .collect();
        Order {
            waiting_on,
            dependents,
            group,
            group_busy: vec![false; groups.len()],
            parked: vec![BinaryHeap::new(); groups.len()],
            ready,
            critical,
            created: vec![false; n],
        }
    }

    /// The next resource to create, if one is ready (marks its group busy).
    fn next_ready(&mut self) -> Option<usize> {
        while let Some(Reverse((_, i))) = self.ready.pop() {
            match self.group[i] {
                Some(g) if self.group_busy[g] => {
                    self.parked[g].push(Reverse((!self.critical[i], i)));
                }
                Some(g) => {
                    self.group_busy[g] = true;
                    return Some(i);
                }
                None => return Some(i),
            }
        }
        None
    }

    /// Resource `i` exists now: its dependents and its group's next member may go.
    fn done(&mut self, i: usize) {
        self.created[i] = true;
        for k in 0..self.dependents[i].len() {
            let d = self.dependents[i][k];
            self.waiting_on[d] -= 1;
            if self.waiting_on[d] == 0 {
                self.ready.push(Reverse((!self.critical[d], d)));
            }
        }
        if let Some(g) = self.group[i] {
            self.group_busy[g] = false;
            if let Some(next) = self.parked[g].pop() {
                self.ready.push(next);
            }
        }
    }

    /// What was not created (after a run that could not go on).
    fn left(&self) -> Vec<usize> {
        (0..self.created.len())
            .filter(|&i| !self.created[i])
            .collect()
    }
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
