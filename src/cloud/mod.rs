//! Building the rendered platform on a cloud.
//!
//! `desired` lists every resource the spec needs, `plan` compares that with what the
//! cloud already has, `apply` creates what is missing (bounded concurrency, retries,
//! resumable) and records it in `state`. Providers implement the small `Cloud` trait:
//! `openstack` talks to a real cloud, `memory` is an in-process stand-in for planner tests.

pub mod any;
pub mod apply;
pub mod desired;
pub mod lab;
pub mod memory;
pub mod openstack;
pub mod plan;
pub mod state;

use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

/// The kinds of resource paasgen creates, in the order they can be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    KeyPair,
    ServerGroup,
    Network,
    /// Floating mode: joins the private subnet to the public network, NATs it.
    Router,
    /// Floating mode: the users' entry point, allocated before anything is rendered.
    FloatingIp,
    SecurityGroup,
    Subnet,
    /// The router's port on the private subnet (Neutron names it by router and subnet).
    RouterInterface,
    SecurityGroupRule,
    Port,
    /// The floating IP bound to the private VIP's port (Neutron: the floating IP's
    /// `port_id`): needs the port and a router interface on its subnet.
    FloatingIpAssociation,
    Server,
}

impl Kind {
    pub const ALL: [Kind; 12] = [
        Kind::KeyPair,
        Kind::ServerGroup,
        Kind::Network,
        Kind::Router,
        Kind::FloatingIp,
        Kind::SecurityGroup,
        Kind::Subnet,
        Kind::RouterInterface,
        Kind::SecurityGroupRule,
        Kind::Port,
        Kind::FloatingIpAssociation,
        Kind::Server,
    ];

    /// The order `destroy` deletes in: users before what they use. The floating IP goes
    /// before the router interface (Neutron keeps an interface a floating IP is reached
    /// through), the interface before its subnet and its router.
    pub const DELETE_ORDER: [Kind; 12] = [
        Kind::Server,
        Kind::FloatingIpAssociation,
        Kind::FloatingIp,
        Kind::Port,
        Kind::SecurityGroupRule,
        Kind::SecurityGroup,
        Kind::RouterInterface,
        Kind::Subnet,
        Kind::Router,
        Kind::Network,
        Kind::ServerGroup,
        Kind::KeyPair,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::KeyPair => "key pair",
            Kind::ServerGroup => "server group",
            Kind::Network => "network",
            Kind::Router => "router",
            Kind::FloatingIp => "floating ip",
            Kind::RouterInterface => "router interface",
            Kind::FloatingIpAssociation => "floating ip association",
            Kind::SecurityGroup => "security group",
            Kind::Subnet => "subnet",
            Kind::SecurityGroupRule => "security group rule",
            Kind::Port => "port",
            Kind::Server => "server",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a security group rule lets traffic come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Remote {
    /// Members of one of the cluster's security groups (by resource name).
    Group(String),
    Cidr(String),
}

/// A network a port sits on: the cluster's own (with the subnet its fixed address comes
/// from), or an existing one found by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetworkRef {
    Own { network: String, subnet: String },
    Existing(String),
}

/// What one resource must look like. Names in it refer to other resources of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Spec {
    KeyPair {
        public_key: String,
    },
    ServerGroup {
        policy: String,
    },
    Network,
    Subnet {
        network: String,
        cidr: String,
        dns_servers: Vec<Ipv4Addr>,
        /// Floating mode: the router's address (None: no gateway, the VIP routes).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gateway: Option<Ipv4Addr>,
    },
    /// A router with its external gateway on an existing (provider) network.
    Router {
        external_network: String,
    },
    RouterInterface {
        router: String,
        subnet: String,
    },
    /// A floating IP from an existing external network, not bound to a port yet.
    FloatingIp {
        network: String,
    },
    FloatingIpAssociation {
        floating_ip: String,
        port: String,
        /// The interface that makes the port's subnet reachable from the external network.
        router_interface: String,
    },
    SecurityGroup,
    SecurityGroupRule {
        group: String,
        /// "tcp", "udp", "icmp", "112" (VRRP) or None for any protocol.
        protocol: Option<String>,
        ports: Option<(u16, u16)>,
        remote: Remote,
    },
    Port {
        network: NetworkRef,
        fixed_ip: Ipv4Addr,
        security_groups: Vec<String>,
        /// Addresses this port may also send from (VIPs; 0.0.0.0/0 for a NAT gateway).
        allowed_address_pairs: Vec<String>,
    },
    Server {
        node: String,
        flavor: String,
        image: String,
        ports: Vec<String>,
        key_pair: String,
        server_group: Option<String>,
        user_data: String,
        user_data_sha256: String,
    },
}

/// One resource the platform needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    pub kind: Kind,
    /// Unique in the cluster, and the resource's name in the cloud.
    pub name: String,
    pub spec: Spec,
}

impl Resource {
    /// Names of the plan's resources this one refers to (created before it).
    pub fn depends_on(&self) -> Vec<&str> {
        match &self.spec {
            Spec::Subnet { network, .. } => vec![network.as_str()],
            Spec::RouterInterface { router, subnet } => vec![router.as_str(), subnet.as_str()],
            Spec::FloatingIpAssociation {
                floating_ip,
                port,
                router_interface,
            } => vec![
                floating_ip.as_str(),
                port.as_str(),
                router_interface.as_str(),
            ],
            Spec::SecurityGroupRule { group, remote, .. } => match remote {
                Remote::Group(other) => vec![group.as_str(), other.as_str()],
                Remote::Cidr(_) => vec![group.as_str()],
            },
            Spec::Port {
                network,
                security_groups,
                ..
            } => {
                let mut deps: Vec<&str> = security_groups.iter().map(String::as_str).collect();
                // Neutron refuses a fixed address on a network before its subnet exists.
                if let NetworkRef::Own { network, subnet } = network {
                    deps.extend([network.as_str(), subnet.as_str()]);
                }
                deps
            }
            Spec::Server {
                ports,
                key_pair,
                server_group,
                ..
            } => {
                let mut deps: Vec<&str> = ports.iter().map(String::as_str).collect();
                deps.push(key_pair);
                deps.extend(server_group.as_deref());
                deps
            }
            _ => vec![],
        }
    }
}

/// A resource as the cloud reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Existing {
    pub kind: Kind,
    pub name: String,
    pub id: String,
    /// Servers: ACTIVE, BUILD, ERROR, ...
    pub status: Option<String>,
    /// Servers in ERROR: the fault message.
    pub fault: Option<String>,
    /// Servers: sha256 of the user-data they were launched with (from their metadata).
    pub user_data_sha256: Option<String>,
    /// Floating IPs: the address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Ipv4Addr>,
}

impl Existing {
    /// A resource known by kind, name and id only.
    pub fn new(kind: Kind, name: impl Into<String>, id: impl Into<String>) -> Existing {
        Existing {
            kind,
            name: name.into(),
            id: id.into(),
            status: None,
            fault: None,
            user_data_sha256: None,
            address: None,
        }
    }
}

/// The name of a resource that joins two others which Neutron names no further (a
/// router interface, a floating IP's binding): the first's name and the second's without
/// the cluster prefix, e.g. `demo-router` + `demo-subnet` -> `demo-router-subnet`.
pub fn link_name(cluster: &str, first: &str, second: &str) -> String {
    let prefix = format!("{cluster}-");
    format!("{first}-{}", second.strip_prefix(&prefix).unwrap_or(second))
}

/// What a server is doing, for waiting on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerState {
    Building,
    /// Still BUILD, but on a host: past the scheduler (Nova's task state is networking,
    /// block_device_mapping or spawning), so the next member of its anti-affinity group
    /// is placed knowing where this one is.
    Placed,
    Active,
    Error(String),
}

impl ServerState {
    /// From Nova's status and fault message.
    pub fn from_status(status: Option<&str>, fault: Option<&str>) -> ServerState {
        match status {
            Some("ACTIVE") => ServerState::Active,
            Some("ERROR") => ServerState::Error(fault.unwrap_or("no fault message").to_string()),
            _ => ServerState::Building,
        }
    }
}

/// Ids of created resources, by resource name.
pub type Ids = BTreeMap<String, String>;

/// What paasgen needs from a cloud. Every call is one API operation (or a short fixed
/// sequence), so a crash between calls leaves resources that `inventory` finds again.
#[allow(async_fn_in_trait)]
pub trait Cloud {
    /// Every resource of the cluster: those whose name starts with `<cluster>-`.
    async fn inventory(&self, cluster: &str) -> Result<Vec<Existing>>;
    /// Creates `resource`; `ids` holds the ids of everything it depends on.
    async fn create(&self, cluster: &str, resource: &Resource, ids: &Ids) -> Result<String>;
    async fn server_state(&self, id: &str) -> Result<ServerState>;
    /// Every server of the cluster and its state, by id: one listing however many there
    /// are (waiting on 5,000 servers one GET each would be 5,000 calls per round).
    async fn server_states(&self, cluster: &str) -> Result<BTreeMap<String, ServerState>> {
        Ok(self
            .inventory(cluster)
            .await?
            .into_iter()
            .filter(|e| e.kind == Kind::Server)
            .map(|e| {
                let state = ServerState::from_status(e.status.as_deref(), e.fault.as_deref());
                (e.id, state)
            })
            .collect())
    }
    async fn delete(&self, kind: Kind, id: &str) -> Result<()>;
    /// Shuts a server down cleanly, as a poweroff does (its services stop in order:
    /// a gateway's keepalived hands the VIPs over first), keeping it. Returns once
    /// asked; a server already stopped is no error. Deleting is a hard power-off.
    async fn stop_server(&self, id: &str) -> Result<()>;
    /// The user-data a server was launched with, as the API returns it (decoded).
    async fn server_user_data(&self, id: &str) -> Result<Option<String>>;
}
