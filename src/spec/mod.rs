//! The cluster spec: what the user writes, parsed strictly (unknown fields are errors).
//!
//! Parsing (`load`) turns YAML into these types and reports syntax and type errors with
//! line and column; `validate` then checks the rules that span several fields.

mod oncalendar;
mod parse;
pub mod pins;
mod scaled;
mod validate;
pub mod versions;

pub use parse::{load, parse};
pub use scaled::example_with_workers;
pub use validate::{ingress_workers, validate, INGRESS_LABEL, MAX_GATEWAYS, MAX_INGRESS_BACKENDS};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;
use std::fmt;
use std::net::Ipv4Addr;

/// The commented example written by `paasgen init`.
pub const EXAMPLE: &str = include_str!("../../examples/cluster.yaml");

/// The same platform behind a Neutron router and a floating IP (`network.public: floating`).
pub const FLOATING_EXAMPLE: &str = include_str!("../../examples/floating.yaml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Cluster name: prefixes cloud resources and tags them.
    pub name: String,
    /// DNS suffix for node names in /etc/hosts.
    #[serde(default = "default_domain")]
    pub domain: String,
    pub ssh_authorized_keys: Vec<String>,
    pub network: Network,
    #[serde(default)]
    pub kubernetes: Kubernetes,
    #[serde(default)]
    pub etcd: Etcd,
    /// Where nodes get software when they cannot (or must not) reach the internet.
    #[serde(default)]
    pub mirrors: Mirrors,
    /// Where `paasgen launch --cloud openstack` builds the platform.
    #[serde(default)]
    pub openstack: Option<OpenStack>,
    /// What the first master applies once the API answers, besides the CNI.
    #[serde(default)]
    pub addons: Addons,
    pub nodes: Vec<Spanned<Node>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Addons {
    pub local_path: LocalPath,
    pub mariadb: Mariadb,
    /// The user's own addons: name -> manifest, applied after paasgen's, each on its own.
    pub manifests: std::collections::BTreeMap<String, ManifestAddon>,
}

/// Kubernetes objects the first master applies once the API answers (server-side
/// apply), waiting for their Deployments, DaemonSets and StatefulSets to roll out.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestAddon {
    /// YAML, one or more documents.
    pub manifest: Spanned<String>,
    /// How long its workloads may take to roll out before it counts as failed
    /// (`DEFAULT_ADDON_TIMEOUT_SECONDS` when not given).
    #[serde(default)]
    pub timeout_seconds: Option<Spanned<u32>>,
}

/// What `kubectl rollout status` is given for an addon's workloads unless it says.
pub const DEFAULT_ADDON_TIMEOUT_SECONDS: u32 = 600;

impl Addons {
    /// Every addon the first master applies, in order: paasgen's own (flannel first:
    /// nothing runs without the CNI), then the spec's.
    pub fn all(&self) -> Vec<Addon> {
        let own = |name: &str, chart| Addon {
            name: name.into(),
            timeout_seconds: DEFAULT_ADDON_TIMEOUT_SECONDS,
            chart,
        };
        let mut addons = vec![own("flannel", None)];
        if self.local_path.enabled {
            addons.push(own("local-path", None));
        }
        if self.mariadb.enabled {
            addons.push(own(
                "mariadb",
                Some(Chart {
                    dir: MARIADB_CHART,
                    namespace: MARIADB_NAMESPACE,
                }),
            ));
        }
        addons.extend(self.manifests.iter().map(|(name, a)| Addon {
            name: name.clone(),
            timeout_seconds: a.timeout_seconds(),
            chart: None,
        }));
        addons
    }
}

/// An addon the first master applies: a manifest in /etc/kubernetes/addons/<name>.yaml,
/// or a Helm release of `chart` (values in <name>.values.yaml; the manifest, if any,
/// applied first), and how long its workloads may take to roll out.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Addon {
    pub name: String,
    pub timeout_seconds: u32,
    pub chart: Option<Chart>,
}

/// A chart baked in the node image, and the namespace of its release (named as the addon).
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Chart {
    pub dir: &'static str,
    pub namespace: &'static str,
}

impl ManifestAddon {
    pub fn timeout_seconds(&self) -> u32 {
        self.timeout_seconds
            .as_ref()
            .map_or(DEFAULT_ADDON_TIMEOUT_SECONDS, |t| t.value)
    }
}

/// rancher's local-path-provisioner as the default StorageClass: a volume is a directory
/// on the node its first pod lands on.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalPath {
    pub enabled: bool,
    /// Where volumes go on nodes that `node_paths` does not name.
    pub path: String,
    /// Node name -> its own directory (say, a worker's data disk mounted on /disks).
    pub node_paths: std::collections::BTreeMap<String, Spanned<String>>,
}

impl Default for LocalPath {
    fn default() -> Self {
        LocalPath {
            enabled: true,
            path: "/opt/local-path-provisioner".into(),
            node_paths: Default::default(),
        }
    }
}

/// The project's replicated MariaDB (templates/charts/mariadb, baked in the node
/// image) as the Helm release `mariadb` in the namespace `mariadb`: one primary elected
/// through a Lease, GTID replicas, semi-synchronous.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Mariadb {
    pub enabled: bool,
    /// Replicas beside the primary (pods = replicas + 1).
    pub replicas: u32,
    /// Each pod's volume, a Kubernetes quantity (`8Gi`), on the default StorageClass.
    pub storage: String,
}

impl Default for Mariadb {
    fn default() -> Self {
        Mariadb {
            enabled: false,
            replicas: 2,
            storage: "8Gi".into(),
        }
    }
}

/// Where the MariaDB chart lives on a node of the paasgen image, and its release.
pub const MARIADB_CHART: &str = "/usr/share/paasgen/charts/mariadb";
pub const MARIADB_NAMESPACE: &str = "mariadb";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenStack {
    /// Glance image every node boots (baked from images/).
    pub image: String,
    /// Provider network carrying `network.public_cidr`: gateways and the public VIP get
    /// fixed addresses on it (fixed mode), or the router's gateway and the floating IP
    /// come from it (floating mode).
    pub public_network: String,
    pub flavors: Flavors,
    /// Who may reach the gateways' SSH port.
    #[serde(default = "default_admin_cidrs")]
    pub admin_cidrs: Vec<Ipv4Net>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flavors {
    pub gateway: String,
    pub etcd: String,
    pub master: String,
    pub worker: String,
}

impl Flavors {
    pub fn for_role(&self, role: Role) -> &str {
        match role {
            Role::Gateway => &self.gateway,
            Role::Etcd => &self.etcd,
            Role::Master => &self.master,
            Role::Worker => &self.worker,
        }
    }
}

/// How users reach the platform from `openstack.public_network`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PublicMode {
    /// The gateways have a second port with a fixed address on the public network, hold
    /// `public_vip` there and NAT the private network.
    #[default]
    Fixed,
    /// A Neutron router joins the private subnet to the public network and NATs it; a
    /// floating IP on the private VIP is the users' entry point. The gateways have one
    /// port only.
    Floating,
}

impl PublicMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PublicMode::Fixed => "fixed",
            PublicMode::Floating => "floating",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    pub private_cidr: Ipv4Net,
    /// Name the image gives the NIC on the private network (virtio on OpenStack: ens3).
    #[serde(default = "default_private_interface")]
    pub private_interface: String,
    /// Held by the gateways: Kubernetes API endpoint (and, fixed mode, default route of
    /// private nodes).
    pub private_vip: Ipv4Addr,
    /// `fixed` (default) or `floating`; see `PublicMode`.
    #[serde(default)]
    pub public: Option<Spanned<PublicMode>>,
    /// Floating mode: the router's address on the private subnet, the nodes' default
    /// route (default: the first host address of `private_cidr`).
    #[serde(default)]
    pub private_gateway: Option<Spanned<Ipv4Addr>>,
    /// Fixed mode: the public network's CIDR, its gateway and the gateways' public NIC.
    #[serde(default)]
    pub public_cidr: Option<Spanned<Ipv4Net>>,
    #[serde(default)]
    pub public_gateway: Option<Spanned<Ipv4Addr>>,
    #[serde(default)]
    pub public_interface: Option<Spanned<String>>,
    /// Fixed mode: held by the gateways next to the private VIP, users' entry point.
    #[serde(default)]
    pub public_vip: Option<Spanned<Ipv4Addr>>,
    /// Resolvers handed to nodes by the cloud's subnet.
    #[serde(default)]
    pub dns_servers: Vec<Ipv4Addr>,
    /// VRRP virtual router id; must be unique on the private L2 segment.
    #[serde(default = "default_vrrp_id")]
    pub vrrp_router_id: u8,
}

impl Network {
    pub fn mode(&self) -> PublicMode {
        self.public.as_ref().map(|s| s.value).unwrap_or_default()
    }

    pub fn is_floating(&self) -> bool {
        self.mode() == PublicMode::Floating
    }

    /// Fixed mode: the public VIP (validation makes it present).
    pub fn public_vip(&self) -> Option<Ipv4Addr> {
        self.public_vip.as_ref().map(|s| s.value)
    }

    pub fn public_cidr(&self) -> Option<Ipv4Net> {
        self.public_cidr.as_ref().map(|s| s.value)
    }

    pub fn public_gateway(&self) -> Option<Ipv4Addr> {
        self.public_gateway.as_ref().map(|s| s.value)
    }

    /// The gateways' NIC on the public network (fixed mode).
    pub fn public_interface(&self) -> &str {
        self.public_interface
            .as_ref()
            .map_or(DEFAULT_PUBLIC_INTERFACE, |s| s.value.as_str())
    }

    /// Floating mode: the router's address on the private subnet (given, or the first
    /// host address of `private_cidr`); fixed mode has no router.
    pub fn router_ip(&self) -> Option<Ipv4Addr> {
        if !self.is_floating() {
            return None;
        }
        let first = self.private_cidr.hosts().next();
        self.private_gateway.as_ref().map(|s| s.value).or(first)
    }

    /// Where private nodes send what leaves the network: the gateways' VIP (fixed) or the
    /// router (floating).
    pub fn default_route(&self) -> Ipv4Addr {
        self.router_ip().unwrap_or(self.private_vip)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Kubernetes {
    pub version: String,
    /// containerd release (upstream; the baked image carries it, else a checked download).
    pub containerd_version: String,
    /// sha256 of downloads paasgen pins no checksum for, by artifact
    /// (kubeadm, kubelet, kubectl, crictl, cni_plugins, containerd, helm).
    pub sha256: versions::Overrides,
    pub pod_cidr: Ipv4Net,
    pub service_cidr: Ipv4Net,
    pub ingress_http_node_port: u16,
    pub ingress_https_node_port: u16,
    /// Resources the API servers encrypt before they reach etcd (and so every backup):
    /// Secrets always, others as listed (`configmaps`, ...).
    pub encrypt_resources: Vec<String>,
    /// How long a join token lives: the first one (kubeadm init's, for the nodes of the
    /// first boot) and each one `rebuild`/`upgrade` mints for a node that joins later.
    pub join_token_ttl_minutes: u32,
}

impl Default for Kubernetes {
    fn default() -> Self {
        Kubernetes {
            version: pins::pin("KUBERNETES_VERSION").into(),
            containerd_version: pins::pin("CONTAINERD_VERSION").into(),
            sha256: versions::Overrides::new(),
            pod_cidr: "10.244.0.0/16".parse().expect("literal CIDR"),
            service_cidr: "10.96.0.0/12".parse().expect("literal CIDR"),
            ingress_http_node_port: 30080,
            ingress_https_node_port: 30443,
            encrypt_resources: vec!["secrets".into()],
            join_token_ttl_minutes: 24 * 60,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EtcdSource {
    /// Debian's etcd-server package (apt verifies it): bookworm's 3.4 is too old for
    /// kubeadm's external etcd, so only useful with a newer Debian mirror.
    Debian,
    /// The upstream release: from the baked image, else the tarball checked against its
    /// sha256 at boot.
    Release,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Etcd {
    pub version: String,
    pub source: EtcdSource,
    /// sha256 of the release tarball; needed for versions paasgen has no checksum for.
    pub sha256: Option<String>,
    /// systemd OnCalendar expression for local snapshots.
    pub snapshot_schedule: String,
    /// How many local snapshots to keep.
    pub snapshot_keep: u32,
    /// Allow fewer than three members (no fault tolerance): labs only.
    pub allow_fewer_than_three: bool,
    /// Off-site copies of the snapshots in OpenStack object storage.
    pub swift_backups: Option<SwiftBackups>,
}

/// The leading member's timer uploads each snapshot into `container` through a Swift
/// TempURL that only lets it add objects under its own name (`paasgen backup setup`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwiftBackups {
    pub container: String,
    /// Copies kept per member (and of paasgen's own): `backup prune`, also run by
    /// `backup now`, deletes older ones with paasgen's credential; nodes cannot delete.
    #[serde(default = "default_keep")]
    pub keep: u32,
    /// Where the nodes reach Swift, when not at the catalog's public endpoint
    /// (`http[s]://host[:port]`; the account path is the catalog's).
    #[serde(default)]
    pub upload_endpoint: Option<String>,
}

fn default_keep() -> u32 {
    48
}

impl Default for Etcd {
    fn default() -> Self {
        Etcd {
            version: pins::pin("ETCD_VERSION").into(),
            source: EtcdSource::Release,
            sha256: None,
            snapshot_schedule: "hourly".into(),
            snapshot_keep: 24,
            allow_fewer_than_three: false,
            swift_backups: None,
        }
    }
}

/// Mirrors of what nodes fetch: air-gapped sites run their own, and a node then talks
/// to nothing else. Every download is still checked against its sha256.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mirrors {
    /// Replaces the image's Debian sources (main, updates, security).
    pub debian: Option<DebianMirror>,
    /// Prefix for release downloads: `https://dl.k8s.io/release/...` is fetched as
    /// `<files>/dl.k8s.io/release/...`.
    pub files: Option<String>,
    /// Registry that containerd pulls through: `registry.k8s.io/pause:3.10.2` is
    /// pulled as `<registry>/registry.k8s.io/pause:3.10.2`.
    pub registry: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebianMirror {
    /// Serves `<codename>` and `<codename>-updates`.
    pub url: String,
    /// Serves `<codename>-security`; defaults to `url`.
    #[serde(default)]
    pub security_url: Option<String>,
    /// ASCII-armoured key that signs the mirror; default: Debian's archive keyring.
    #[serde(default)]
    pub key: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    pub name: String,
    pub role: Role,
    pub private_ip: Ipv4Addr,
    /// Gateways only, fixed mode: the gateway's own address on the public network.
    #[serde(default)]
    pub public_ip: Option<Ipv4Addr>,
    /// Masters and workers: Kubernetes node labels the kubelet registers with.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Gateway,
    Etcd,
    Master,
    Worker,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Gateway, Role::Etcd, Role::Master, Role::Worker];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Gateway => "gateway",
            Role::Etcd => "etcd",
            Role::Master => "master",
            Role::Worker => "worker",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Spec {
    /// Nodes without their source spans, in spec order.
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().map(|n| &n.value)
    }

    pub fn nodes_with_role(&self, role: Role) -> impl Iterator<Item = &Node> {
        self.nodes().filter(move |n| n.role == role)
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes().find(|n| n.name == name)
    }

    /// The master that runs `kubeadm init`: the first one in the spec.
    pub fn first_master(&self) -> Option<&Node> {
        self.nodes_with_role(Role::Master).next()
    }

    pub fn fqdn(&self, node: &Node) -> String {
        format!("{}.{}", node.name, self.domain)
    }
}

fn default_admin_cidrs() -> Vec<Ipv4Net> {
    vec!["0.0.0.0/0".parse().expect("literal CIDR")]
}

fn default_domain() -> String {
    "cluster.internal".into()
}
fn default_private_interface() -> String {
    "ens3".into()
}
const DEFAULT_PUBLIC_INTERFACE: &str = "ens4";
fn default_vrrp_id() -> u8 {
    51
}

/// `value` as a message may echo it: control, escape and bidi characters escaped (a
/// name must not drive the user's terminal), and cut after `max` characters.
pub fn shown(value: &str, max: usize) -> String {
    let mut out = String::new();
    for (i, c) in value.chars().enumerate() {
        if i == max {
            out.push_str(&format!("... ({} bytes in all)", value.len()));
            break;
        }
        let invisible = matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}');
        if c.is_control() || invisible {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// How bad a problem found in a spec is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem in a spec, located by field path and, where known, line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub severity: Severity,
    pub path: String,
    pub line: Option<u64>,
    pub column: Option<u64>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{kind}")?;
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, " at line {l}, column {c}")?,
            (Some(l), None) => write!(f, " at line {l}")?,
            _ => {}
        }
        // Values are escaped and cut where they are quoted; this is the net under that
        // for messages that quote the spec through a library.
        if !self.path.is_empty() {
            write!(f, ": {}", shown(&self.path, 200))?;
        }
        write!(f, ": {}", shown(&self.message, 400))
    }
}

/// A spec that cannot be used, with every problem found.
#[derive(Debug, thiserror::Error)]
pub struct SpecError {
    pub file: String,
    pub problems: Vec<Problem>,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let errors = self
            .problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
            .count();
        writeln!(f, "{}: {} error(s)", self.file, errors)?;
        for p in &self.problems {
            writeln!(f, "  {p}")?;
        }
        Ok(())
    }
}
