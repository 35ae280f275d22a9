//! The data templates see: plain values derived from the spec (and, per role, from the
//! PKI). Secrets enter a node's context only for the roles that need them.

use crate::pki::Pki;
use crate::spec::pins::pin;
use crate::spec::versions::{self, Download};
use crate::spec::{EtcdSource, Node, Role, Spec, MAX_GATEWAYS};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

/// How a render differs from a first build of the cluster.
#[derive(Debug, Clone, Default)]
pub struct RenderOptions {
    /// etcd members that replace a lost member of a running cluster: their config says
    /// `initial-cluster-state: existing`.
    pub etcd_joining: BTreeSet<String>,
    /// Set by `recover`: the etcd cluster was founded again from a snapshot.
    pub etcd_recovery: Option<EtcdRecovery>,
    /// Set by `backup setup`: where etcd's timers upload their snapshots.
    pub etcd_upload: Option<OffsiteTarget>,
    /// `network.public: floating`: the floating IP `launch` allocated first (recorded in
    /// launch.json), the users' entry point.
    pub floating_ip: Option<Ipv4Addr>,
    /// A join token minted through the API for the nodes that join now (`rebuild`,
    /// `upgrade`), instead of the state dir's (kubeadm init's, which may have expired).
    pub join_token: Option<String>,
}

impl RenderOptions {
    /// For checks that only need a render to succeed (validate's size check): a floating
    /// IP of the longest form stands in for the one launch has not allocated yet.
    pub fn throwaway() -> RenderOptions {
        RenderOptions {
            floating_ip: Some(Ipv4Addr::new(255, 255, 255, 255)),
            ..RenderOptions::default()
        }
    }
}

/// The Swift container `backup setup` prepared, and the key its TempURLs are signed
/// with (a secret of the state dir: a node gets only its own signature).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsiteTarget {
    /// `/v1/AUTH_<project>/<container>`: what a TempURL signs.
    pub container_path: String,
    /// `scheme://host[:port]` the nodes upload to.
    pub upload_endpoint: String,
    pub key: String,
    /// Unix seconds: the signatures stop working then.
    pub expires: u64,
}

/// How `recover` founds the etcd cluster again: one member restores the snapshot on
/// first boot, the others are added one at a time, each knowing the members before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EtcdRecovery {
    /// Of the restored cluster: members of the lost one cannot talk to it.
    pub token: String,
    /// The member that restores the snapshot, until it is rebuilt.
    pub restored_on: Option<String>,
    /// sha256 of the snapshot: the member restores only these bytes.
    pub snapshot_sha256: String,
    /// Members added after the restore: each with the members it joined (itself last).
    #[serde(default)]
    pub joined: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClusterView {
    pub name: String,
    pub domain: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct NetworkView {
    pub private_cidr: String,
    pub private_prefix: u8,
    pub private_interface: String,
    pub private_vip: String,
    /// `network.public: floating`: a router NATs the private network and the gateways
    /// have no public port; the `public_*` fields below are then empty.
    pub floating: bool,
    pub public_cidr: String,
    pub public_prefix: u8,
    pub public_interface: String,
    pub public_vip: String,
    pub public_gateway: String,
    /// The users' entry point (API server certificate, admin kubeconfig): the public VIP,
    /// or the floating IP.
    pub public_address: String,
    /// Where outside traffic arrives on the gateways: the public VIP, or the private VIP
    /// (the router forwards the floating IP's traffic to it).
    pub frontend_vip: String,
    /// The private nodes' default route: the gateways' private VIP, or the router.
    pub default_route: String,
    pub vrrp_router_id: u8,
    pub dns_servers: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PortsView {
    pub api: u16,
    pub ingress_http: u16,
    pub ingress_https: u16,
    /// Where each gateway's haproxy says who it is (`paasgen status`).
    pub gateway_status: u16,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeView {
    pub name: String,
    pub fqdn: String,
    pub role: Role,
    pub private_ip: String,
    pub public_ip: Option<String>,
    /// Kubelet `--node-labels` value: `k=v,k2=v2`, empty when none.
    pub node_labels: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct GatewayView {
    pub priority: u8,
    pub advert_interval: &'static str,
    pub peers: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EtcdView {
    pub version: String,
    pub source: EtcdSource,
    pub binary: &'static str,
    pub download: Option<Download>,
    pub initial_cluster: String,
    pub initial_cluster_state: &'static str,
    pub initial_cluster_token: String,
    /// This member restores a snapshot on first boot (`recover`).
    pub restore: Option<RestoreView>,
    /// Secret (this member's only): where its timer uploads snapshots.
    pub upload: Option<UploadView>,
    pub client_endpoints: String,
    pub snapshot_schedule: String,
    pub snapshot_keep: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct RestoreView {
    pub snapshot_sha256: String,
    /// `etcdutl snapshot restore --bump-revision`: Kubernetes' watchers see every
    /// revision after the restore as newer than anything they saw before it.
    pub bump_revision: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct UploadView {
    /// `<endpoint>/v1/<account>/<container>/<member>/`: the object name follows.
    pub url_prefix: String,
    /// The TempURL query: PUT only, under `<member>/` only.
    pub query: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct BinaryView {
    pub name: &'static str,
    /// Arguments that make it print its version.
    pub version_args: &'static str,
    pub download: Download,
}

#[derive(Debug, Clone, Serialize)]
pub struct KubernetesView {
    pub version: String,
    pub containerd_version: String,
    pub containerd: Download,
    pub pod_cidr: String,
    pub service_cidr: String,
    pub api_cert_sans: Vec<String>,
    pub binaries: Vec<BinaryView>,
    pub crictl_version: String,
    pub crictl: Download,
    pub cni_plugins_version: String,
    pub cni_plugins: Download,
    /// Helm, which the masters install (their addons may be charts).
    pub helm_version: &'static str,
    pub helm: Download,
    pub pause_image: String,
    pub flannel_image: &'static str,
    pub flannel_cni_plugin_image: &'static str,
    /// `addons.local_path`, when enabled.
    pub local_path: Option<LocalPathView>,
    /// `addons.mariadb`, when enabled.
    pub mariadb: Option<MariadbView>,
    /// Every addon the first master applies, in order.
    pub addons: Vec<crate::spec::Addon>,
    /// Secret: present only in master and worker contexts.
    pub bootstrap_token: Option<String>,
    /// kubeadm init's token's TTL, as a Go duration.
    pub join_token_ttl: String,
    /// Resources encrypted at rest, and (secret: masters only) the key.
    pub encrypt_resources: Vec<String>,
    pub encryption_key: Option<String>,
    pub ca_cert_hash: String,
    /// Where the gateways' haproxy connects from: their private addresses and VIP.
    pub balancers: Vec<String>,
}

/// The MariaDB release's values.
#[derive(Debug, Clone, Serialize)]
pub struct MariadbView {
    pub namespace: &'static str,
    pub replicas: u32,
    pub storage: String,
    pub image: &'static str,
    pub kubectl_image: &'static str,
    /// Secret: only in the first master's context.
    pub passwords: Option<crate::pki::MariadbPasswords>,
}

impl MariadbView {
    fn new(m: &crate::spec::Mariadb) -> Option<MariadbView> {
        m.enabled.then(|| MariadbView {
            namespace: crate::spec::MARIADB_NAMESPACE,
            replicas: m.replicas,
            storage: m.storage.clone(),
            image: pin("MARIADB_IMAGE"),
            kubectl_image: pin("KUBECTL_IMAGE"),
            passwords: None,
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LocalPathView {
    pub provisioner_image: &'static str,
    pub helper_image: &'static str,
    /// The provisioner's config.json (its `nodePathMap`), and its sha256.
    pub config_json: String,
    pub config_sha256: String,
}

impl LocalPathView {
    fn new(lp: &crate::spec::LocalPath) -> Option<LocalPathView> {
        if !lp.enabled {
            return None;
        }
        let entry = |node: &str, path: &str| serde_json::json!({"node": node, "paths": [path]});
        let mut node_path_map = vec![entry("DEFAULT_PATH_FOR_NON_LISTED_NODES", &lp.path)];
        node_path_map.extend(
            lp.node_paths
                .iter()
                .map(|(node, path)| entry(node, &path.value)),
        );
        let config_json = serde_json::json!({ "nodePathMap": node_path_map }).to_string();
        Some(LocalPathView {
            provisioner_image: pin("LOCAL_PATH_PROVISIONER_IMAGE"),
            helper_image: pin("LOCAL_PATH_HELPER_IMAGE"),
            config_sha256: format!("{:x}", Sha256::digest(&config_json)),
            config_json,
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct DebianMirrorView {
    pub url: String,
    pub security_url: String,
    /// The keyring apt checks the mirror with.
    pub signed_by: &'static str,
    /// Armoured key written next to the sources, when the mirror has its own.
    pub key: Option<String>,
}

/// One upstream registry and where containerd pulls its images instead.
#[derive(Debug, Clone, Serialize)]
pub struct RegistryMirrorView {
    pub upstream: &'static str,
    pub server: &'static str,
    /// `<mirror>/v2/<upstream>`: containerd appends the repository path as is.
    pub endpoint: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct MirrorsView {
    pub debian: Option<DebianMirrorView>,
    /// Masters and workers only: nothing else runs containers.
    pub registries: Vec<RegistryMirrorView>,
}

/// The port of each gateway's haproxy that names it (haproxy's conventional stats port).
pub const GATEWAY_STATUS_PORT: u16 = 8404;

pub const MIRROR_KEY_PATH: &str = "/etc/apt/keyrings/paasgen-mirror.asc";

#[derive(Debug, Clone, Serialize)]
pub struct KubeadmView {
    /// The first master may run `kubeadm init`; everyone else only joins.
    pub may_init: bool,
}

/// A PUT-only TempURL for `<member>/` in the backup container, when both the spec asks
/// for off-site copies and `backup setup` prepared the container.
fn upload_view(spec: &Spec, opts: &RenderOptions, node: &Node) -> Option<UploadView> {
    spec.etcd.swift_backups.as_ref()?;
    let target = opts.etcd_upload.as_ref()?;
    let prefix = format!("{}/", node.name);
    let signed = crate::tempurl::sign_put_prefix(
        target.key.as_bytes(),
        &target.container_path,
        &prefix,
        target.expires,
    )
    // The container path was checked when the record was loaded.
    .ok()?;
    Some(UploadView {
        url_prefix: format!(
            "{}{}/{prefix}",
            target.upload_endpoint.trim_end_matches('/'),
            crate::tempurl::percent_encode(&target.container_path, true)
        ),
        query: signed.query(),
    })
}

/// Far more revisions than a cluster writes between a backup and its restore (the
/// figure the Kubernetes documentation suggests).
const RESTORE_BUMP_REVISION: u64 = 1_000_000_000;

/// What every template of one node sees.
#[derive(Debug, Clone, Serialize)]
pub struct NodeContext {
    pub cluster: ClusterView,
    pub network: NetworkView,
    pub ports: PortsView,
    pub node: NodeView,
    pub masters: Vec<NodeView>,
    /// Gateways only: the haproxy ingress backends (`spec::ingress_workers`: the workers
    /// labelled `ingress: "true"`, or every worker when none is).
    pub workers: Vec<NodeView>,
    /// This node's /etc/hosts: itself and the nodes it names (see `Shared::hosts`), so
    /// that its size does not grow with the worker count.
    pub hosts: Vec<NodeView>,
    pub etcd_members: Vec<NodeView>,
    pub ssh_authorized_keys: Vec<String>,
    pub gateway: Option<GatewayView>,
    pub etcd: Option<EtcdView>,
    pub kubernetes: Option<KubernetesView>,
    pub kubeadm: Option<KubeadmView>,
    pub mirrors: MirrorsView,
}

/// The parts of a context that are the same for every node: built once per render.
#[derive(Debug, Clone)]
pub struct Shared {
    cluster: ClusterView,
    network: NetworkView,
    ports: PortsView,
    nodes: Vec<NodeView>,
    masters: Vec<NodeView>,
    /// The gateways' ingress backends.
    ingress: Vec<NodeView>,
    etcd_members: Vec<NodeView>,
    gateways: Vec<NodeView>,
    /// Per role, the nodes a node of that role names (its /etc/hosts besides itself).
    named_by_role: BTreeMap<Role, Vec<NodeView>>,
    ssh_authorized_keys: Vec<String>,
}

fn node_view(spec: &Spec, n: &Node) -> NodeView {
    NodeView {
        name: n.name.clone(),
        fqdn: spec.fqdn(n),
        role: n.role,
        private_ip: n.private_ip.to_string(),
        public_ip: n.public_ip.map(|ip| ip.to_string()),
        node_labels: n
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
    }
}

/// The users' entry point: the public VIP (fixed), or the floating IP `launch` recorded.
pub fn public_address(spec: &Spec, opts: &RenderOptions) -> anyhow::Result<Ipv4Addr> {
    let net = &spec.network;
    match (net.is_floating(), net.public_vip(), opts.floating_ip) {
        (false, Some(vip), _) => Ok(vip),
        (true, _, Some(fip)) => Ok(fip),
        (true, _, None) => anyhow::bail!(
            "`network.public: floating` and no floating IP is recorded in the state dir's launch.json: `paasgen launch` allocates it before it renders"
        ),
        (false, None, _) => anyhow::bail!("network.public_vip is required in fixed mode"),
    }
}

impl Shared {
    pub fn new(spec: &Spec, opts: &RenderOptions) -> anyhow::Result<Shared> {
        let net = &spec.network;
        let public_address = public_address(spec, opts)?.to_string();
        let fixed_public = |v: Option<String>| v.unwrap_or_default();
        let nodes: Vec<NodeView> = spec.nodes().map(|n| node_view(spec, n)).collect();
        let with_role = |role| nodes.iter().filter(|n| n.role == role).cloned().collect();
        let ingress: BTreeSet<&str> = crate::spec::ingress_workers(spec)
            .into_iter()
            .map(|n| n.name.as_str())
            .collect();
        // Nothing on a node resolves another node's name today (configs use addresses),
        // but whom a node talks to is what an operator on it looks up: etcd members
        // their peers; masters etcd and the other masters; gateways what keepalived and
        // haproxy name (gateways, masters, etcd members for SNI, ingress backends).
        // Workers only need the API name, and the worker count never reaches a document.
        let named = |roles: &[Role], ingress: &BTreeSet<&str>| -> Vec<NodeView> {
            nodes
                .iter()
                .filter(|n| roles.contains(&n.role) || ingress.contains(n.name.as_str()))
                .cloned()
                .collect()
        };
        let none = BTreeSet::new();
        let named_by_role = BTreeMap::from([
            (
                Role::Gateway,
                named(&[Role::Gateway, Role::Etcd, Role::Master], &ingress),
            ),
            (Role::Etcd, named(&[Role::Etcd], &none)),
            (Role::Master, named(&[Role::Etcd, Role::Master], &none)),
            (Role::Worker, Vec::new()),
        ]);
        Ok(Shared {
            masters: with_role(Role::Master),
            ingress: nodes
                .iter()
                .filter(|n| ingress.contains(n.name.as_str()))
                .cloned()
                .collect(),
            named_by_role,
            etcd_members: with_role(Role::Etcd),
            gateways: with_role(Role::Gateway),
            cluster: ClusterView {
                name: spec.name.clone(),
                domain: spec.domain.clone(),
            },
            network: NetworkView {
                private_cidr: net.private_cidr.to_string(),
                private_prefix: net.private_cidr.prefix_len(),
                private_interface: net.private_interface.clone(),
                private_vip: net.private_vip.to_string(),
                floating: net.is_floating(),
                public_cidr: fixed_public(net.public_cidr().map(|c| c.to_string())),
                public_prefix: net.public_cidr().map_or(0, |c| c.prefix_len()),
                public_interface: fixed_public(
                    (!net.is_floating()).then(|| net.public_interface().to_string()),
                ),
                public_vip: fixed_public(net.public_vip().map(|ip| ip.to_string())),
                public_gateway: fixed_public(net.public_gateway().map(|ip| ip.to_string())),
                frontend_vip: match net.is_floating() {
                    true => net.private_vip.to_string(),
                    false => public_address.clone(),
                },
                public_address,
                default_route: net.default_route().to_string(),
                vrrp_router_id: net.vrrp_router_id,
                dns_servers: net.dns_servers.iter().map(|ip| ip.to_string()).collect(),
            },
            ports: PortsView {
                api: 6443,
                ingress_http: spec.kubernetes.ingress_http_node_port,
                ingress_https: spec.kubernetes.ingress_https_node_port,
                gateway_status: GATEWAY_STATUS_PORT,
            },
            nodes,
            ssh_authorized_keys: spec.ssh_authorized_keys.clone(),
        })
    }

    pub fn node_context(
        &self,
        spec: &Spec,
        pki: &Pki,
        opts: &RenderOptions,
        node: &Node,
    ) -> NodeContext {
        let this = node_view(spec, node);
        let role = node.role;
        NodeContext {
            cluster: self.cluster.clone(),
            network: self.network.clone(),
            ports: self.ports.clone(),
            masters: self.masters.clone(),
            workers: match role {
                Role::Gateway => self.ingress.clone(),
                _ => Vec::new(),
            },
            hosts: self.hosts(&this),
            etcd_members: self.etcd_members.clone(),
            ssh_authorized_keys: self.ssh_authorized_keys.clone(),
            gateway: (role == Role::Gateway).then(|| self.gateway(node)),
            etcd: (role == Role::Etcd).then(|| self.etcd(spec, opts, node)),
            kubernetes: matches!(role, Role::Master | Role::Worker).then(|| {
                let mut k = self.kubernetes(spec, pki, opts);
                if role == Role::Master {
                    k.encryption_key = Some(pki.encryption_key.clone());
                }
                if spec.first_master().is_some_and(|m| m.name == node.name) {
                    if let Some(view) = &mut k.mariadb {
                        view.passwords = pki.mariadb.clone();
                    }
                }
                k
            }),
            kubeadm: matches!(role, Role::Master | Role::Worker).then(|| KubeadmView {
                may_init: spec.first_master().is_some_and(|m| m.name == node.name),
            }),
            mirrors: mirrors_view(spec, role),
            node: this,
        }
    }

    /// The /etc/hosts entries of `this`: itself and the nodes its role names, in spec order.
    fn hosts(&self, this: &NodeView) -> Vec<NodeView> {
        let named = self
            .named_by_role
            .get(&this.role)
            .map(Vec::as_slice)
            .unwrap_or_default();
        if named.iter().any(|n| n.name == this.name) {
            return named.to_vec();
        }
        let mut hosts = vec![this.clone()];
        hosts.extend(named.iter().cloned());
        hosts
    }

    fn gateway(&self, node: &Node) -> GatewayView {
        let gateways = &self.gateways;
        let index = gateways
            .iter()
            .position(|g| g.name == node.name)
            .unwrap_or(0);
        GatewayView {
            // Distinct priorities only break ties at start; nopreempt keeps the holder.
            // Validation caps the count, so this stays within keepalived's 1-254.
            priority: 150 - 10 * index.min(MAX_GATEWAYS - 1) as u8,
            // VRRPv3 in keepalived takes fractional intervals: failover in about 1.5 s.
            advert_interval: "0.5",
            peers: gateways
                .iter()
                .filter(|g| g.name != node.name)
                .map(|g| g.private_ip.clone())
                .collect(),
        }
    }

    fn etcd(&self, spec: &Spec, opts: &RenderOptions, node: &Node) -> EtcdView {
        let e = &spec.etcd;
        let members = &self.etcd_members;
        let named = |names: &[String]| -> Vec<&NodeView> {
            members.iter().filter(|m| names.contains(&m.name)).collect()
        };
        let everyone: Vec<&NodeView> = members.iter().collect();
        let recovery = opts.etcd_recovery.as_ref();
        // A rebuilt member joins whatever runs; after a recovery, the restoring member
        // founds a cluster of one and the others join it one by one.
        let (initial, state, restore) = match recovery {
            _ if opts.etcd_joining.contains(&node.name) => (everyone, "existing", None),
            Some(r) if r.restored_on.as_deref() == Some(node.name.as_str()) => (
                named(std::slice::from_ref(&node.name)),
                "new",
                Some(RestoreView {
                    snapshot_sha256: r.snapshot_sha256.clone(),
                    bump_revision: RESTORE_BUMP_REVISION,
                }),
            ),
            Some(r) => match r.joined.get(&node.name) {
                Some(names) => (named(names), "existing", None),
                None => (everyone, "new", None),
            },
            None => (everyone, "new", None),
        };
        let download = match e.source {
            EtcdSource::Debian => None,
            EtcdSource::Release => Some(
                versions::etcd(&e.version, e.sha256.as_deref())
                    .through(spec.mirrors.files.as_deref()),
            ),
        };
        EtcdView {
            version: e.version.clone(),
            source: e.source,
            binary: match e.source {
                EtcdSource::Debian => "/usr/bin/etcd",
                EtcdSource::Release => "/usr/local/bin/etcd",
            },
            download,
            initial_cluster: initial
                .iter()
                .map(|m| format!("{}=https://{}:2380", m.name, m.private_ip))
                .collect::<Vec<_>>()
                .join(","),
            initial_cluster_state: state,
            initial_cluster_token: recovery
                .map(|r| r.token.clone())
                .unwrap_or_else(|| format!("{}-etcd", spec.name)),
            restore,
            upload: upload_view(spec, opts, node),
            client_endpoints: "https://127.0.0.1:2379".into(),
            snapshot_schedule: e.snapshot_schedule.clone(),
            snapshot_keep: e.snapshot_keep,
        }
    }

    fn kubernetes(&self, spec: &Spec, pki: &Pki, opts: &RenderOptions) -> KubernetesView {
        let k = &spec.kubernetes;
        let files_mirror = spec.mirrors.files.as_deref();
        let release = versions::kubernetes(&k.version, &k.sha256);
        let (helm_version, helm) = versions::helm(&k.sha256);
        let mut api_cert_sans = vec![
            spec.network.private_vip.to_string(),
            self.network.public_address.clone(),
            format!("api.{}", spec.domain),
        ];
        api_cert_sans.extend(self.masters.iter().map(|m| m.private_ip.clone()));
        KubernetesView {
            version: k.version.clone(),
            containerd_version: k.containerd_version.clone(),
            containerd: versions::containerd(&k.containerd_version, &k.sha256)
                .through(files_mirror),
            pod_cidr: k.pod_cidr.to_string(),
            service_cidr: k.service_cidr.to_string(),
            api_cert_sans,
            binaries: vec![
                BinaryView {
                    name: "kubeadm",
                    version_args: "version -o short",
                    download: release.kubeadm.through(files_mirror),
                },
                BinaryView {
                    name: "kubelet",
                    version_args: "--version",
                    download: release.kubelet.through(files_mirror),
                },
                BinaryView {
                    name: "kubectl",
                    version_args: "version --client",
                    download: release.kubectl.through(files_mirror),
                },
            ],
            crictl_version: release.crictl_version,
            crictl: release.crictl.through(files_mirror),
            cni_plugins_version: release.cni_plugins_version,
            cni_plugins: release.cni_plugins.through(files_mirror),
            helm_version,
            helm: helm.through(files_mirror),
            pause_image: versions::pause_image(),
            flannel_image: versions::flannel_image(),
            flannel_cni_plugin_image: versions::flannel_cni_plugin_image(),
            local_path: LocalPathView::new(&spec.addons.local_path),
            mariadb: MariadbView::new(&spec.addons.mariadb),
            addons: spec.addons.all(),
            bootstrap_token: Some(
                opts.join_token
                    .clone()
                    .unwrap_or_else(|| pki.bootstrap_token.clone()),
            ),
            join_token_ttl: format!("{}m0s", k.join_token_ttl_minutes),
            encrypt_resources: k.encrypt_resources.clone(),
            encryption_key: None,
            ca_cert_hash: pki.ca_cert_hash.clone(),
            balancers: self
                .gateways
                .iter()
                .map(|g| g.private_ip.clone())
                .chain([spec.network.private_vip.to_string()])
                .collect(),
        }
    }
}

fn mirrors_view(spec: &Spec, role: Role) -> MirrorsView {
    let m = &spec.mirrors;
    let trim = |u: &str| u.trim_end_matches('/').to_string();
    let debian = m.debian.as_ref().map(|d| DebianMirrorView {
        url: trim(&d.url),
        security_url: trim(d.security_url.as_deref().unwrap_or(&d.url)),
        signed_by: if d.key.is_some() {
            MIRROR_KEY_PATH
        } else {
            "/usr/share/keyrings/debian-archive-keyring.gpg"
        },
        key: d.key.as_ref().map(|k| format!("{}\n", k.trim())),
    });
    let registries = match (&m.registry, role) {
        (Some(r), Role::Master | Role::Worker) => versions::REGISTRIES
            .iter()
            .map(|(upstream, server)| RegistryMirrorView {
                upstream,
                server,
                endpoint: format!("{}/v2/{upstream}", trim(r)),
            })
            .collect(),
        _ => Vec::new(),
    };
    MirrorsView { debian, registries }
}

/// What cluster-wide files (the same on every node) see.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterContext<'a> {
    pub cluster: &'a ClusterView,
    pub network: &'a NetworkView,
    pub ports: &'a PortsView,
    pub nodes: &'a [NodeView],
}

impl Shared {
    pub fn cluster_context(&self) -> ClusterContext<'_> {
        ClusterContext {
            cluster: &self.cluster,
            network: &self.network,
            ports: &self.ports,
            nodes: &self.nodes,
        }
    }
}
