//! An in-process cloud for testing the planner and the launcher without a cloud: it keeps
//! resources in memory, checks that dependencies exist before a create, and injects the
//! faults a real cloud has (failed calls, lost responses, servers going ERROR). It is a
//! test double of the `Cloud` trait, not an imitation of any API.

use super::apply::Transient;
use super::{Cloud, Existing, Ids, Kind, NetworkRef, Resource, ServerState, Spec};
use anyhow::{anyhow, bail, Result};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    /// By creation number, so listings come in creation order; `by_id` finds one.
    resources: BTreeMap<u64, (Existing, Option<String>)>,
    by_id: HashMap<String, u64>,
    create_calls: usize,
    /// How long each create takes, and how many were under way at once at most.
    latency: std::time::Duration,
    in_flight: usize,
    max_in_flight: usize,
    /// Server groups with a member's create under way, and how often a second member's
    /// create began meanwhile (Nova's anti-affinity check races such creates).
    groups_in_flight: std::collections::HashSet<String>,
    group_overlaps: usize,
    /// How long every call takes (a far cloud's round trip), and how long a server stays
    /// BUILD after its create, for benchmarks of the launcher's scheduling.
    call_latency: std::time::Duration,
    build_time: std::time::Duration,
    /// When each server was created, by id.
    created_at: HashMap<String, std::time::Instant>,
    /// The create call with this number (1-based) fails without creating anything.
    fail_create: Option<usize>,
    /// The create call with this number creates, then reports failure (a lost response).
    lose_response: Option<usize>,
    /// This many calls fail with a transient error before any succeeds.
    transient: usize,
    /// Servers (by resource name) that go ERROR with this fault.
    server_faults: BTreeMap<String, String>,
    /// Ids of the networks that have a subnet: like Neutron, a fixed address on any
    /// other is refused.
    networks_with_subnet: std::collections::HashSet<String>,
    /// Ids of the subnets that have a gateway address: like Neutron, a router interface
    /// on any other is refused.
    subnets_with_gateway: std::collections::HashSet<String>,
    /// By id: the ids of what a resource refers to, for Neutron's refusals to delete
    /// something in use (a subnet with a router interface, a router with interfaces,
    /// an interface a floating IP is reached through).
    refs: HashMap<String, Vec<String>>,
}

impl Inner {
    fn server_state(&self, id: &str) -> Result<ServerState> {
        let (e, _) = self.get(id).ok_or_else(|| anyhow!("no server {id}"))?;
        let building = self
            .created_at
            .get(id)
            .is_some_and(|t| t.elapsed() < self.build_time);
        Ok(match (e.status.as_deref(), &e.fault) {
            _ if building => ServerState::Building,
            (Some("ERROR"), fault) => ServerState::Error(fault.clone().unwrap_or_default()),
            (Some("ACTIVE"), _) => ServerState::Active,
            _ => ServerState::Building,
        })
    }

    fn get(&self, id: &str) -> Option<&(Existing, Option<String>)> {
        self.by_id.get(id).and_then(|seq| self.resources.get(seq))
    }

    /// The resources of `kind` that refer to `id`.
    fn users(&self, id: &str, kind: Kind) -> Vec<String> {
        self.refs
            .iter()
            .filter(|(user, uses)| {
                uses.iter().any(|u| u == id) && self.get(user).is_some_and(|(e, _)| e.kind == kind)
            })
            .map(|(user, _)| user.clone())
            .collect()
    }

    /// Neutron's rules for creating what the memory cloud models (`ids`: the
    /// dependencies' ids).
    fn check_create(&mut self, r: &Resource, ids: &Ids) -> Result<()> {
        let id_of = |name: &str| ids.get(name).cloned().unwrap_or_default();
        match &r.spec {
            Spec::Subnet { network, .. } => {
                self.networks_with_subnet.insert(id_of(network));
            }
            Spec::Port {
                network: NetworkRef::Own { network, .. },
                ..
            } if !self.networks_with_subnet.contains(&id_of(network)) => {
                bail!("{}: IP allocation requires subnets for network", r.name);
            }
            Spec::RouterInterface { router, subnet } => {
                let subnet_id = id_of(subnet);
                if !self.subnets_with_gateway.contains(&subnet_id) {
                    bail!(
                        "{}: Bad router request: Subnet {subnet_id} does not have a gateway IP",
                        r.name
                    );
                }
                let router_id = id_of(router);
                let taken = self
                    .users(&router_id, Kind::RouterInterface)
                    .into_iter()
                    .any(|i| {
                        self.refs
                            .get(&i)
                            .is_some_and(|uses| uses.contains(&subnet_id))
                    });
                if taken {
                    bail!(
                        "{}: Router already has a port on subnet {subnet_id}",
                        r.name
                    );
                }
            }
            Spec::FloatingIpAssociation { floating_ip, .. } => {
                let fip = id_of(floating_ip);
                if !self.users(&fip, Kind::FloatingIpAssociation).is_empty() {
                    bail!("{}: floating IP {fip} is already associated", r.name);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Whether Neutron would refuse to delete `id` now, and why.
    fn refuses_delete(&self, id: &str) -> Option<String> {
        let (e, _) = self.get(id)?;
        let in_use = |kind: Kind| !self.users(id, kind).is_empty();
        match e.kind {
            Kind::Subnet if in_use(Kind::RouterInterface) => Some(format!(
                "Unable to complete operation on subnet {id}: One or more ports have an IP allocation from this subnet"
            )),
            Kind::Router if in_use(Kind::RouterInterface) => {
                Some(format!("Router {id} still has ports"))
            }
            Kind::RouterInterface if in_use(Kind::FloatingIpAssociation) => Some(format!(
                "Router interface {id} cannot be deleted, as it is required by one or more floating IPs"
            )),
            _ => None,
        }
    }
}

#[derive(Debug, Default)]
pub struct MemoryCloud {
    inner: Mutex<Inner>,
}

impl MemoryCloud {
    pub fn new() -> MemoryCloud {
        MemoryCloud::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.inner.lock().expect("memory cloud lock"))
    }

    pub fn fail_create_call(&self, n: usize) {
        self.with(|i| i.fail_create = Some(n));
    }

    pub fn lose_create_response(&self, n: usize) {
        self.with(|i| i.lose_response = Some(n));
    }

    pub fn transient_failures(&self, n: usize) {
        self.with(|i| i.transient = n);
    }

    pub fn server_fault(&self, server: &str, fault: &str) {
        self.with(|i| {
            i.server_faults
                .insert(server.to_string(), fault.to_string())
        });
    }

    pub fn clear_faults(&self) {
        self.with(|i| {
            i.fail_create = None;
            i.lose_response = None;
            i.transient = 0;
            i.server_faults.clear();
        });
    }

    pub fn create_calls(&self) -> usize {
        self.with(|i| i.create_calls)
    }

    /// Makes every create take `latency`, so that overlapping calls can be counted.
    pub fn create_latency(&self, latency: std::time::Duration) {
        self.with(|i| i.latency = latency);
    }

    /// Makes every call take `latency` and every server stay BUILD for `build` after its
    /// create: a cloud far away with room for any number of calls.
    pub fn far_away(&self, latency: std::time::Duration, build: std::time::Duration) {
        self.with(|i| {
            i.call_latency = latency;
            i.build_time = build;
        });
    }

    async fn round_trip(&self) {
        let latency = self.with(|i| i.call_latency);
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
    }

    /// The most creates that were under way at the same time.
    pub fn max_in_flight(&self) -> usize {
        self.with(|i| i.max_in_flight)
    }

    /// How often a server-group member's create began while another member's was under way.
    pub fn group_overlaps(&self) -> usize {
        self.with(|i| i.group_overlaps)
    }

    /// Everything that exists, for assertions.
    pub fn resources(&self) -> Vec<Existing> {
        self.with(|i| i.resources.values().map(|(e, _)| e.clone()).collect())
    }

    fn transient(&self) -> Result<()> {
        self.with(|i| {
            if i.transient > 0 {
                i.transient -= 1;
                return Err(Transient("503 Service Unavailable (injected)".into()).into());
            }
            Ok(())
        })
    }
}

impl Cloud for MemoryCloud {
    async fn inventory(&self, cluster: &str) -> Result<Vec<Existing>> {
        self.round_trip().await;
        self.transient()?;
        let prefix = format!("{cluster}-");
        Ok(self.with(|i| {
            i.resources
                .values()
                .filter(|(e, _)| e.name.starts_with(&prefix))
                .map(|(e, _)| e.clone())
                .collect()
        }))
    }

    async fn create(&self, _cluster: &str, r: &Resource, ids: &Ids) -> Result<String> {
        self.round_trip().await;
        self.transient()?;
        let group = match &r.spec {
            Spec::Server { server_group, .. } => server_group.clone(),
            _ => None,
        };
        let latency = self.with(|i| {
            i.in_flight += 1;
            i.max_in_flight = i.max_in_flight.max(i.in_flight);
            if let Some(g) = &group {
                if !i.groups_in_flight.insert(g.clone()) {
                    i.group_overlaps += 1;
                }
            }
            i.latency
        });
        tokio::time::sleep(latency).await;
        self.with(|i| {
            i.in_flight -= 1;
            if let Some(g) = &group {
                i.groups_in_flight.remove(g);
            }
        });
        self.with(|i| {
            i.create_calls += 1;
            let call = i.create_calls;
            if i.fail_create == Some(call) {
                bail!("injected failure of create call {call}");
            }
            for dep in r.depends_on() {
                let id = ids
                    .get(dep)
                    .ok_or_else(|| anyhow!("{} created before {dep}", r.name))?;
                if !i.by_id.contains_key(id) {
                    bail!("{} refers to {dep} ({id}), which does not exist", r.name);
                }
            }
            i.check_create(r, ids)?;
            i.next_id += 1;
            let id = format!("{}-{:04}", r.kind.as_str().replace(' ', "-"), i.next_id);
            if let Spec::Subnet {
                gateway: Some(_), ..
            } = &r.spec
            {
                i.subnets_with_gateway.insert(id.clone());
            }
            let uses: Vec<String> = r
                .depends_on()
                .iter()
                .filter_map(|d| ids.get(*d).cloned())
                .collect();
            i.refs.insert(id.clone(), uses);
            // Floating IPs come from the lab's pool (203.0.113.100-250) in creation order.
            let address = matches!(r.spec, Spec::FloatingIp { .. }).then(|| {
                let n = i.next_id.min(150) as u8;
                std::net::Ipv4Addr::new(203, 0, 113, 100 + n)
            });
            let (status, fault, sha, user_data) = match &r.spec {
                Spec::Server {
                    user_data_sha256,
                    user_data,
                    ..
                    // A fault hits one create: a replacement comes up.
                } => match i.server_faults.remove(&r.name) {
                    Some(f) => (
                        Some("ERROR".to_string()),
                        Some(f),
                        Some(user_data_sha256.clone()),
                        Some(user_data.clone()),
                    ),
                    None => (
                        Some("ACTIVE".to_string()),
                        None,
                        Some(user_data_sha256.clone()),
                        Some(user_data.clone()),
                    ),
                },
                _ => (None, None, None, None),
            };
            if r.kind == Kind::Server {
                i.created_at.insert(id.clone(), std::time::Instant::now());
            }
            i.by_id.insert(id.clone(), i.next_id);
            let seq = i.next_id;
            i.resources.insert(
                seq,
                (
                    Existing {
                        kind: r.kind,
                        name: r.name.clone(),
                        id: id.clone(),
                        status,
                        fault,
                        user_data_sha256: sha,
                        address,
                    },
                    user_data,
                ),
            );
            if i.lose_response == Some(call) {
                bail!("injected loss of the response to create call {call}");
            }
            Ok(id)
        })
    }

    async fn server_states(&self, cluster: &str) -> Result<BTreeMap<String, ServerState>> {
        self.round_trip().await;
        self.transient()?;
        let prefix = format!("{cluster}-");
        self.with(|i| {
            i.resources
                .values()
                .filter(|(e, _)| e.kind == Kind::Server && e.name.starts_with(&prefix))
                .map(|(e, _)| Ok((e.id.clone(), i.server_state(&e.id)?)))
                .collect()
        })
    }

    async fn server_state(&self, id: &str) -> Result<ServerState> {
        self.round_trip().await;
        self.transient()?;
        self.with(|i| i.server_state(id))
    }

    async fn delete(&self, _kind: Kind, id: &str) -> Result<()> {
        self.transient()?;
        self.with(|i| {
            if let Some(why) = i.refuses_delete(id) {
                bail!("HTTP 409 Conflict: {why}");
            }
            // Like Neutron, deleting a port or a floating IP ends the binding of the two.
            let bindings = i.users(id, Kind::FloatingIpAssociation);
            for gone in bindings.iter().map(String::as_str).chain([id]) {
                if let Some(seq) = i.by_id.remove(gone) {
                    i.resources.remove(&seq);
                }
                i.refs.remove(gone);
            }
            Ok(())
        })
    }

    async fn stop_server(&self, id: &str) -> Result<()> {
        self.transient()?;
        self.with(|i| {
            let seq = *i
                .by_id
                .get(id)
                .ok_or_else(|| anyhow!("HTTP 404: no server {id}"))?;
            let (e, _) = i.resources.get_mut(&seq).expect("indexed");
            e.status = Some("SHUTOFF".into());
            Ok(())
        })
    }

    async fn server_user_data(&self, id: &str) -> Result<Option<String>> {
        use base64::Engine;
        let b64 = self.with(|i| i.get(id).and_then(|(_, u)| u.clone()));
        match b64 {
            None => Ok(None),
            Some(b) => Ok(Some(String::from_utf8(
                base64::engine::general_purpose::STANDARD.decode(b)?,
            )?)),
        }
    }
}
