//! Spec + PKI -> one `#cloud-config` document per node. A pure function of its inputs:
//! the same spec and PKI give the same bytes.

mod cloud_config;
mod context;
mod decode;
mod files;
mod join_token;
pub mod nocloud;
mod output;
mod templates;

pub use cloud_config::{base64_len, TooLarge, NOVA_USER_DATA_LIMIT};
pub use context::{
    public_address, EtcdRecovery, OffsiteTarget, RenderOptions, GATEWAY_STATUS_PORT,
};
pub use decode::{decode_files, DecodedFile};
pub use files::File;
pub use join_token::{config_sha256, map_join_tokens};
pub use output::{
    previous_manifest, read_manifest, sha256_hex, write_output, Manifest, ManifestNetwork,
    ManifestNode,
};
pub use templates::Templates;

use crate::pki::Pki;
use crate::spec::{Role, Spec};
use anyhow::{Context as _, Result};
use std::net::Ipv4Addr;

/// The rendered user-data of one node.
#[derive(Debug, Clone)]
pub struct NodeDocument {
    pub name: String,
    pub role: Role,
    pub private_ip: Ipv4Addr,
    pub public_ip: Option<Ipv4Addr>,
    pub user_data: String,
}

/// Renders every node of `spec`, in spec order.
pub fn render(spec: &Spec, pki: &Pki, opts: &RenderOptions) -> Result<Vec<NodeDocument>> {
    let t = Templates::load()?;
    let shared = context::Shared::new(spec, opts)?;
    // Nodes render independently: in parallel, a run of nodes per thread, joined in
    // spec order (so the first error is the first failing node's, as one by one).
    let nodes: Vec<&crate::spec::Node> = spec.nodes().collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(nodes.len().div_ceil(RENDER_BATCH))
        .max(1);
    let batch = nodes.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let runs: Vec<_> = nodes
            .chunks(batch)
            .map(|run| scope.spawn(|| render_nodes(&t, &shared, spec, pki, opts, run)))
            .collect();
        let mut docs = Vec::with_capacity(nodes.len());
        for run in runs {
            match run.join() {
                Ok(rendered) => docs.extend(rendered?),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        Ok(docs)
    })
}

/// Fewer nodes than this are not worth a thread of their own.
const RENDER_BATCH: usize = 64;

fn render_nodes(
    t: &Templates,
    shared: &context::Shared,
    spec: &Spec,
    pki: &Pki,
    opts: &RenderOptions,
    nodes: &[&crate::spec::Node],
) -> Result<Vec<NodeDocument>> {
    let mut gz = cloud_config::GzCache::default();
    nodes
        .iter()
        .map(|node| {
            let node_ctx = shared.node_context(spec, pki, opts, node);
            let mut ctx = tera::Context::from_serialize(&node_ctx)?;
            let files = files::for_node(t, &ctx, &node_ctx, pki, spec, node)
                .with_context(|| format!("node {}", node.name))?;
            let template = format!("roles/{}.yaml.tera", node.role);
            let user_data =
                cloud_config::assemble(t, &template, &mut ctx, &node.name, &files, &mut gz)?;
            Ok(NodeDocument {
                name: node.name.clone(),
                role: node.role,
                private_ip: node.private_ip,
                public_ip: node.public_ip,
                user_data,
            })
        })
        .collect()
}

/// The ClusterConfiguration of the masters (kubeadm keeps it in the kube-system/kubeadm-config
/// ConfigMap, and `kubeadm join --control-plane` takes it from there, not from the node).
pub fn cluster_configuration(spec: &Spec, pki: &Pki, opts: &RenderOptions) -> Result<String> {
    let master = spec
        .first_master()
        .context("the spec has no master, so no ClusterConfiguration")?;
    let shared = context::Shared::new(spec, opts)?;
    let ctx = tera::Context::from_serialize(shared.node_context(spec, pki, opts, master))?;
    Templates::load()?.render("files/kubeadm-cluster-configuration.yaml.tera", &ctx)
}

/// The operator's kubeconfig (cluster-admin through the public VIP or floating IP).
pub fn admin_kubeconfig(spec: &Spec, pki: &Pki, opts: &RenderOptions) -> Result<String> {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let shared = context::Shared::new(spec, opts)?;
    let mut value = serde_json::to_value(shared.cluster_context())?;
    value["ca_data"] = b64(&pki.kubernetes_ca.cert_pem).into();
    value["cert_data"] = b64(&pki.admin.cert_pem).into();
    value["key_data"] = b64(&pki.admin.key_pem).into();
    Templates::load()?.render_value("state/admin.kubeconfig.tera", &value)
}
