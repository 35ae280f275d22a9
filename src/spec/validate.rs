//! Rules that span several fields of a parsed spec.

use super::{oncalendar, versions};
use super::{shown, EtcdSource, Network, Problem, PublicMode, Role, Severity, Spec};
use base64::Engine;
use ipnet::Ipv4Net;
use serde_saphyr::Spanned;
use std::collections::HashMap;
use std::net::Ipv4Addr;

/// Every problem in the spec; an empty list or warnings only means the spec is usable.
pub fn validate(spec: &Spec) -> Vec<Problem> {
    let mut c = Checker::default();
    check_names(spec, &mut c);
    check_ssh_keys(spec, &mut c);
    check_network(spec, &mut c);
    check_nodes(spec, &mut c);
    check_roles(spec, &mut c);
    check_ingress(spec, &mut c);
    check_kubernetes(spec, &mut c);
    check_etcd(spec, &mut c);
    check_mirrors(spec, &mut c);
    check_swift_backups(spec, &mut c);
    check_local_path(spec, &mut c);
    check_mariadb(spec, &mut c);
    check_manifest_addons(spec, &mut c);
    c.problems
}

#[derive(Default)]
struct Checker {
    problems: Vec<Problem>,
}

impl Checker {
    fn error(&mut self, path: impl Into<String>, line: Option<u64>, message: impl Into<String>) {
        self.push(Severity::Error, path.into(), line, message.into());
    }

    fn warning(&mut self, path: impl Into<String>, line: Option<u64>, message: impl Into<String>) {
        self.push(Severity::Warning, path.into(), line, message.into());
    }

    fn push(&mut self, severity: Severity, path: String, line: Option<u64>, message: String) {
        self.problems.push(Problem {
            severity,
            path,
            line,
            column: None,
            message,
        });
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn check_names(spec: &Spec, c: &mut Checker) {
    if !is_dns_label(&spec.name) || spec.name.len() > 40 {
        c.error(
            "name",
            None,
            format!(
                "`{}` is not a valid cluster name: use 1-40 lowercase letters, digits and '-'",
                shown(&spec.name, 64)
            ),
        );
    }
    if spec.domain.len() > 253 || !spec.domain.split('.').all(is_dns_label) {
        c.error(
            "domain",
            None,
            format!("`{}` is not a valid DNS domain", shown(&spec.domain, 64)),
        );
    }
}

const SSH_KEY_TYPES: [&str; 6] = [
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
];

/// A public key line is "type base64 [comment]" and the blob names the same type.
fn ssh_key_problem(key: &str) -> Option<String> {
    // One line of authorized_keys: a newline would smuggle in another key.
    // U+2028/U+2029 are no control characters, but YAML (and some editors) break
    // lines there.
    if key
        .chars()
        .any(|c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}'))
    {
        return Some(
            "control or line-separator characters (a newline, U+2028?) are not allowed".into(),
        );
    }
    let mut parts = key.split_whitespace();
    let (Some(kind), Some(blob)) = (parts.next(), parts.next()) else {
        return Some("expected `<type> <base64> [comment]`".into());
    };
    if !SSH_KEY_TYPES.contains(&kind) {
        return Some(format!("unknown key type `{}`", shown(kind, 40)));
    }
    let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(blob) else {
        return Some("the key is not valid base64".into());
    };
    let embedded = bytes
        .get(..4)
        .map(|l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize)
        .and_then(|len| bytes.get(4..4 + len));
    if embedded != Some(kind.as_bytes()) {
        return Some(format!("the key data does not hold a `{kind}` key"));
    }
    None
}

fn check_ssh_keys(spec: &Spec, c: &mut Checker) {
    if spec.ssh_authorized_keys.is_empty() {
        c.error(
            "ssh_authorized_keys",
            None,
            "give at least one SSH public key: nodes have no password login",
        );
    }
    for (i, key) in spec.ssh_authorized_keys.iter().enumerate() {
        if let Some(why) = ssh_key_problem(key) {
            c.error(
                format!("ssh_authorized_keys[{i}]"),
                None,
                format!("malformed SSH public key: {why}"),
            );
        }
    }
}

fn is_interface_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// A usable host address of `net`: inside it, not its network or broadcast address.
fn host_in(net: &Ipv4Net, ip: Ipv4Addr) -> bool {
    net.contains(&ip) && (net.prefix_len() >= 31 || (ip != net.network() && ip != net.broadcast()))
}

fn check_network(spec: &Spec, c: &mut Checker) {
    let n = &spec.network;
    if n.private_cidr.prefix_len() > 29 {
        c.error(
            "network.private_cidr",
            None,
            format!("{} is too small for a cluster", n.private_cidr),
        );
    }
    if !host_in(&n.private_cidr, n.private_vip) {
        c.error(
            "network.private_vip",
            None,
            format!(
                "{} is not a host address of network.private_cidr {}",
                n.private_vip, n.private_cidr
            ),
        );
    }
    if !is_interface_name(&n.private_interface) {
        c.error(
            "network.private_interface",
            None,
            format!(
                "`{}` is not a valid interface name",
                shown(&n.private_interface, 40)
            ),
        );
    }
    match n.mode() {
        PublicMode::Fixed => check_fixed_public(n, c),
        PublicMode::Floating => check_floating_public(n, c),
    }
    if n.vrrp_router_id == 0 {
        c.error("network.vrrp_router_id", None, "must be 1-255");
    }
}

fn line_of<T>(s: &Spanned<T>) -> Option<u64> {
    Some(s.referenced.line())
}

/// Fixed mode: the gateways sit on the public network with fixed addresses.
fn check_fixed_public(n: &Network, c: &mut Checker) {
    if let Some(gw) = &n.private_gateway {
        c.error(
            "network.private_gateway",
            line_of(gw),
            "only with `network.public: floating` (fixed: the private VIP is the nodes' default route)",
        );
    }
    let required = [
        ("network.public_cidr", n.public_cidr.is_some()),
        ("network.public_gateway", n.public_gateway.is_some()),
        ("network.public_vip", n.public_vip.is_some()),
    ];
    for (path, given) in required {
        if !given {
            c.error(
                path,
                None,
                "required with `network.public: fixed` (the default); or set `network.public: floating`",
            );
        }
    }
    let (Some(cidr), Some(gateway), Some(vip)) =
        (n.public_cidr(), n.public_gateway(), n.public_vip())
    else {
        return;
    };
    for (path, ip) in [
        ("network.public_vip", vip),
        ("network.public_gateway", gateway),
    ] {
        if !host_in(&cidr, ip) {
            c.error(
                path,
                None,
                format!("{ip} is not a host address of network.public_cidr {cidr}"),
            );
        }
    }
    if vip == gateway {
        c.error("network.public_vip", None, "equals network.public_gateway");
    }
    if overlaps(&n.private_cidr, &cidr) {
        c.error("network.public_cidr", None, "overlaps network.private_cidr");
    }
    if !is_interface_name(n.public_interface()) {
        c.error(
            "network.public_interface",
            None,
            format!(
                "`{}` is not a valid interface name",
                shown(n.public_interface(), 40)
            ),
        );
    }
    if n.private_interface == n.public_interface() {
        c.error(
            "network.public_interface",
            None,
            "must differ from network.private_interface",
        );
    }
}

/// Floating mode: nothing of the cluster has an address on the public network but the
/// router's gateway and the floating IP, both given by Neutron.
fn check_floating_public(n: &Network, c: &mut Checker) {
    let unused = [
        ("network.public_cidr", n.public_cidr.as_ref().map(line_of)),
        (
            "network.public_gateway",
            n.public_gateway.as_ref().map(line_of),
        ),
        (
            "network.public_interface",
            n.public_interface.as_ref().map(line_of),
        ),
        ("network.public_vip", n.public_vip.as_ref().map(line_of)),
    ];
    for (path, given) in unused {
        if let Some(line) = given {
            c.error(
                path,
                line,
                "not used with `network.public: floating`: the gateways have no public port, and the floating IP paasgen allocates on the private VIP is the entry point; remove it",
            );
        }
    }
    let Some(router) = n.router_ip() else { return };
    let line = n.private_gateway.as_ref().and_then(line_of);
    if !host_in(&n.private_cidr, router) {
        c.error(
            "network.private_gateway",
            line,
            format!(
                "{router} is not a host address of network.private_cidr {}",
                n.private_cidr
            ),
        );
    } else if router == n.private_vip {
        c.error(
            "network.private_gateway",
            line,
            "equals network.private_vip: the router needs an address of its own",
        );
    }
}

fn check_nodes(spec: &Spec, c: &mut Checker) {
    let n = &spec.network;
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut ips: HashMap<Ipv4Addr, String> = HashMap::new();
    let reserved: Vec<Ipv4Addr> = [
        Some(n.private_vip),
        n.public_vip(),
        n.public_gateway(),
        n.router_ip(),
    ]
    .into_iter()
    .flatten()
    .collect();
    for (i, spanned) in spec.nodes.iter().enumerate() {
        let node = &spanned.value;
        let line = Some(spanned.referenced.line());
        let at = |field: &str| format!("nodes[{i}].{field}");
        if !is_dns_label(&node.name) {
            c.error(
                at("name"),
                line,
                format!("`{}` is not a valid host name", shown(&node.name, 64)),
            );
        }
        if let Some(first) = names.insert(&node.name, i) {
            c.error(
                at("name"),
                line,
                format!(
                    "duplicate node name `{}` (also nodes[{first}])",
                    shown(&node.name, 64)
                ),
            );
        }
        if !host_in(&n.private_cidr, node.private_ip) {
            c.error(
                at("private_ip"),
                line,
                format!(
                    "{} is outside network.private_cidr {}",
                    node.private_ip, n.private_cidr
                ),
            );
        }
        let mut claim = |ip: Ipv4Addr, field: &str, c: &mut Checker| {
            if reserved.contains(&ip) {
                c.error(
                    at(field),
                    line,
                    format!("{ip} collides with a VIP, the public gateway or the router"),
                );
            } else if let Some(owner) = ips.insert(ip, node.name.clone()) {
                c.error(
                    at(field),
                    line,
                    format!("duplicate IP {ip} (also used by `{}`)", shown(&owner, 64)),
                );
            }
        };
        claim(node.private_ip, "private_ip", c);
        match (node.role, node.public_ip) {
            (Role::Gateway, Some(_)) if n.is_floating() => c.error(
                at("public_ip"),
                line,
                "gateways have no public_ip with `network.public: floating`: the router and the floating IP face the public network",
            ),
            (Role::Gateway, None) if n.is_floating() => {}
            (Role::Gateway, None) => c.error(at("public_ip"), line, "a gateway needs a public_ip"),
            (Role::Gateway, Some(ip)) => {
                if let Some(cidr) = n.public_cidr().filter(|cidr| !host_in(cidr, ip)) {
                    c.error(
                        at("public_ip"),
                        line,
                        format!("{ip} is outside network.public_cidr {cidr}"),
                    );
                }
                claim(ip, "public_ip", c);
            }
            (role, Some(_)) => c.error(
                at("public_ip"),
                line,
                format!(
                    "only gateways have a public_ip; `{}` is a {role} and is reached through them",
                    shown(&node.name, 64)
                ),
            ),
            (_, None) => {}
        }
        if !node.labels.is_empty() && !matches!(node.role, Role::Master | Role::Worker) {
            c.error(
                at("labels"),
                line,
                format!(
                    "only masters and workers have Kubernetes labels; `{}` is a {}",
                    shown(&node.name, 64),
                    node.role
                ),
            );
        }
        for (key, value) in &node.labels {
            if let Some(why) = label_problem(key, value) {
                c.error(at(&format!("labels.{}", shown(key, 64))), line, why);
            }
        }
    }
}

/// Labels a kubelet may set on its own node (the NodeRestriction admission rules).
fn label_problem(key: &str, value: &str) -> Option<String> {
    let name_ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    };
    let (prefix, name) = key
        .rsplit_once('/')
        .map_or((None, key), |(p, n)| (Some(p), n));
    if !name_ok(name) || prefix.is_some_and(|p| p.is_empty() || !p.split('.').all(is_dns_label)) {
        return Some(format!("`{}` is not a valid label key", shown(key, 64)));
    }
    if prefix.is_some_and(|p| p.ends_with("kubernetes.io") || p.ends_with("k8s.io")) {
        return Some(format!(
            "a kubelet may not set `{key}` itself: use a label outside kubernetes.io and k8s.io"
        ));
    }
    if !value.is_empty() && !name_ok(value) {
        return Some(format!("`{}` is not a valid label value", shown(value, 64)));
    }
    None
}

/// keepalived priorities step down by 10 from 150 per gateway (see render's context);
/// more gateways than this add nothing to availability.
pub const MAX_GATEWAYS: usize = 8;

/// The label (`labels: { ingress: "true" }`) of the workers the gateways send :80 and
/// :443 to: those that run the ingress controller.
pub const INGRESS_LABEL: (&str, &str) = ("ingress", "true");

/// At most this many ingress backends per gateway: every one is a haproxy server with
/// its own health check and a line in the gateways' user-data, which Nova caps.
pub const MAX_INGRESS_BACKENDS: usize = 200;

/// The workers the gateways balance ingress traffic over, in spec order: those labelled
/// `ingress: "true"`, or every worker when none is.
pub fn ingress_workers(spec: &Spec) -> Vec<&super::Node> {
    let labelled = |n: &&super::Node| {
        n.labels.get(INGRESS_LABEL.0).map(String::as_str) == Some(INGRESS_LABEL.1)
    };
    let workers: Vec<&super::Node> = spec.nodes_with_role(Role::Worker).collect();
    if workers.iter().any(labelled) {
        workers.into_iter().filter(labelled).collect()
    } else {
        workers
    }
}

/// Gateways list their ingress backends: a cluster of any size needs only the workers
/// that run the ingress controller there, and more than a few hundred do not fit.
fn check_ingress(spec: &Spec, c: &mut Checker) {
    let (key, value) = INGRESS_LABEL;
    let workers = spec.nodes_with_role(Role::Worker).count();
    let labelled: Vec<(usize, &serde_saphyr::Spanned<super::Node>)> = spec
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| n.value.role == Role::Worker)
        .filter(|(_, n)| n.value.labels.get(key).map(String::as_str) == Some(value))
        .collect();
    if let Some((i, n)) = labelled.get(MAX_INGRESS_BACKENDS) {
        c.error(
            format!("nodes[{i}].labels.{key}"),
            Some(n.referenced.line()),
            format!(
                "{} workers are labelled `{key}: \"{value}\"`: the gateways balance :80/:443 over at most {MAX_INGRESS_BACKENDS} (each is a haproxy server in their user-data, which OpenStack caps at 65535 bytes)",
                labelled.len()
            ),
        );
    } else if labelled.is_empty() && workers > MAX_INGRESS_BACKENDS {
        c.error(
            "nodes",
            None,
            format!(
                "{workers} workers and none labelled `{key}: \"{value}\"`: the gateways would send :80/:443 to every worker, and their user-data holds at most {MAX_INGRESS_BACKENDS} ingress backends; label the workers that run the ingress controller (nodes[N].labels.{key}: \"{value}\")"
            ),
        );
    }
    for (i, spanned) in spec.nodes.iter().enumerate() {
        let n = &spanned.value;
        if n.role != Role::Worker && n.labels.get(key).map(String::as_str) == Some(value) {
            c.warning(
                format!("nodes[{i}].labels.{key}"),
                Some(spanned.referenced.line()),
                format!(
                    "`{}` is a {}: only workers receive the gateways' ingress traffic",
                    shown(&n.name, 64),
                    n.role
                ),
            );
        }
    }
}

fn check_roles(spec: &Spec, c: &mut Checker) {
    for role in Role::ALL {
        if spec.nodes_with_role(role).next().is_none() {
            c.error(
                "nodes",
                None,
                format!("missing role: the cluster needs at least one {role} node"),
            );
        }
    }
    let gateways = spec.nodes_with_role(Role::Gateway).count();
    if gateways == 1 {
        c.warning("nodes", None, "one gateway only: the VIPs have no failover");
    }
    if gateways > MAX_GATEWAYS {
        c.error(
            "nodes",
            None,
            format!("{gateways} gateways: at most {MAX_GATEWAYS} share the VIPs"),
        );
    }
    let etcd = spec.nodes_with_role(Role::Etcd).count();
    if etcd > 0 && etcd < 3 && !spec.etcd.allow_fewer_than_three {
        c.error(
            "nodes",
            None,
            format!("{etcd} etcd node(s): at least 3 are needed to survive a failure (set etcd.allow_fewer_than_three for a lab)"),
        );
    }
    if etcd >= 2 && etcd.is_multiple_of(2) {
        c.warning(
            "nodes",
            None,
            format!(
                "{etcd} etcd nodes: an even count tolerates no more failures than {} nodes",
                etcd - 1
            ),
        );
    }
}

fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

fn check_kubernetes(spec: &Spec, c: &mut Checker) {
    let k = &spec.kubernetes;
    check_kubernetes_versions(spec, c);
    check_encrypt_resources(spec, c);
    check_join_token_ttl(spec, c);
    for (name, sum) in &k.sha256 {
        if !versions::ARTIFACTS.contains(&name.as_str()) {
            c.error(
                format!("kubernetes.sha256.{name}"),
                None,
                format!(
                    "unknown artifact; known: {}",
                    versions::ARTIFACTS.join(", ")
                ),
            );
        } else if !is_sha256(sum) {
            c.error(
                format!("kubernetes.sha256.{name}"),
                None,
                "expected 64 hex digits",
            );
        }
    }
    let nets = [
        ("kubernetes.pod_cidr", k.pod_cidr),
        ("kubernetes.service_cidr", k.service_cidr),
        ("network.private_cidr", spec.network.private_cidr),
    ];
    for (i, (path_a, a)) in nets.iter().enumerate() {
        for (path_b, b) in &nets[i + 1..] {
            if overlaps(a, b) {
                c.error(*path_a, None, format!("{a} overlaps {path_b} {b}"));
            }
        }
    }
    for (path, port) in [
        (
            "kubernetes.ingress_http_node_port",
            k.ingress_http_node_port,
        ),
        (
            "kubernetes.ingress_https_node_port",
            k.ingress_https_node_port,
        ),
    ] {
        if !(30000..=32767).contains(&port) {
            c.error(
                path,
                None,
                format!("{port} is outside the NodePort range 30000-32767"),
            );
        }
    }
}

/// `kubernetes.encrypt_resources`: Secrets always; each a resource as
/// EncryptionConfiguration names it (`configmaps`, `deployments.apps`).
fn check_encrypt_resources(spec: &Spec, c: &mut Checker) {
    let list = &spec.kubernetes.encrypt_resources;
    if !list.iter().any(|r| r == "secrets") {
        c.error(
            "kubernetes.encrypt_resources",
            None,
            "must list `secrets`: Secrets are always encrypted at rest",
        );
    }
    for (i, r) in list.iter().enumerate() {
        let word = |w: &str| {
            !w.is_empty()
                && w.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        };
        if !r.split('.').all(word) {
            c.error(
                format!("kubernetes.encrypt_resources[{i}]"),
                None,
                format!(
                    "`{}` is not a resource name (lowercase plural, optionally .group)",
                    shown(r, 60)
                ),
            );
        }
    }
}

/// `kubernetes.join_token_ttl_minutes`: long enough for the first boots to join, short
/// enough that a leaked token soon opens nothing.
fn check_join_token_ttl(spec: &Spec, c: &mut Checker) {
    let ttl = spec.kubernetes.join_token_ttl_minutes;
    if !(JOIN_TOKEN_TTL_MINUTES.0..=JOIN_TOKEN_TTL_MINUTES.1).contains(&ttl) {
        c.error(
            "kubernetes.join_token_ttl_minutes",
            None,
            format!(
                "{ttl} is outside {}..={} (minutes): the first nodes must have time to join, and a token that never expires lets whoever holds a backup join a machine",
                JOIN_TOKEN_TTL_MINUTES.0, JOIN_TOKEN_TTL_MINUTES.1
            ),
        );
    }
}

/// Bounds of `kubernetes.join_token_ttl_minutes`: 5 minutes to 30 days.
pub const JOIN_TOKEN_TTL_MINUTES: (u32, u32) = (5, 30 * 24 * 60);

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Kubernetes, containerd and etcd versions: well-formed, supported, and agreeing with
/// each other (kubeadm refuses an external etcd older than its minimum).
fn check_kubernetes_versions(spec: &Spec, c: &mut Checker) {
    let k = &spec.kubernetes;
    let min_etcd = match versions::Version::parse(&k.version) {
        None => {
            c.error(
                "kubernetes.version",
                None,
                format!("`{}` is not a version like 1.37.2", k.version),
            );
            None
        }
        Some(v) => match versions::kubernetes_support(v) {
            versions::Support::Supported { min_etcd } => Some(min_etcd),
            versions::Support::EndOfLife { min_etcd } => {
                c.warning(
                    "kubernetes.version",
                    None,
                    format!(
                        "Kubernetes 1.{} is past its end of life: use a supported minor",
                        v.1
                    ),
                );
                Some(min_etcd)
            }
            versions::Support::Unsupported => {
                c.error(
                    "kubernetes.version",
                    None,
                    format!(
                        "Kubernetes {v} is not supported; supported minors: {}",
                        versions::supported_minors()
                    ),
                );
                None
            }
        },
    };
    if min_etcd.is_some() {
        let missing = versions::kubernetes(&k.version, &k.sha256).unverifiable();
        if !missing.is_empty() {
            c.warning(
                "kubernetes.sha256",
                None,
                format!(
                    "no pinned checksum for {} of Kubernetes {}: nodes take them from an image baked by `paasgen image build`, or give kubernetes.sha256.<name> to let them download",
                    missing.join(", "),
                    k.version
                ),
            );
        }
    }
    match versions::Version::parse(&k.containerd_version) {
        None => c.error(
            "kubernetes.containerd_version",
            None,
            format!("`{}` is not a containerd release like 2.2.9", k.containerd_version),
        ),
        Some(v) if v.0 < 2 => c.error(
            "kubernetes.containerd_version",
            None,
            format!(
                "containerd {v} is end of life and loses kubelet support (1.38 drops the 1.x CRI fallbacks): use 2.x"
            ),
        ),
        Some(_) => {
            if versions::containerd(&k.containerd_version, &k.sha256).sha256.is_none() {
                c.warning(
                    "kubernetes.sha256.containerd",
                    None,
                    format!(
                        "no pinned checksum for containerd {}: nodes take it from the baked image, or give kubernetes.sha256.containerd",
                        k.containerd_version
                    ),
                );
            }
        }
    }
    let e = &spec.etcd;
    match versions::Version::parse(&e.version) {
        None => c.error(
            "etcd.version",
            None,
            format!("`{}` is not a version like 3.6.16", e.version),
        ),
        Some(v) if v.0 != 3 || !(5..=6).contains(&v.1) => c.error(
            "etcd.version",
            None,
            format!("etcd {v} is not supported: use 3.5 (3.5.24 or later) or 3.6"),
        ),
        Some(v) => {
            if let Some(min) = min_etcd.filter(|min| v < *min) {
                c.error(
                    "etcd.version",
                    None,
                    format!(
                        "etcd {v} is older than {min}, the oldest external etcd kubeadm {} accepts",
                        k.version
                    ),
                );
            }
        }
    }
}

fn check_etcd(spec: &Spec, c: &mut Checker) {
    let e = &spec.etcd;
    if let Some(sum) = &e.sha256 {
        if !is_sha256(sum) {
            c.error("etcd.sha256", None, "expected 64 hex digits");
        }
    }
    if e.source == EtcdSource::Release
        && versions::etcd(&e.version, e.sha256.as_deref())
            .sha256
            .is_none()
    {
        c.warning(
            "etcd.sha256",
            None,
            format!(
                "no pinned checksum for the etcd {} release: members take it from the baked image, or give etcd.sha256 to let them download",
                e.version
            ),
        );
    }
    if e.snapshot_keep == 0 {
        c.error("etcd.snapshot_keep", None, "keep at least one snapshot");
    }
    // Lands on the OnCalendar= line of the snapshot timer: one line, systemd's grammar.
    if let Some(why) = oncalendar::problem(&e.snapshot_schedule) {
        c.error(
            "etcd.snapshot_schedule",
            None,
            format!("`{}`: {why}", shown(&e.snapshot_schedule, 60)),
        );
    }
}

/// `http(s)://host[:port][/path]` with nothing a shell, YAML or TOML file would read
/// differently: mirror URLs land in all three.
fn url_problem(url: &str) -> Option<&'static str> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    let Some(rest) = rest else {
        return Some("must start with http:// or https://");
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    };
    let host_ok = host.parse::<Ipv4Addr>().is_ok()
        || (host.len() <= 253
            && host
                .split('.')
                .all(|l| is_dns_label(&l.to_ascii_lowercase())));
    if !host_ok {
        return Some("the host must be a DNS name or an IPv4 address");
    }
    if port.is_some_and(|p| p.parse::<u16>().map_or(true, |p| p == 0)) {
        return Some("the port must be 1-65535");
    }
    let path_ok = path
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~/".contains(&b));
    if !path_ok {
        return Some("the path may hold only letters, digits and - . _ ~ /");
    }
    None
}

/// An ASCII-armoured OpenPGP public key and nothing else.
fn is_armoured_key(key: &str) -> bool {
    let key = key.trim();
    key.starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----")
        && key.ends_with("-----END PGP PUBLIC KEY BLOCK-----")
        && key.lines().all(|l| {
            l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b" +/=-:.,()<>@_".contains(&b))
        })
}

fn check_mirrors(spec: &Spec, c: &mut Checker) {
    let m = &spec.mirrors;
    let mut urls = vec![
        ("mirrors.files", m.files.as_ref()),
        ("mirrors.registry", m.registry.as_ref()),
    ];
    if let Some(d) = &m.debian {
        urls.push(("mirrors.debian.url", Some(&d.url)));
        urls.push(("mirrors.debian.security_url", d.security_url.as_ref()));
        if d.key.as_ref().is_some_and(|k| !is_armoured_key(k)) {
            c.error(
                "mirrors.debian.key",
                None,
                "expected an ASCII-armoured public key (-----BEGIN PGP PUBLIC KEY BLOCK----- ... END ...)",
            );
        }
    }
    for (path, url) in urls {
        let Some(url) = url else { continue };
        if let Some(why) = url_problem(url) {
            c.error(
                path,
                None,
                format!("`{}` is not a usable mirror URL: {why}", shown(url, 80)),
            );
        }
    }
    let registry_path = m
        .registry
        .as_deref()
        .and_then(|r| r.split_once("://"))
        .is_some_and(|(_, rest)| rest.trim_end_matches('/').contains('/'));
    if registry_path {
        c.error(
            "mirrors.registry",
            None,
            "give the registry's base URL without a path (images are pulled as <registry>/<upstream host>/<name>)",
        );
    }
}

fn check_swift_backups(spec: &Spec, c: &mut Checker) {
    let Some(b) = &spec.etcd.swift_backups else {
        return;
    };
    // Swift's rules for a container name, and no characters a URL would need escaped.
    let name_ok = !b.container.is_empty()
        && b.container.len() <= 256
        && b.container
            .bytes()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, b'-' | b'_' | b'.'));
    if !name_ok {
        c.error(
            "etcd.swift_backups.container",
            None,
            format!(
                "`{}` is not a container name: 1-256 of a-z, A-Z, 0-9, '-', '_', '.'",
                shown(&b.container, 80)
            ),
        );
    }
    if !(1..=10_000).contains(&b.keep) {
        c.error(
            "etcd.swift_backups.keep",
            None,
            "expected 1 to 10000 copies",
        );
    }
    if let Some(url) = &b.upload_endpoint {
        let has_path = url
            .split_once("://")
            .is_some_and(|(_, rest)| rest.trim_end_matches('/').contains('/'));
        if let Some(why) = url_problem(url) {
            c.error(
                "etcd.swift_backups.upload_endpoint",
                None,
                format!("`{}` is not a usable URL: {why}", shown(url, 80)),
            );
        } else if has_path {
            c.error(
                "etcd.swift_backups.upload_endpoint",
                None,
                "give scheme, host and port only: the account path is the catalog's",
            );
        }
    }
}

/// A host directory for volumes: absolute, no `.`/`..` steps, and only characters that
/// need no quoting in JSON, YAML or a shell (the helper pod's `mkdir -p "$VOL_DIR"`).
fn host_dir_problem(path: &str) -> Option<&'static str> {
    if !path.starts_with('/') || path == "/" {
        Some("expected an absolute directory other than /")
    } else if !path
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.'))
    {
        Some("use only a-z, A-Z, 0-9, '/', '-', '_', '.'")
    } else if path[1..]
        .split('/')
        .any(|step| step.is_empty() || step == "." || step == "..")
    {
        Some("no empty, `.` or `..` steps")
    } else {
        None
    }
}

fn check_local_path(spec: &Spec, c: &mut Checker) {
    let lp = &spec.addons.local_path;
    if let Some(why) = host_dir_problem(&lp.path) {
        c.error(
            "addons.local_path.path",
            None,
            format!("`{}`: {why}", shown(&lp.path, 80)),
        );
    }
    for (node, path) in &lp.node_paths {
        let field = format!("addons.local_path.node_paths.{node}");
        let runs_pods = spec
            .nodes
            .iter()
            .any(|n| n.value.name == *node && matches!(n.value.role, Role::Master | Role::Worker));
        if !runs_pods {
            c.error(
                field.clone(),
                line_of(path),
                format!(
                    "`{}` is not a master or worker of this spec",
                    shown(node, 80)
                ),
            );
        }
        if let Some(why) = host_dir_problem(&path.value) {
            c.error(
                field,
                line_of(path),
                format!("`{}`: {why}", shown(&path.value, 80)),
            );
        }
    }
}

/// A storage request: a whole number of Mi, Gi or Ti (what a volume is sized in).
fn is_storage_quantity(s: &str) -> bool {
    let digits = s.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    matches!(&s[digits.len()..], "Mi" | "Gi" | "Ti")
        && (1..=6).contains(&digits.len())
        && !digits.starts_with('0')
        && digits.bytes().all(|b| b.is_ascii_digit())
}

fn check_mariadb(spec: &Spec, c: &mut Checker) {
    let m = &spec.addons.mariadb;
    if !m.enabled {
        return;
    }
    // Semi-sync needs a replica to acknowledge; more than 8 is not what one primary
    // feeding every replica is for.
    if !(1..=8).contains(&m.replicas) {
        c.error(
            "addons.mariadb.replicas",
            None,
            format!(
                "{}: expected 1 to 8 replicas beside the primary",
                m.replicas
            ),
        );
    }
    if !is_storage_quantity(&m.storage) {
        c.error(
            "addons.mariadb.storage",
            None,
            format!(
                "`{}`: expected a size like 8Gi (a whole number of Mi, Gi or Ti)",
                shown(&m.storage, 80)
            ),
        );
    }
    if !spec.addons.local_path.enabled {
        c.warning(
            "addons.mariadb",
            None,
            "addons.local_path is off: the cluster needs another default StorageClass",
        );
    }
    let workers = spec.nodes_with_role(Role::Worker).count();
    if workers < m.replicas as usize + 1 {
        c.warning(
            "addons.mariadb.replicas",
            None,
            format!(
                "{} pods on {workers} worker(s): a worker that fails takes more than one \
                 copy with it",
                m.replicas + 1
            ),
        );
    }
}

/// The addons paasgen itself applies; a manifest addon may not take their names.
pub const BUILT_IN_ADDONS: [&str; 3] = ["flannel", "local-path", "mariadb"];

/// The longest rollout wait an addon may ask for: the first master's cloud-init waits
/// for each addon in turn.
const MAX_ADDON_TIMEOUT_SECONDS: u32 = 3600;

/// The Kubernetes object head every document of a manifest must have.
#[derive(serde::Deserialize)]
struct ObjectHead {
    #[serde(rename = "apiVersion")]
    api_version: String,
    kind: String,
}

fn check_manifest_addons(spec: &Spec, c: &mut Checker) {
    for (name, addon) in &spec.addons.manifests {
        let field = format!("addons.manifests.{name}");
        let line = line_of(&addon.manifest);
        // The name becomes a file name, a cloud-init script's name and a ConfigMap key.
        if !is_dns_label(name) {
            c.error(
                field.clone(),
                line,
                format!(
                    "`{}` is not a DNS label (a-z, 0-9, '-', at most 63)",
                    shown(name, 80)
                ),
            );
        } else if BUILT_IN_ADDONS.contains(&name.as_str()) {
            c.error(
                field.clone(),
                line,
                format!(
                    "`{name}` is one of paasgen's own addons ({})",
                    BUILT_IN_ADDONS.join(", ")
                ),
            );
        }
        match serde_saphyr::from_multiple::<Option<ObjectHead>>(&addon.manifest.value) {
            Ok(docs) if docs.iter().flatten().next().is_none() => c.error(
                format!("{field}.manifest"),
                line,
                "holds no Kubernetes object",
            ),
            Ok(docs)
                if docs
                    .iter()
                    .flatten()
                    .any(|h| h.api_version.is_empty() || h.kind.is_empty()) =>
            {
                c.error(
                    format!("{field}.manifest"),
                    line,
                    "a document has an empty apiVersion or kind",
                )
            }
            Ok(_) => {}
            Err(e) => c.error(
                format!("{field}.manifest"),
                line,
                format!(
                    "not Kubernetes objects (each document needs apiVersion and kind): {}",
                    shown(&e.to_string(), 200)
                ),
            ),
        }
        if let Some(t) = &addon.timeout_seconds {
            if !(10..=MAX_ADDON_TIMEOUT_SECONDS).contains(&t.value) {
                c.error(
                    format!("{field}.timeout_seconds"),
                    line_of(t),
                    format!("{} is outside 10..={MAX_ADDON_TIMEOUT_SECONDS}", t.value),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_directories_are_plain_absolute_paths() {
        assert_eq!(host_dir_problem("/disks"), None);
        assert_eq!(host_dir_problem("/opt/local-path-provisioner"), None);
        for bad in [
            "disks",
            "/",
            "/a/../etc",
            "/a//b",
            "/a/",
            "/a b",
            "/a$(id)",
            "/a\"\n",
        ] {
            assert!(host_dir_problem(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn storage_sizes_are_whole_mi_gi_or_ti() {
        for good in ["8Gi", "512Mi", "1Ti", "100000Gi"] {
            assert!(is_storage_quantity(good), "{good}");
        }
        for bad in [
            "",
            "Gi",
            "8",
            "08Gi",
            "8G",
            "8gi",
            "1.5Gi",
            "-1Gi",
            "8Gi ",
            "1234567Gi",
        ] {
            assert!(!is_storage_quantity(bad), "{bad:?}");
        }
    }

    #[test]
    fn mariadb_needs_a_replica_and_a_size() {
        let text = crate::spec::EXAMPLE
            .replacen(
                "    enabled: false\n    replicas: 2 ",
                "    enabled: true\n    replicas: 0 ",
                1,
            )
            .replacen("    storage: 8Gi ", "    storage: 8GB ", 1);
        assert_eq!(text.len(), crate::spec::EXAMPLE.len() - 1);
        let err = crate::spec::parse("c.yaml", &text).unwrap_err();
        let fields: Vec<_> = err
            .problems
            .into_iter()
            .filter(|p| p.severity == Severity::Error)
            .map(|p| p.path)
            .collect();
        assert_eq!(
            fields,
            ["addons.mariadb.replicas", "addons.mariadb.storage"]
        );
    }

    #[test]
    fn ssh_key_type_must_match_its_blob() {
        // An ed25519 blob labelled as RSA.
        let blob = "AAAAC3NzaC1lZDI1NTE5AAAAIDcVv5d0UeSbW8dtF9o2Qjvz0Y4MqGhE6nqg7Wb4dJ2x";
        assert!(ssh_key_problem(&format!("ssh-ed25519 {blob} me")).is_none());
        assert!(ssh_key_problem(&format!("ssh-rsa {blob} me")).is_some());
        assert!(ssh_key_problem("ssh-ed25519 not*base64").is_some());
    }

    #[test]
    fn host_addresses_exclude_network_and_broadcast() {
        let net: Ipv4Net = "192.168.0.0/24".parse().unwrap();
        assert!(host_in(&net, "192.168.0.1".parse().unwrap()));
        assert!(!host_in(&net, "192.168.0.0".parse().unwrap()));
        assert!(!host_in(&net, "192.168.0.255".parse().unwrap()));
        assert!(!host_in(&net, "192.168.1.1".parse().unwrap()));
    }
}
