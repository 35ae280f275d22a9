//! How a node is replaced (`rebuild`, and each step of `upgrade`): a failed node is not
//! repaired; a fresh server with fresh user-data takes its place, on the same port and
//! fixed address, created by the same planner as `launch` (on OpenStack and on the lab
//! alike).
//!
//! An etcd node is first swapped in etcd's membership through the etcd API (the old
//! member removed, the new one added with its peer URL), and its user-data says
//! `initial-cluster-state: existing`, so it joins the running cluster instead of
//! founding a new one. Removing a member is refused when the others could not keep the
//! majority meanwhile, unless `--force`.
//!
//! A master or worker is drained if it still answers (cordoned, its pods evicted under
//! their disruption budgets) and its Node object deleted; the new one joins with the
//! pre-shared certificates (masters) or the bootstrap token (workers), and `rebuild`
//! waits until its Node is Ready.

use super::session::ReplaceWith;
use super::setup::{etcd_via, public_address, render_options};
use crate::cloud::any::AnyCloud;
use crate::cloud::apply::{self, Launch, Options};
use crate::cloud::state::StateFile;
use crate::cloud::{desired, Cloud, Existing, Kind};
use crate::etcd_admin::{keeps_quorum, peer_url, EtcdAdmin};
use crate::kube_admin::{KubeAdmin, NodeState};
use crate::liveness::etcd_census;
use crate::pki::Pki;
use crate::render;
use crate::spec::{Node, Role, Spec};
use anyhow::{anyhow, bail, Context, Result};
use std::path::Path;
use std::time::{Duration, Instant};

/// Replaces nodes of one cluster, one call per node.
pub struct Replacer<'a> {
    pub spec: &'a Spec,
    pub pki: &'a Pki,
    pub cloud: &'a AnyCloud,
    pub state_dir: &'a Path,
    pub opts: &'a Options,
    /// Force, where etcd is reached, how long a replacement may take.
    pub with: ReplaceWith,
    /// Of each API call.
    pub timeout: Duration,
}

impl Replacer<'_> {
    pub async fn replace(&self, node: &Node) -> Result<()> {
        let (spec, pki) = (self.spec, self.pki);
        let mut render_opts = render_options(self.state_dir)?;
        if node.role == Role::Etcd {
            render_opts.etcd_joining.insert(node.name.clone());
        }
        let kube = match node.role {
            Role::Master | Role::Worker => Some(KubeAdmin::new(
                public_address(spec, self.state_dir)?,
                pki,
                self.timeout,
            )?),
            _ => None,
        };
        // The node joins with a token of its own, minted now and deleted once it joined
        // (kubeadm init's may have expired long ago).
        let join_token = match &kube {
            Some(kube) => self.mint_join_token(kube, node).await?,
            None => None,
        };
        render_opts.join_token = join_token.clone();
        let created = std::cell::Cell::new(false);
        let result = self
            .replace_with(
                node,
                kube.as_ref(),
                join_token.as_deref(),
                render_opts,
                &created,
            )
            .await;
        // A token no server was given is of no use to anyone: it goes (best effort).
        if let (Err(_), Some(kube), Some(token), false) =
            (&result, &kube, &join_token, created.get())
        {
            if kube.delete_join_token(token).await.is_ok() {
                println!(
                    "kubernetes: deleted the join token minted for {}",
                    node.name
                );
            }
        }
        result
    }

    /// `replace` once the join token is there; `created` says whether the new server was
    /// asked for (from then on the token is the new node's).
    async fn replace_with(
        &self,
        node: &Node,
        kube: Option<&KubeAdmin>,
        join_token: Option<&str>,
        render_opts: crate::render::RenderOptions,
        created: &std::cell::Cell<bool>,
    ) -> Result<()> {
        let (spec, pki) = (self.spec, self.pki);
        if let (Some(kube), Role::Master) = (kube, node.role) {
            self.sync_kubeadm_config(kube, node).await?;
        }
        let docs = render::render(spec, pki, &render_opts)?;
        let desired = desired::resources(spec, &docs)?;
        let state = StateFile::new(self.state_dir);
        let etcd = match node.role {
            Role::Etcd => Some(EtcdAdmin::new(
                spec,
                pki,
                etcd_via(spec, self.state_dir, self.with.etcd_via)?,
                self.timeout,
            )?),
            _ => None,
        };
        let drained = match kube {
            Some(kube) => drain_if_ready(kube, &node.name, self.with).await?,
            None => false,
        };
        if let Some(etcd) = &etcd {
            swap_member(etcd, node, self).await?;
            // From now on the node's user-data joins the running cluster, whatever
            // happens next: a second try renders the same document.
            let mut launched = state.load()?.unwrap_or_default();
            launched.etcd_joined.insert(node.name.clone());
            state.save(&launched)?;
        }
        if node.role == Role::Gateway {
            self.hand_over(node, public_address(spec, self.state_dir)?)
                .await?;
        }
        if let Some(kube) = kube {
            self.retire(kube, node, drained).await?;
        }
        self.delete_server(&node.name).await?;
        if let Some(kube) = kube {
            // Only now: a kubelet still running would register its Node again.
            kube.delete_node(&node.name).await?;
            println!("kubernetes: deleted Node {}", node.name);
        }
        created.set(true);
        self.create_server(node, &docs, &desired).await?;
        if let Some(etcd) = &etcd {
            wait_member_healthy(etcd, node, self.with.wait).await?;
        }
        if let Some(kube) = kube {
            wait_node_ready(kube, &node.name, self.with.wait).await?;
            if node.role == Role::Master {
                self.wait_api_server_ready(kube, &node.name).await?;
            }
            if let Some(token) = join_token {
                kube.delete_join_token(token).await?;
                println!("kubernetes: deleted {}'s join token", node.name);
            }
        }
        if node.role == Role::Gateway {
            self.wait_gateway_serves(node).await?;
        }
        println!("rebuilt {}", node.name);
        Ok(())
    }
}

impl Replacer<'_> {
    /// A join token for `node`, valid for the spec's TTL. When the API does not answer,
    /// the first master goes without (it inits, or joins once the others are back, with
    /// the state dir's token); any other node could not join anyway: an error.
    async fn mint_join_token(&self, kube: &KubeAdmin, node: &Node) -> Result<Option<String>> {
        let ttl = Duration::from_secs(60 * u64::from(self.spec.kubernetes.join_token_ttl_minutes));
        match kube.create_join_token(&node.name, ttl).await {
            Ok(token) => {
                let id = token.split('.').next().unwrap_or_default();
                println!(
                    "kubernetes: minted join token {id} for {} (expires in {} min)",
                    node.name,
                    ttl.as_secs() / 60
                );
                Ok(Some(token))
            }
            Err(e) if self.is_first_master(node) => {
                eprintln!(
                    "warning: no join token minted for {} ({e:#}); it renders with the state dir's",
                    node.name
                );
                Ok(None)
            }
            Err(e) => Err(e.context(format!(
                "{} joins through the API, which must answer to mint its join token",
                node.name
            ))),
        }
    }

    /// The master that may init: it goes on where another would need the API.
    pub fn is_first_master(&self, node: &Node) -> bool {
        self.spec
            .first_master()
            .is_some_and(|m| m.name == node.name)
    }

    /// The server of `node`, as the cloud lists it now.
    pub async fn server_of(&self, node: &str) -> Result<Option<Existing>> {
        let (spec, cloud) = (self.spec, self.cloud);
        let server = format!("{}-{node}", spec.name);
        let all = apply::retry(self.opts, "listing resources", || {
            cloud.inventory(&spec.name)
        })
        .await?;
        Ok(all
            .into_iter()
            .find(|e| e.kind == Kind::Server && e.name == server))
    }

    /// Asks the cloud every second until `node`'s server is as `done` says (None: no
    /// server), for at most the server timeout; `what` says what was waited for.
    pub async fn wait_server(
        &self,
        node: &str,
        what: &str,
        done: impl Fn(Option<&Existing>) -> bool,
    ) -> Result<()> {
        let deadline = Instant::now() + self.opts.server_timeout;
        while !done(self.server_of(node).await?.as_ref()) {
            if Instant::now() > deadline {
                bail!(
                    "server {}-{node} is not {what} {}s later",
                    self.spec.name,
                    self.opts.server_timeout.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        Ok(())
    }

    /// Deletes the server of `node` if there is one, and waits until it is gone.
    pub async fn delete_server(&self, node: &str) -> Result<()> {
        let Some(old) = self.server_of(node).await? else {
            return Ok(());
        };
        println!("deleting server {} ({})", old.name, old.id);
        apply::retry(self.opts, "deleting the server", || {
            self.cloud.delete(Kind::Server, &old.id)
        })
        .await?;
        // Nova deletes in the background: until the server is gone, the planner
        // would find it and create nothing.
        self.wait_server(node, "gone after its deletion", |now| {
            now.is_none_or(|e| e.id != old.id)
        })
        .await
    }

    /// Creates the server of `node` (and whatever else of `desired` is missing, except
    /// other servers) with its user-data from `docs`, and waits until it runs.
    pub async fn create_server(
        &self,
        node: &Node,
        docs: &[render::NodeDocument],
        desired: &[crate::cloud::Resource],
    ) -> Result<()> {
        self.create_servers(std::slice::from_ref(node), docs, desired)
            .await
    }

    /// `create_server` for several nodes at once: created in one wave, so that their
    /// boots overlap.
    pub async fn create_servers(
        &self,
        nodes: &[Node],
        docs: &[render::NodeDocument],
        desired: &[crate::cloud::Resource],
    ) -> Result<()> {
        let servers: Vec<String> = nodes
            .iter()
            .map(|n| format!("{}-{}", self.spec.name, n.name))
            .collect();
        // Other missing servers are not this call's business (a rebuild replaces one
        // node, while others may be down); the ones there are settled and recorded
        // as `launch` does.
        let existing = apply::retry(self.opts, "listing resources", || {
            self.cloud.inventory(&self.spec.name)
        })
        .await?;
        let desired: Vec<_> = desired
            .iter()
            .filter(|r| {
                r.kind != Kind::Server
                    || servers.contains(&r.name)
                    || existing
                        .iter()
                        .any(|e| e.kind == Kind::Server && e.name == r.name)
            })
            .cloned()
            .collect();
        println!(
            "creating server(s) {} with fresh user-data",
            servers.join(", ")
        );
        let report = |_| {};
        let outcome = Launch {
            cloud: self.cloud,
            cluster: &self.spec.name,
            desired: &desired,
            opts: self.opts,
            state: &StateFile::new(self.state_dir),
            docs,
            report: &report,
        }
        .run()
        .await?;
        // Only the replacements count here: other nodes may be down, which is why
        // one rebuilds.
        let failed = outcome.failed();
        if let Some((name, failed)) = failed
            .into_iter()
            .find(|(n, _)| nodes.iter().any(|node| node.name == **n))
        {
            bail!(
                "{}-{name} is {}: {}",
                self.spec.name,
                failed.status,
                failed.fault.as_deref().unwrap_or("no fault given")
            );
        }
        Ok(())
    }
}

/// Takes the old member out of etcd and the new one in, asking the other members.
async fn swap_member(etcd: &EtcdAdmin, node: &Node, r: &Replacer<'_>) -> Result<()> {
    let members = etcd.members(Some(&node.name)).await.context(
        "the other etcd members do not answer: if the cluster lost its majority, restore it from a backup instead",
    )?;
    let url = peer_url(node.private_ip);
    let old = members
        .iter()
        .find(|m| m.name == node.name || m.peer_urls.contains(&url));
    // With the old member gone and the new one added, the cluster is back at this size.
    let size = members.len() + usize::from(old.is_none());
    // A member that has just come back may take the gateways' health checks a few
    // seconds to be reachable again: look a few times before refusing.
    let mut healthy = Vec::new();
    for attempt in 0..5 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        healthy = etcd.healthy_members(Some(&node.name)).await;
        if keeps_quorum(size, healthy.len()) {
            break;
        }
    }
    if !keeps_quorum(size, healthy.len()) {
        let message = format!(
            "replacing {} would leave {} of {size} etcd members healthy ({}), short of the {} a majority needs: the cluster would stop taking writes",
            node.name,
            healthy.len(),
            if healthy.is_empty() { "none".to_string() } else { healthy.join(", ") },
            size / 2 + 1
        );
        if !r.with.force {
            bail!("{message}; bring the other members back first, or pass --force");
        }
        // --force is for members known to be down, never for ones it cannot see.
        let others = etcd_census(r.spec, etcd, r.cloud)
            .await?
            .without(&node.name);
        if let Some(why) = others.blind_spots() {
            bail!("{message}, and {why} Nothing was changed.");
        }
        eprintln!("warning: {message} (--force)");
    }
    let old_healthy = etcd.healthy(&node.name).await;
    if old_healthy {
        println!("note: {} is healthy; replacing it as asked", node.name);
    }
    let via = healthy
        .first()
        .ok_or_else(|| anyhow!("no healthy etcd member to ask"))?;
    if let Some(old) = old {
        // A leader removed while it leads drops the proposals the others forward to it
        // until they elect another: the next member add then hung for the client's
        // whole timeout (30 s, seen in the Kubernetes lab). Hand the leadership to
        // `via` first.
        if old_healthy && etcd.status(&node.name).await.is_ok_and(|s| s.is_leader) {
            if let Some(to) = members.iter().find(|m| &m.name == via) {
                match etcd.move_leader(&node.name, to.id).await {
                    Ok(()) => println!("etcd: {} handed its leadership to {via}", node.name),
                    Err(e) => println!(
                        "etcd: {} kept its leadership ({e:#}); removing it as it is",
                        node.name
                    ),
                }
            }
        }
        etcd.remove(old.id, via).await?;
        println!("etcd: removed member {} ({:x})", node.name, old.id);
    }
    let id = etcd.add(&url, via).await?;
    println!("etcd: added member {} ({id:x}) at {url}", node.name);
    Ok(())
}

/// Waits until the new member has started (it has a name), is a voter, and is healthy.
pub async fn wait_member_healthy(etcd: &EtcdAdmin, node: &Node, wait: Duration) -> Result<()> {
    let url = peer_url(node.private_ip);
    let start = Instant::now();
    loop {
        let started = etcd.members(None).await.ok().is_some_and(|ms| {
            ms.iter()
                .any(|m| m.peer_urls.contains(&url) && m.name == node.name && !m.is_learner)
        });
        if started && etcd.healthy(&node.name).await {
            println!(
                "etcd: {} started and healthy after {:.0}s",
                node.name,
                start.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        if start.elapsed() > wait {
            bail!(
                "{} did not become a healthy etcd member within {}s; its server is up: see its cloud-init and etcd logs",
                node.name,
                wait.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Drains the Node if it still runs: its pods move before its server goes. Whether it
/// ran (and so was drained).
async fn drain_if_ready(kube: &KubeAdmin, name: &str, with: ReplaceWith) -> Result<bool> {
    match kube.node_state(name).await? {
        NodeState::Absent => println!("kubernetes: no Node {name}"),
        NodeState::Ready if kube.kubelet_alive(name).await? => {
            let evicted = kube.drain(name, with.wait, with.force).await?;
            println!("kubernetes: drained {name} ({evicted} pod(s) evicted)");
            return Ok(true);
        }
        _ => println!("kubernetes: {name}'s kubelet does not answer; not drained"),
    }
    Ok(false)
}

async fn wait_node_ready(kube: &KubeAdmin, name: &str, limit: Duration) -> Result<()> {
    let start = Instant::now();
    loop {
        if kube.node_state(name).await.ok() == Some(NodeState::Ready) {
            println!(
                "kubernetes: {name} joined and Ready after {:.0}s",
                start.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        if start.elapsed() > limit {
            bail!(
                "{name} did not become a Ready Node within {}s; its server is up: see its cloud-init and paasgen-kubeadm logs",
                limit.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
}
