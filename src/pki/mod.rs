//! The cluster's PKI, generated once and kept in the state directory.
//!
//! `Pki::ensure` loads what exists, issues only what is missing or no longer matches the
//! spec, and keeps every change in memory until `save`: a failed render writes nothing.
//! A CA is never generated over an existing one.

mod check;
pub mod inspect;
mod issue;
mod store;

pub use inspect::{describe_all, hex, signed_by, spki_sha256, summarize, CertSummary};
pub use issue::{Profile, Usage};
pub use store::new_bootstrap_token;

use crate::lock::StateLock;
use crate::spec::{Role, Spec};
use anyhow::Result;
use std::collections::BTreeMap;
use std::path::Path;
use store::Store;

/// A certificate and its private key, PEM encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertKey {
    pub cert_pem: String,
    pub key_pem: String,
}

/// The service-account signing key pair (no certificate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPairPem {
    pub private_pem: String,
    pub public_pem: String,
}

/// What `ensure` did to one item, for the user's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Created(String),
    Reissued { name: String, why: String },
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Created(name) => write!(f, "created {name}"),
            Change::Reissued { name, why } => write!(f, "re-issued {name}: {why}"),
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct MariadbPasswords {
    pub root: String,
    pub replication: String,
}

#[derive(Debug, Clone)]
pub struct Pki {
    pub etcd_ca: CertKey,
    pub kubernetes_ca: CertKey,
    pub front_proxy_ca: CertKey,
    pub service_account: KeyPairPem,
    /// Per etcd node: server certificate (clients -> etcd).
    pub etcd_server: BTreeMap<String, CertKey>,
    /// Per etcd node: peer certificate (etcd <-> etcd).
    pub etcd_peer: BTreeMap<String, CertKey>,
    pub apiserver_etcd_client: CertKey,
    pub etcd_healthcheck_client: CertKey,
    /// paasgen's own etcd client (rebuild, backup, recover): kept in the state dir only.
    pub etcd_admin_client: CertKey,
    /// The operator's cluster-admin client certificate (for admin.kubeconfig).
    pub admin: CertKey,
    /// kubeadm bootstrap token `[a-z0-9]{6}.[a-z0-9]{16}` for joins.
    pub bootstrap_token: String,
    /// The API servers' key for Secrets at rest (secretbox, base64): masters only.
    pub encryption_key: String,
    /// sha256 of the Kubernetes CA's SubjectPublicKeyInfo, as kubeadm's discovery wants it.
    pub ca_cert_hash: String,
    /// MariaDB's root and replication passwords, when `addons.mariadb` is on: the first
    /// master's user-data carries them as a Secret.
    pub mariadb: Option<MariadbPasswords>,
    store: Store,
}

/// Subject alternative names of an etcd member: how peers and clients reach it.
fn etcd_sans(spec: &Spec, name: &str, ip: std::net::Ipv4Addr) -> Vec<String> {
    let node = spec.node(name).expect("etcd member is a node of the spec");
    vec![
        ip.to_string(),
        name.to_string(),
        spec.fqdn(node),
        "127.0.0.1".into(),
        "localhost".into(),
    ]
}

impl Pki {
    /// Loads the PKI under `state_dir/pki` (checking every item), filling in what the
    /// spec needs and is missing. Changes stay in memory until `save`, so read-only verbs
    /// use this too and simply never save.
    pub fn ensure(state_dir: &Path, spec: &Spec) -> Result<Pki> {
        Pki::build(Store::open(state_dir)?, spec)
    }

    /// `ensure`, re-issuing also the leaves that expire within `within` (an upgrade that
    /// renews certificates by replacing the nodes that carry them).
    pub fn ensure_renewing(state_dir: &Path, spec: &Spec, within: time::Duration) -> Result<Pki> {
        Pki::build(Store::open(state_dir)?.renewing(within), spec)
    }

    /// A PKI made up in memory, never saved: for checking that a spec renders.
    pub fn throwaway(spec: &Spec) -> Result<Pki> {
        Pki::build(Store::throwaway(), spec)
    }

    fn build(mut store: Store, spec: &Spec) -> Result<Pki> {
        let etcd_ca = store.ca("etcd/ca", "etcd-ca")?;
        let kubernetes_ca = store.ca("ca", "kubernetes")?;
        let front_proxy_ca = store.ca("front-proxy-ca", "front-proxy-ca")?;
        let service_account = store.key_pair("sa")?;

        let mut etcd_server = BTreeMap::new();
        let mut etcd_peer = BTreeMap::new();
        for node in spec.nodes_with_role(Role::Etcd) {
            let sans = etcd_sans(spec, &node.name, node.private_ip);
            let server = Profile::new(&node.name, Usage::Server, sans.clone());
            let peer = Profile::new(&node.name, Usage::Peer, sans);
            etcd_server.insert(
                node.name.clone(),
                store.leaf(
                    &format!("etcd/{}-server", node.name),
                    &server,
                    &etcd_ca,
                    "etcd/ca",
                )?,
            );
            etcd_peer.insert(
                node.name.clone(),
                store.leaf(
                    &format!("etcd/{}-peer", node.name),
                    &peer,
                    &etcd_ca,
                    "etcd/ca",
                )?,
            );
        }
        let apiserver_etcd_client = store.leaf(
            "apiserver-etcd-client",
            &Profile::new("kube-apiserver-etcd-client", Usage::Client, vec![]),
            &etcd_ca,
            "etcd/ca",
        )?;
        let etcd_healthcheck_client = store.leaf(
            "etcd/healthcheck-client",
            &Profile::new("kube-etcd-healthcheck-client", Usage::Client, vec![]),
            &etcd_ca,
            "etcd/ca",
        )?;
        let etcd_admin_client = store.leaf(
            "etcd/paasgen-admin-client",
            &Profile::new("paasgen-etcd-admin", Usage::Client, vec![]),
            &etcd_ca,
            "etcd/ca",
        )?;
        let admin = store.leaf(
            "admin",
            &Profile::new("paasgen-admin", Usage::Client, vec![]).organization("system:masters"),
            &kubernetes_ca,
            "ca",
        )?;
        let bootstrap_token = store.bootstrap_token()?;
        let encryption_key = store.encryption_key()?;
        let ca_cert_hash = format!("sha256:{}", spki_sha256(&kubernetes_ca.cert_pem)?);
        let mariadb = if spec.addons.mariadb.enabled {
            Some(MariadbPasswords {
                root: store.password("mariadb-root-password", "MariaDB root password")?,
                replication: store.password(
                    "mariadb-replication-password",
                    "MariaDB replication password",
                )?,
            })
        } else {
            None
        };
        Ok(Pki {
            etcd_ca,
            kubernetes_ca,
            front_proxy_ca,
            service_account,
            etcd_server,
            etcd_peer,
            apiserver_etcd_client,
            etcd_healthcheck_client,
            etcd_admin_client,
            admin,
            bootstrap_token,
            encryption_key,
            ca_cert_hash,
            mariadb,
            store,
        })
    }

    /// What `ensure` created or re-issued (empty when everything was reused).
    pub fn changes(&self) -> &[Change] {
        self.store.changes()
    }

    /// Writes new and re-issued items (keys 0600, dirs 0700) in one transaction, under the
    /// state dir's lock; untouched files stay as they are.
    pub fn save(&self, lock: &StateLock) -> Result<()> {
        self.store.save(lock)
    }

    /// Queues an extra file in the state dir (e.g. admin.kubeconfig), written by `save`
    /// only when its content differs.
    pub fn stage_file(&mut self, relative: &str, bytes: Vec<u8>, private: bool) -> Result<()> {
        self.store.stage_file(relative, bytes, private)
    }
}
