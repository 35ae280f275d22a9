//! paasgen's Kubernetes client for the day-2 verbs: the API through the gateways'
//! public VIP, with the operator's cluster-admin certificate (the one in
//! admin.kubeconfig). Only the few calls node replacement needs.

use crate::http::send_retrying;
use crate::pki::Pki;
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

pub struct KubeAdmin {
    base: String,
    client: reqwest::Client,
}

/// What the API says of a Node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    Absent,
    NotReady,
    Ready,
}

/// A kubelet renews its Node lease every 10 s: older than this, it is not answering
/// (the Node's Ready condition lags up to 40 s behind a node that died).
const LEASE_STALE: Duration = Duration::from_secs(30);

impl KubeAdmin {
    /// A client of the API at `address`:6443 (the cluster's public address).
    pub fn new(address: std::net::Ipv4Addr, pki: &Pki, timeout: Duration) -> Result<KubeAdmin> {
        let ca = reqwest::Certificate::from_pem(pki.kubernetes_ca.cert_pem.as_bytes())?;
        let identity = reqwest::Identity::from_pem(
            format!("{}{}", pki.admin.cert_pem, pki.admin.key_pem).as_bytes(),
        )
        .context("the admin client certificate")?;
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .identity(identity)
            .connect_timeout(timeout)
            .timeout(timeout)
            .build()?;
        Ok(KubeAdmin {
            base: format!("https://{address}:6443"),
            client,
        })
    }

    async fn send(&self, request: reqwest::RequestBuilder, what: &str) -> Result<(u16, Value)> {
        let response = send_retrying(request, what).await?;
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        Ok((status, body))
    }

    pub async fn node_state(&self, name: &str) -> Result<NodeState> {
        let url = format!("{}/api/v1/nodes/{name}", self.base);
        let (status, node) = self.send(self.client.get(url), "reading the Node").await?;
        match status {
            404 => Ok(NodeState::Absent),
            200 => {
                let ready = node["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True");
                Ok(if ready {
                    NodeState::Ready
                } else {
                    NodeState::NotReady
                })
            }
            s => bail!("reading Node {name}: HTTP {s}: {}", node["message"]),
        }
    }

    /// The addresses behind the `kubernetes` Service: the API servers that hold a
    /// lease in etcd (each renews its own every 10 s).
    pub async fn api_endpoints(&self) -> Result<Vec<String>> {
        let url = format!(
            "{}/api/v1/namespaces/default/endpoints/kubernetes",
            self.base
        );
        let (status, endpoints) = self
            .send(self.client.get(url), "reading the kubernetes endpoints")
            .await?;
        if status != 200 {
            bail!(
                "reading the kubernetes endpoints: HTTP {status}: {}",
                endpoints["message"]
            );
        }
        let mut ips: Vec<String> = endpoints["subsets"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s["addresses"].as_array().into_iter().flatten())
            .filter_map(|a| a["ip"].as_str().map(str::to_string))
            .collect();
        ips.sort();
        Ok(ips)
    }

    /// Whether the Node's kubelet renewed its lease lately: it can still be drained.
    pub async fn kubelet_alive(&self, name: &str) -> Result<bool> {
        let url = format!(
            "{}/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}",
            self.base
        );
        let (status, lease) = self
            .send(self.client.get(url), "reading the Node lease")
            .await?;
        if status == 404 {
            return Ok(false);
        }
        if status != 200 {
            bail!(
                "reading the lease of {name}: HTTP {status}: {}",
                lease["message"]
            );
        }
        let Some(renewed) = lease["spec"]["renewTime"].as_str() else {
            return Ok(false);
        };
        let renewed =
            time::OffsetDateTime::parse(renewed, &time::format_description::well_known::Rfc3339)
                .with_context(|| format!("lease renewTime `{renewed}`"))?;
        let age = time::OffsetDateTime::now_utc() - renewed;
        Ok(age < LEASE_STALE)
    }

    /// Marks the Node unschedulable and evicts its pods (not DaemonSet or static ones),
    /// honouring PodDisruptionBudgets, until none is left or `limit` passes.
    pub async fn drain(&self, name: &str, limit: Duration) -> Result<usize> {
        let url = format!("{}/api/v1/nodes/{name}", self.base);
        let patch = self
            .client
            .patch(url)
            .header("Content-Type", "application/merge-patch+json")
            .body(json!({"spec": {"unschedulable": true}}).to_string());
        let (status, body) = self.send(patch, "cordoning the Node").await?;
        if status != 200 {
            bail!("cordoning {name}: HTTP {status}: {}", body["message"]);
        }
        let start = Instant::now();
        let mut evicted = 0;
        loop {
            let pods = self.evictable_pods(name).await?;
            if pods.is_empty() {
                return Ok(evicted);
            }
            if start.elapsed() > limit {
                bail!(
                    "{name} still runs {} pod(s) after {}s of draining: {}",
                    pods.len(),
                    limit.as_secs(),
                    pods.iter()
                        .map(|(ns, p)| format!("{ns}/{p}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            for (ns, pod) in &pods {
                let url = format!("{}/api/v1/namespaces/{ns}/pods/{pod}/eviction", self.base);
                let eviction = json!({
                    "apiVersion": "policy/v1",
                    "kind": "Eviction",
                    "metadata": {"name": pod, "namespace": ns},
                });
                let (status, _) = self
                    .send(self.client.post(url).json(&eviction), "evicting a pod")
                    .await?;
                // 429: a disruption budget says not now; 404: already gone.
                if status == 201 || status == 200 {
                    evicted += 1;
                }
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    /// Pods on `node` that a drain moves: not DaemonSet-owned, not static (mirror) pods,
    /// not already finished.
    async fn evictable_pods(&self, node: &str) -> Result<Vec<(String, String)>> {
        let url = format!("{}/api/v1/pods", self.base);
        let request = self
            .client
            .get(url)
            .query(&[("fieldSelector", format!("spec.nodeName={node}"))]);
        let (status, list) = self.send(request, "listing the Node's pods").await?;
        if status != 200 {
            bail!("listing pods on {node}: HTTP {status}: {}", list["message"]);
        }
        Ok(list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| {
                let daemon = p["metadata"]["ownerReferences"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|o| o["kind"] == "DaemonSet");
                let mirror = !p["metadata"]["annotations"]["kubernetes.io/config.mirror"].is_null();
                let done = matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"));
                // Evicted and terminating: its controller already made a replacement.
                let leaving = !p["metadata"]["deletionTimestamp"].is_null();
                !daemon && !mirror && !done && !leaving
            })
            .filter_map(|p| {
                Some((
                    p["metadata"]["namespace"].as_str()?.to_string(),
                    p["metadata"]["name"].as_str()?.to_string(),
                ))
            })
            .collect())
    }

    /// Removes the Node object (its pods are then cleaned up by the cluster).
    /// Mints a join token for `node` that expires in `ttl` (a bootstrap-token Secret,
    /// as `kubeadm token create` makes): its `id.secret`.
    pub async fn create_join_token(&self, node: &str, ttl: Duration) -> Result<String> {
        let token = crate::pki::new_bootstrap_token();
        let (id, secret) = token.split_once('.').expect("id.secret");
        let expires = time::OffsetDateTime::now_utc() + ttl;
        let expiration = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            expires.year(),
            u8::from(expires.month()),
            expires.day(),
            expires.hour(),
            expires.minute(),
            expires.second()
        );
        let body = json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": format!("bootstrap-token-{id}"), "namespace": "kube-system"},
            "type": "bootstrap.kubernetes.io/token",
            "stringData": {
                "description": format!("paasgen: {node} joins"),
                "token-id": id,
                "token-secret": secret,
                "expiration": expiration,
                "usage-bootstrap-authentication": "true",
                "usage-bootstrap-signing": "true",
                "auth-extra-groups": "system:bootstrappers:kubeadm:default-node-token",
            },
        });
        let url = format!("{}/api/v1/namespaces/kube-system/secrets", self.base);
        let (status, answer) = self
            .send(self.client.post(url).json(&body), "creating a join token")
            .await?;
        match status {
            201 => Ok(token),
            s => bail!(
                "creating a join token for {node}: HTTP {s}: {}",
                answer["message"]
            ),
        }
    }

    /// Deletes the join token with this `id.secret` (gone already is fine).
    pub async fn delete_join_token(&self, token: &str) -> Result<()> {
        let id = token.split('.').next().unwrap_or_default();
        let url = format!(
            "{}/api/v1/namespaces/kube-system/secrets/bootstrap-token-{id}",
            self.base
        );
        self.delete(url, &format!("join token {id}")).await
    }

    pub async fn delete_node(&self, name: &str) -> Result<()> {
        let url = format!("{}/api/v1/nodes/{name}", self.base);
        self.delete(url, &format!("Node {name}")).await
    }

    /// DELETE `url`; gone already is fine.
    async fn delete(&self, url: String, what: &str) -> Result<()> {
        let (status, body) = self
            .send(self.client.delete(url), &format!("deleting {what}"))
            .await?;
        match status {
            200 | 202 | 404 => Ok(()),
            s => bail!("deleting {what}: HTTP {s}: {}", body["message"]),
        }
    }
}
