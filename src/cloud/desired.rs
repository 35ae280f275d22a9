//! Spec + rendered documents -> every cloud resource the platform needs.

use super::{Kind, NetworkRef, Remote, Resource, Spec as R};
use crate::render::NodeDocument;
use crate::spec::{Role, Spec};
use anyhow::{bail, Result};
use base64::Engine;
use sha2::{Digest, Sha256};

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
}

/// Roles whose members must land on different hypervisors.
const ANTI_AFFINE: [Role; 3] = [Role::Gateway, Role::Etcd, Role::Master];

pub fn resources(spec: &Spec, docs: &[NodeDocument]) -> Result<Vec<Resource>> {
    let Some(os) = &spec.openstack else {
        bail!("the spec has no `openstack` section: add image, public_network and flavors");
    };
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
            },
        },
    ];
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
        NetworkRef::Own(n.network()),
        net.private_vip,
        vec![],
        vec![],
    ));
    out.push(port(
        n.group_vip("public"),
        NetworkRef::Existing(os.public_network.clone()),
        net.public_vip,
        vec![],
        vec![],
    ));
    for doc in docs {
        let sg = vec![n.group(doc.role)];
        let mut ports = vec![n.private_port(&doc.name)];
        // keepalived moves the VIPs between gateways; as NAT routers they also forward
        // for every private address, so their private port may send from any source.
        let private_pairs = match doc.role {
            Role::Gateway => vec![net.private_vip.to_string(), "0.0.0.0/0".into()],
            _ => vec![],
        };
        out.push(port(
            n.private_port(&doc.name),
            NetworkRef::Own(n.network()),
            doc.private_ip,
            sg.clone(),
            private_pairs,
        ));
        if let (Role::Gateway, Some(public_ip)) = (doc.role, doc.public_ip) {
            ports.push(n.public_port(&doc.name));
            out.push(port(
                n.public_port(&doc.name),
                NetworkRef::Existing(os.public_network.clone()),
                public_ip,
                sg,
                vec![net.public_vip.to_string()],
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
                user_data_sha256: crate::pki::hex(&Sha256::digest(doc.user_data.as_bytes())),
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

/// Each role's security group admits only what that role serves.
fn security_rules(spec: &Spec, n: &Names) -> Vec<Resource> {
    let gw = || Remote::Group(n.group(Role::Gateway));
    let from = |role| Remote::Group(n.group(role));
    let anywhere = || Remote::Cidr("0.0.0.0/0".into());
    let tcp = |a: u16, b: u16| (Some("tcp".to_string()), Some((a, b)));
    let any = || (None, None);
    let mut rules: Vec<(Role, String, (Option<String>, Option<(u16, u16)>), Remote)> = vec![
        (
            Role::Gateway,
            "vrrp".into(),
            (Some("112".into()), None),
            gw(),
        ),
        (Role::Gateway, "api".into(), tcp(6443, 6443), anywhere()),
        (Role::Gateway, "http".into(), tcp(80, 80), anywhere()),
        (Role::Gateway, "https".into(), tcp(443, 443), anywhere()),
        (
            Role::Gateway,
            "icmp".into(),
            (Some("icmp".into()), None),
            anywhere(),
        ),
        // Traffic the gateways forward (NAT) for the private network.
        (
            Role::Gateway,
            "nat".into(),
            any(),
            Remote::Cidr(spec.network.private_cidr.to_string()),
        ),
        (
            Role::Etcd,
            "etcd-from-master".into(),
            tcp(2379, 2380),
            from(Role::Master),
        ),
        (
            Role::Etcd,
            "etcd-from-etcd".into(),
            tcp(2379, 2380),
            from(Role::Etcd),
        ),
        (
            Role::Master,
            "api-from-gateway".into(),
            tcp(6443, 6443),
            gw(),
        ),
        // Kubelets, pods and the CNI overlay talk among Kubernetes nodes.
        (
            Role::Master,
            "all-from-master".into(),
            any(),
            from(Role::Master),
        ),
        (
            Role::Master,
            "all-from-worker".into(),
            any(),
            from(Role::Worker),
        ),
        (
            Role::Worker,
            "nodeports-from-gateway".into(),
            tcp(30000, 32767),
            gw(),
        ),
        (
            Role::Worker,
            "all-from-master".into(),
            any(),
            from(Role::Master),
        ),
        (
            Role::Worker,
            "all-from-worker".into(),
            any(),
            from(Role::Worker),
        ),
    ];
    for role in [Role::Etcd, Role::Master, Role::Worker] {
        rules.push((role, "ssh-from-gateway".into(), tcp(22, 22), gw()));
    }
    if let Some(os) = &spec.openstack {
        for (i, cidr) in os.admin_cidrs.iter().enumerate() {
            rules.push((
                Role::Gateway,
                format!("ssh-admin-{i}"),
                tcp(22, 22),
                Remote::Cidr(cidr.to_string()),
            ));
        }
    }
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
