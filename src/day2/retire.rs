//! A master or worker leaves before its server goes: requests under way finish and new
//! ones go elsewhere, so nobody outside sees it leave.
//!
//! After the drain, paasgen annotates the Node `paasgen.io/leave-load-balancer`; the
//! node itself (paasgen-leave-load-balancer, from its user-data) then refuses new
//! connections from the gateways to its API and ingress ports, which makes haproxy's
//! checks take it out and haproxy's retries send those clients to another node, while
//! connections already open are served to the end; it says so in
//! `paasgen.io/left-load-balancer`. Then the server is stopped cleanly (the API server
//! waits `shutdown-delay-duration` before it closes) and, for a master, paasgen waits
//! until its address has left the `kubernetes` EndpointSlice before deleting it.
//!
//! A master's replacement joins with the ClusterConfiguration of the
//! kube-system/kubeadm-config ConfigMap, which paasgen sets to the spec's first; it
//! counts as back once its API server's pod is Ready (its kubelet probes /readyz on
//! the master's own address) and runs the spec's version.

use super::replace::Replacer;
use super::setup::render_options;
use crate::kube_admin::KubeAdmin;
use crate::render;
use crate::spec::{Node, Role};
use anyhow::{bail, Result};
use std::time::{Duration, Instant};

pub const LEAVE: &str = "paasgen.io/leave-load-balancer";
pub const LEFT: &str = "paasgen.io/left-load-balancer";

/// How long a node may take to confirm it left: haproxy needs about 3 s (two failed
/// checks a second apart), the node's watch of its Node a moment.
const LEAVE_CONFIRMED: Duration = Duration::from_secs(30);
/// How long a clean stop is waited for: the pods' SIGTERM and the API server's
/// `shutdown-delay-duration` (10 s) are over by then; what may still hold the poweroff
/// (containerd's shims, kept for the final kill of systemd-shutdown, up to 90 s) serves
/// nobody.
const STOP_GRACE: Duration = Duration::from_secs(30);
/// How long the API servers may take to drop a stopped master from the `kubernetes`
/// EndpointSlice (it removes itself when it stops cleanly; otherwise its lease lapses
/// after 15 s).
const ENDPOINT_GONE: Duration = Duration::from_secs(60);

impl Replacer<'_> {
    /// Takes `node` out of the gateways' load balancing, stops its server cleanly and,
    /// for a master, waits until the API no longer sends clients to it. `alive`: its
    /// kubelet answers (a dead node cannot take part; its server is deleted as it is).
    pub async fn retire(&self, kube: &KubeAdmin, node: &Node, alive: bool) -> Result<()> {
        if alive {
            self.leave_load_balancer(kube, &node.name).await?;
        }
        let why = match node.role {
            Role::Master => "its API server finishes the requests under way",
            _ => "its kubelet stops the pods that are left",
        };
        if !self
            .stop_if_running(&node.name, why, Some(STOP_GRACE))
            .await?
            || node.role != Role::Master
        {
            return Ok(());
        }
        let ip = node.private_ip.to_string();
        let start = Instant::now();
        while kube.api_slice_addresses().await?.contains(&ip) {
            if start.elapsed() > ENDPOINT_GONE {
                eprintln!(
                    "warning: {ip} ({}) is still in the kubernetes EndpointSlice {}s after its server stopped; going on",
                    node.name,
                    ENDPOINT_GONE.as_secs()
                );
                return Ok(());
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        println!(
            "kubernetes: {} left the kubernetes EndpointSlice ({:.0}s after it stopped)",
            node.name,
            start.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// Asks `node` to leave the load balancer and waits for it to confirm. A node that
    /// does not (launched before paasgen did this) is stopped all the same: haproxy
    /// then notices at its next checks, and retries what fails to connect elsewhere.
    async fn leave_load_balancer(&self, kube: &KubeAdmin, node: &str) -> Result<()> {
        kube.annotate_node(node, LEFT, None).await?;
        kube.annotate_node(node, LEAVE, Some("true")).await?;
        let start = Instant::now();
        while kube.node_annotation(node, LEFT).await?.is_none() {
            if start.elapsed() > LEAVE_CONFIRMED {
                eprintln!(
                    "warning: {node} did not confirm within {}s that it left the gateways' load balancing; stopping it all the same",
                    LEAVE_CONFIRMED.as_secs()
                );
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        println!(
            "kubernetes: {node} left the gateways' load balancing ({:.1}s)",
            start.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// Makes kubeadm-config's ClusterConfiguration the spec's, for `node` (a master) to
    /// join with. When the API does not answer, the first master goes on (it inits, or
    /// joins once the others are back); another master could not join anyway.
    pub async fn sync_kubeadm_config(&self, kube: &KubeAdmin, node: &Node) -> Result<()> {
        let text =
            render::cluster_configuration(self.spec, self.pki, &render_options(self.state_dir)?)?;
        match kube
            .sync_config_map(
                "kube-system",
                "kubeadm-config",
                "ClusterConfiguration",
                &text,
            )
            .await
        {
            Ok(true) => {
                println!(
                    "kubernetes: kubeadm-config now holds the spec's ClusterConfiguration (Kubernetes v{})",
                    self.spec.kubernetes.version
                );
                Ok(())
            }
            Ok(false) => Ok(()),
            Err(e) if self.is_first_master(node) => {
                eprintln!(
                    "warning: kubeadm-config not updated ({e:#}); {} goes on",
                    node.name
                );
                Ok(())
            }
            Err(e) => Err(e.context(format!(
                "{} joins with kubeadm-config's ClusterConfiguration, which must be the spec's",
                node.name
            ))),
        }
    }

    /// Waits until `node`'s API server pod is Ready and runs the spec's version.
    pub async fn wait_api_server_ready(&self, kube: &KubeAdmin, node: &str) -> Result<()> {
        let pod = format!("kube-apiserver-{node}");
        let want = format!(":v{}", self.spec.kubernetes.version);
        let start = Instant::now();
        loop {
            let seen = kube.pod_ready("kube-system", &pod).await.ok().flatten();
            if let Some((true, image)) = &seen {
                if image.ends_with(&want) {
                    println!(
                        "kubernetes: {pod} Ready ({image}) after {:.0}s",
                        start.elapsed().as_secs_f64()
                    );
                    return Ok(());
                }
            }
            if start.elapsed() > self.with.wait {
                bail!(
                    "{pod} is not Ready at v{} within {}s (last seen: {})",
                    self.spec.kubernetes.version,
                    self.with.wait.as_secs(),
                    match seen {
                        None => "no such pod".to_string(),
                        Some((ready, image)) => format!("{image}, ready: {ready}"),
                    }
                );
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
}
