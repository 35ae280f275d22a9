//! Spec + rendered documents -> every cloud resource the platform needs.

use super::{Kind, NetworkRef, Remote, Resource, Spec as R};
use crate::render::NodeDocument;
use crate::spec::{Role, Spec};
use anyhow::{bail, Result};
use base64::Engine;

/// Names of the cluster's resources: `<cluster>-<what>`.
pub struct Names<'a>(pub &'a str);

impl Names<'_> {
    pub fn key_pair(&self) -> String {
        format!("{}-key", self.0)
    }
    pub fn network(&self) -> String {
        format!("{}-net", self.0)
    }
    pub fn subnet(&self) -> String {
        format!("{}-subnet", self.0)
    }
    pub fn group(&self, role: Role) -> String {
        format!("{}-{role}", self.0)
    }
    /// Anti-affinity server group of a role.
    pub fn spread(&self, role: Role) -> String {
        format!("{}-{role}-spread", self.0)
    }
    pub fn private_port(&self, node: &str) -> String {
        format!("{}-{node}-private", self.0)
    }
    pub fn public_port(&self, node: &str) -> String {
        format!("{}-{node}-public", self.0)
    }
    pub fn server(&self, node: &str) -> String {
        format!("{}-{node}", self.0)
    }
    pub fn router(&self) -> String {
        format!("{}-router", self.0)
    }
    pub fn router_interface(&self) -> String {
        super::link_name(self.0, &self.router(), &self.subnet())
    }
    pub fn floating_ip(&self) -> String {
        format!("{}-fip", self.0)
    }
    /// The floating IP bound to the private VIP's port.
    pub fn floating_ip_association(&self) -> String {
        super::link_name(self.0, &self.floating_ip(), &self.group_vip("private"))
    }
}

/// Roles whose members must land on different hypervisors.
const ANTI_AFFINE: [Role; 3] = [Role::Gateway, Role::Etcd, Role::Master];

fn openstack(spec: &Spec) -> Result<&crate::spec::OpenStack> {
    match &spec.openstack {
        Some(os) => Ok(os),
        None => bail!("the spec has no `openstack` section: add image, public_network and flavors"),
    }
}

/// Floating mode: the floating IP, allocated before anything is rendered (its address is
/// in the API server's certificate and the admin kubeconfig).
pub fn floating_ip(spec: &Spec) -> Result<Option<Resource>> {
    let os = openstack(spec)?;
    Ok(spec.network.is_floating().then(|| Resource {
        kind: Kind::FloatingIp,
        name: Names(&spec.name).floating_ip(),
        spec: R::FloatingIp {
            network: os.public_network.clone(),
        },
    }))
}

/// Floating mode: the router, its interface on the private subnet, the floating IP and
/// its binding to the private VIP's port.
fn floating_resources(spec: &Spec, n: &Names) -> Result<Vec<Resource>> {
    let os = openstack(spec)?;
    let Some(fip) = floating_ip(spec)? else {
        return Ok(vec![]);
    };
    Ok(vec![
        Resource {
            kind: Kind::Router,
            name: n.router(),
            spec: R::Router {
                external_network: os.public_network.clone(),
            },
        },
        Resource {
            kind: Kind::RouterInterface,
            name: n.router_interface(),
            spec: R::RouterInterface {
                router: n.router(),
                subnet: n.subnet(),
            },
        },
        fip,
        Resource {
            kind: Kind::FloatingIpAssociation,
            name: n.floating_ip_association(),
            spec: R::FloatingIpAssociation {
                floating_ip: n.floating_ip(),
                port: n.group_vip("private"),
                router_interface: n.router_interface(),
            },
        },
    ])
}

pub fn resources(spec: &Spec, docs: &[NodeDocument]) -> Result<Vec<Resource>> {
    let os = openstack(spec)?;
    let n = Names(&spec.name);
    let net = &spec.network;
    let mut out = vec![
        Resource {
            kind: Kind::KeyPair,
            name: n.key_pair(),
            spec: R::KeyPair {
                public_key: spec.ssh_authorized_keys[0].clone(),
            },
        },
        Resource {
            kind: Kind::Network,
            name: n.network(),
            spec: R::Network,
        },
        Resource {
            kind: Kind::Subnet,
            name: n.subnet(),
            spec: R::Subnet {
                network: n.network(),
                cidr: net.private_cidr.to_string(),
                dns_servers: net.dns_servers.clone(),
                gateway: net.router_ip(),
            },
        },
    ];
    out.extend(floating_resources(spec, &n)?);
    for role in ANTI_AFFINE {
        out.push(Resource {
            kind: Kind::ServerGroup,
            name: n.spread(role),
            spec: R::ServerGroup {
                policy: "anti-affinity".into(),
            },
        });
    }
    for role in Role::ALL {
        out.push(Resource {
            kind: Kind::SecurityGroup,
            name: n.group(role),
            spec: R::SecurityGroup,
        });
    }
    out.extend(security_rules(spec, &n));

    // The VIPs are reserved as ports of their own so that Neutron never hands them out.
    out.push(port(
        n.group_vip("private"),
        NetworkRef::Own {
            network: n.network(),
            subnet: n.subnet(),
        },
        net.private_vip,
        vec![],
        vec![],
    ));
    if let Some(public_vip) = net.public_vip().filter(|_| !net.is_floating()) {
        out.push(port(
            n.group_vip("public"),
            NetworkRef::Existing(os.public_network.clone()),
            public_vip,
            vec![],
            vec![],
        ));
    }
    for doc in docs {
        let sg = vec![n.group(doc.role)];
        let mut ports = vec![n.private_port(&doc.name)];
        // keepalived moves the VIPs between gateways; as NAT routers (fixed mode) they
        // also forward for every private address, so their private port may send from
        // any source. In floating mode the router does that.
        let private_pairs = match (doc.role, net.is_floating()) {
            (Role::Gateway, false) => vec![net.private_vip.to_string(), "0.0.0.0/0".into()],
            (Role::Gateway, true) => vec![net.private_vip.to_string()],
            _ => vec![],
        };
        out.push(port(
            n.private_port(&doc.name),
            NetworkRef::Own {
                network: n.network(),
                subnet: n.subnet(),
            },
            doc.private_ip,
            sg.clone(),
            private_pairs,
        ));
        if let (Role::Gateway, Some(public_ip), Some(public_vip)) =
            (doc.role, doc.public_ip, net.public_vip())
        {
            ports.push(n.public_port(&doc.name));
            out.push(port(
                n.public_port(&doc.name),
                NetworkRef::Existing(os.public_network.clone()),
                public_ip,
                sg,
                vec![public_vip.to_string()],
            ));
        }
        out.push(Resource {
            kind: Kind::Server,
            name: n.server(&doc.name),
            spec: R::Server {
                node: doc.name.clone(),
                flavor: os.flavors.for_role(doc.role).to_string(),
                image: os.image.clone(),
                ports,
                key_pair: n.key_pair(),
                server_group: ANTI_AFFINE.contains(&doc.role).then(|| n.spread(doc.role)),
                user_data: base64::engine::general_purpose::STANDARD.encode(&doc.user_data),
                user_data_sha256: crate::render::config_sha256(&doc.user_data),
            },
        });
    }
    Ok(out)
}

impl Names<'_> {
    pub fn group_vip(&self, which: &str) -> String {
        format!("{}-vip-{which}", self.0)
    }
}

fn port(
    name: String,
    network: NetworkRef,
    ip: std::net::Ipv4Addr,
    sgs: Vec<String>,
    pairs: Vec<String>,
) -> Resource {
    Resource {
        kind: Kind::Port,
        name,
        spec: R::Port {
            network,
            fixed_ip: ip,
            security_groups: sgs,
            allowed_address_pairs: pairs,
        },
    }
}

/// Which traffic a rule admits: protocol (None = any) and port range.
type Traffic = (Option<String>, Option<(u16, u16)>);

fn tcp(first: u16, last: u16) -> Traffic {
    (Some("tcp".into()), Some((first, last)))
}

fn protocol(p: &str) -> Traffic {
    (Some(p.into()), None)
}

const ANY: Traffic = (None, None);

/// Each role's security group admits only what that role serves.
fn security_rules(spec: &Spec, n: &Names) -> Vec<Resource> {
    use Role::{Etcd, Gateway, Master, Worker};
    let group = |role| Remote::Group(n.group(role));
    let cidr = |c: &str| Remote::Cidr(c.to_string());
    let private = spec.network.private_cidr.to_string();
    let mut rules: Vec<(Role, &str, Traffic, Remote)> = vec![
        (Gateway, "vrrp", protocol("112"), group(Gateway)),
        (Gateway, "api", tcp(6443, 6443), cidr("0.0.0.0/0")),
        (Gateway, "http", tcp(80, 80), cidr("0.0.0.0/0")),
        (Gateway, "https", tcp(443, 443), cidr("0.0.0.0/0")),
        (Gateway, "icmp", protocol("icmp"), cidr("0.0.0.0/0")),
        (Etcd, "etcd-from-master", tcp(2379, 2380), group(Master)),
        (Etcd, "etcd-from-etcd", tcp(2379, 2380), group(Etcd)),
        // The gateways pass paasgen's etcd admin connections through (haproxy, SNI).
        (Etcd, "etcd-from-gateway", tcp(2379, 2379), group(Gateway)),
        (Master, "api-from-gateway", tcp(6443, 6443), group(Gateway)),
        // Kubelets, pods and the CNI overlay talk among Kubernetes nodes.
        (Master, "all-from-master", ANY, group(Master)),
        (Master, "all-from-worker", ANY, group(Worker)),
        (
            Worker,
            "nodeports-from-gateway",
            tcp(30000, 32767),
            group(Gateway),
        ),
        (Worker, "all-from-master", ANY, group(Master)),
        (Worker, "all-from-worker", ANY, group(Worker)),
        (Etcd, "ssh-from-gateway", tcp(22, 22), group(Gateway)),
        (Master, "ssh-from-gateway", tcp(22, 22), group(Gateway)),
        (Worker, "ssh-from-gateway", tcp(22, 22), group(Gateway)),
    ];
    if !spec.network.is_floating() {
        // Traffic the gateways forward (NAT) for the private network; in floating mode
        // the router forwards it.
        rules.insert(5, (Gateway, "nat", ANY, cidr(&private)));
    }
    // What admin_cidrs may reach on the gateways: SSH, paasgen's etcd access (haproxy,
    // SNI) and haproxy's status port (`paasgen status`).
    let admin_services = [
        ("ssh", 22),
        ("etcd", 2379),
        ("status", crate::render::GATEWAY_STATUS_PORT),
    ];
    let admin: Vec<(String, u16, Remote)> = admin_services
        .iter()
        .flat_map(|&(service, port)| {
            spec.openstack
                .iter()
                .flat_map(|os| os.admin_cidrs.iter().enumerate())
                .map(move |(i, c)| (format!("{service}-admin-{i}"), port, cidr(&c.to_string())))
        })
        .collect();
    rules.extend(
        admin.iter().map(|(label, port, remote)| {
            (Gateway, label.as_str(), tcp(*port, *port), remote.clone())
        }),
    );
    rules
        .into_iter()
        .map(|(role, label, (protocol, ports), remote)| Resource {
            kind: Kind::SecurityGroupRule,
            name: format!("{}-{label}", n.group(role)),
            spec: R::SecurityGroupRule {
                group: n.group(role),
                protocol,
                ports,
                remote,
            },
        })
        .collect()
}
