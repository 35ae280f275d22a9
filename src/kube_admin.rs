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

/// A DaemonSet or Deployment, by namespace and name.
pub struct Workload {
    pub kind: WorkloadKind,
    pub namespace: &'static str,
    pub name: &'static str,
}

#[derive(Debug, Clone, Copy)]
pub enum WorkloadKind {
    DaemonSet,
    Deployment,
}

impl Workload {
    fn url(&self, base: &str) -> String {
        let kind = match self.kind {
            WorkloadKind::DaemonSet => "daemonsets",
            WorkloadKind::Deployment => "deployments",
        };
        format!(
            "{base}/apis/apps/v1/namespaces/{}/{kind}/{}",
            self.namespace, self.name
        )
    }
}

impl std::fmt::Display for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// A pod a drain moves.
struct DrainPod {
    namespace: String,
    name: String,
    /// Made by a controller (a ReplicaSet, StatefulSet, Job...), which starts it again
    /// elsewhere.
    controlled: bool,
}

/// The `items` of a list answer.
fn items(list: &Value) -> impl Iterator<Item = &Value> {
    list["items"].as_array().into_iter().flatten()
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

    /// Marks the Node unschedulable and evicts its pods (not DaemonSet or static ones)
    /// through the Eviction API, as `kubectl drain` does: a disruption budget's "not now"
    /// (429) is retried until `limit`, and said once per pod; a pod no controller would
    /// make again is refused before anything changes, unless `force` (then it is lost).
    pub async fn drain(&self, name: &str, limit: Duration, force: bool) -> Result<usize> {
        let bare: Vec<String> = self
            .evictable_pods(name)
            .await?
            .into_iter()
            .filter(|p| !p.controlled)
            .map(|p| format!("{}/{}", p.namespace, p.name))
            .collect();
        if !bare.is_empty() && !force {
            bail!(
                "{name} runs pod(s) that no controller would start again elsewhere: {}; delete them, or pass --force to lose them",
                bare.join(", ")
            );
        }
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
        let mut held: std::collections::BTreeSet<String> = Default::default();
        loop {
            let pods = self.evictable_pods(name).await?;
            if pods.is_empty() {
                return Ok(evicted);
            }
            if start.elapsed() > limit {
                bail!(
                    "{name} still runs {} pod(s) after {}s of draining: {}{}",
                    pods.len(),
                    limit.as_secs(),
                    pods.iter()
                        .map(|p| format!("{}/{}", p.namespace, p.name))
                        .collect::<Vec<_>>()
                        .join(", "),
                    if held.is_empty() {
                        String::new()
                    } else {
                        " (held by their disruption budgets: raise --wait, or let the budget allow it)".to_string()
                    }
                );
            }
            for pod in &pods {
                let (ns, pod) = (&pod.namespace, &pod.name);
                let url = format!("{}/api/v1/namespaces/{ns}/pods/{pod}/eviction", self.base);
                let eviction = json!({
                    "apiVersion": "policy/v1",
                    "kind": "Eviction",
                    "metadata": {"name": pod, "namespace": ns},
                });
                let (status, answer) = self
                    .send(self.client.post(url).json(&eviction), "evicting a pod")
                    .await?;
                match status {
                    200 | 201 => evicted += 1,
                    // A disruption budget says not now: asked again next round.
                    429 => {
                        if held.insert(format!("{ns}/{pod}")) {
                            println!(
                                "kubernetes: waiting to evict {ns}/{pod}: {} (retrying for up to {}s)",
                                answer["message"].as_str().unwrap_or("a disruption budget allows none now"),
                                limit.saturating_sub(start.elapsed()).as_secs()
                            );
                        }
                    }
                    // Already gone.
                    404 => {}
                    s => bail!("evicting {ns}/{pod}: HTTP {s}: {}", answer["message"]),
                }
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    /// Pods on `node` that a drain moves: not DaemonSet-owned, not static (mirror) pods,
    /// not already finished.
    async fn evictable_pods(&self, node: &str) -> Result<Vec<DrainPod>> {
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
                Some(DrainPod {
                    namespace: p["metadata"]["namespace"].as_str()?.to_string(),
                    name: p["metadata"]["name"].as_str()?.to_string(),
                    controlled: p["metadata"]["ownerReferences"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|o| o["controller"] == true),
                })
            })
            .collect())
    }

    /// Sets (or, with `None`, removes) an annotation of Node `name`.
    pub async fn annotate_node(&self, name: &str, key: &str, value: Option<&str>) -> Result<()> {
        let url = format!("{}/api/v1/nodes/{name}", self.base);
        let patch = self
            .client
            .patch(url)
            .header("Content-Type", "application/merge-patch+json")
            .body(json!({"metadata": {"annotations": {key: value}}}).to_string());
        let (status, body) = self.send(patch, "annotating the Node").await?;
        match status {
            200 => Ok(()),
            s => bail!("annotating Node {name}: HTTP {s}: {}", body["message"]),
        }
    }

    /// An annotation of Node `name` (None: no such annotation, or no such Node).
    pub async fn node_annotation(&self, name: &str, key: &str) -> Result<Option<String>> {
        let url = format!("{}/api/v1/nodes/{name}", self.base);
        let (status, node) = self.send(self.client.get(url), "reading the Node").await?;
        match status {
            404 => Ok(None),
            200 => Ok(node["metadata"]["annotations"][key]
                .as_str()
                .map(str::to_string)),
            s => bail!("reading Node {name}: HTTP {s}: {}", node["message"]),
        }
    }

    /// The addresses the `kubernetes` Service's EndpointSlices list (what in-cluster
    /// clients are sent to).
    pub async fn api_slice_addresses(&self) -> Result<Vec<String>> {
        let url = format!(
            "{}/apis/discovery.k8s.io/v1/namespaces/default/endpointslices",
            self.base
        );
        let request = self
            .client
            .get(url)
            .query(&[("labelSelector", "kubernetes.io/service-name=kubernetes")]);
        let (status, list) = self
            .send(request, "reading the kubernetes EndpointSlices")
            .await?;
        if status != 200 {
            bail!(
                "reading the kubernetes EndpointSlices: HTTP {status}: {}",
                list["message"]
            );
        }
        let mut ips: Vec<String> = items(&list)
            .flat_map(|slice| slice["endpoints"].as_array().into_iter().flatten())
            .flat_map(|e| e["addresses"].as_array().into_iter().flatten())
            .filter_map(|a| a.as_str().map(str::to_string))
            .collect();
        ips.sort();
        Ok(ips)
    }

    /// Whether pod `namespace/name` is Ready (its readiness probe passes), and its
    /// first container's image; None when there is no such pod.
    pub async fn pod_ready(&self, namespace: &str, name: &str) -> Result<Option<(bool, String)>> {
        let url = format!("{}/api/v1/namespaces/{namespace}/pods/{name}", self.base);
        let (status, pod) = self.send(self.client.get(url), "reading a pod").await?;
        match status {
            404 => Ok(None),
            200 => {
                let ready = pod["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True");
                let image = pod["spec"]["containers"][0]["image"]
                    .as_str()
                    .unwrap_or_default();
                Ok(Some((ready, image.to_string())))
            }
            s => bail!(
                "reading pod {namespace}/{name}: HTTP {s}: {}",
                pod["message"]
            ),
        }
    }

    /// Each Node's name and the version its kubelet reports (`v` dropped).
    pub async fn kubelet_versions(&self) -> Result<Vec<(String, String)>> {
        let url = format!("{}/api/v1/nodes", self.base);
        let (status, list) = self.send(self.client.get(url), "listing the Nodes").await?;
        if status != 200 {
            bail!("listing the Nodes: HTTP {status}: {}", list["message"]);
        }
        Ok(items(&list)
            .filter_map(|n| {
                let name = n["metadata"]["name"].as_str()?;
                let version = n["status"]["nodeInfo"]["kubeletVersion"].as_str()?;
                Some((
                    name.to_string(),
                    version.trim_start_matches('v').to_string(),
                ))
            })
            .collect())
    }

    /// The image of each running control-plane static pod of `component`
    /// (kube-apiserver, ...), by Node: what the pods run, not what a spec asks.
    pub async fn control_plane_images(&self, component: &str) -> Result<Vec<(String, String)>> {
        let url = format!("{}/api/v1/namespaces/kube-system/pods", self.base);
        let request = self.client.get(url).query(&[(
            "labelSelector",
            format!("component={component},tier=control-plane"),
        )]);
        let (status, list) = self.send(request, "listing control-plane pods").await?;
        if status != 200 {
            bail!(
                "listing {component} pods: HTTP {status}: {}",
                list["message"]
            );
        }
        Ok(items(&list)
            .filter_map(|p| {
                let node = p["spec"]["nodeName"].as_str()?;
                let image = p["spec"]["containers"][0]["image"].as_str()?;
                Some((node.to_string(), image.to_string()))
            })
            .collect())
    }

    /// The data of ConfigMap `namespace/name`; None when it does not exist.
    pub async fn config_map_data(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<std::collections::BTreeMap<String, String>>> {
        let url = format!(
            "{}/api/v1/namespaces/{namespace}/configmaps/{name}",
            self.base
        );
        let (status, map) = self
            .send(self.client.get(&url), "reading a ConfigMap")
            .await?;
        match status {
            404 => Ok(None),
            200 => Ok(Some(
                map["data"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect(),
            )),
            s => bail!(
                "reading ConfigMap {namespace}/{name}: HTTP {s}: {}",
                map["message"]
            ),
        }
    }

    /// Makes `key` of ConfigMap `namespace/name` hold `text`; whether it changed. A
    /// concurrent writer (409) makes it read and try again.
    pub async fn sync_config_map(
        &self,
        namespace: &str,
        name: &str,
        key: &str,
        text: &str,
    ) -> Result<bool> {
        let url = format!(
            "{}/api/v1/namespaces/{namespace}/configmaps/{name}",
            self.base
        );
        for _ in 0..5 {
            let (status, mut map) = self
                .send(self.client.get(&url), "reading a ConfigMap")
                .await?;
            if status != 200 {
                bail!(
                    "reading ConfigMap {namespace}/{name}: HTTP {status}: {}",
                    map["message"]
                );
            }
            if map["data"][key].as_str() == Some(text) {
                return Ok(false);
            }
            // The resourceVersion read stays in: a write since then is refused.
            map["data"][key] = text.into();
            let (status, answer) = self
                .send(self.client.put(&url).json(&map), "updating a ConfigMap")
                .await?;
            match status {
                200 => return Ok(true),
                409 => continue,
                s => bail!(
                    "updating ConfigMap {namespace}/{name}: HTTP {s}: {}",
                    answer["message"]
                ),
            }
        }
        bail!("updating ConfigMap {namespace}/{name}: it kept changing under paasgen")
    }

    /// Sets the image of `container` in `workload`'s pod template (a rolling update
    /// follows); whether it changed.
    pub async fn set_image(
        &self,
        workload: &Workload,
        container: &str,
        image: &str,
    ) -> Result<bool> {
        let (status, now) = self
            .send(
                self.client.get(workload.url(&self.base)),
                "reading a workload",
            )
            .await?;
        if status != 200 {
            bail!("reading {workload}: HTTP {status}: {}", now["message"]);
        }
        let current = now["spec"]["template"]["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["name"] == container)
            .and_then(|c| c["image"].as_str())
            .with_context(|| format!("{workload} has no container {container}"))?;
        if current == image {
            return Ok(false);
        }
        let patch = self
            .client
            .patch(workload.url(&self.base))
            .header("Content-Type", "application/strategic-merge-patch+json")
            .body(
                json!({"spec": {"template": {"spec": {"containers": [
                    {"name": container, "image": image}
                ]}}}})
                .to_string(),
            );
        let (status, answer) = self.send(patch, "setting an image").await?;
        if status != 200 {
            bail!(
                "setting {workload}'s image: HTTP {status}: {}",
                answer["message"]
            );
        }
        Ok(true)
    }

    /// Whether the API answers /readyz with "ok".
    pub async fn readyz(&self) -> Result<()> {
        let url = format!("{}/readyz", self.base);
        let response = send_retrying(self.client.get(url), "asking /readyz").await?;
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        if status != 200 {
            bail!("/readyz: HTTP {status}: {}", body.trim());
        }
        Ok(())
    }

    /// The newest revision of Helm release `name` in `namespace` and its status
    /// (`deployed`, `failed`, `pending-upgrade`, ...), from the labels of the Secrets Helm
    /// keeps it in (metadata only: the release bodies stay on the server). None when
    /// there is no release.
    pub async fn helm_release(&self, namespace: &str, name: &str) -> Result<Option<(u64, String)>> {
        let url = format!(
            "{}/api/v1/namespaces/{namespace}/secrets?labelSelector=owner%3Dhelm%2Cname%3D{name}",
            self.base
        );
        let request = self.client.get(url).header(
            reqwest::header::ACCEPT,
            "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
        );
        let (status, list) = self.send(request, "reading Helm's releases").await?;
        if status != 200 {
            bail!(
                "listing Helm release {namespace}/{name}: HTTP {status}: {}",
                list["message"]
            );
        }
        Ok(list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| {
                let labels = &item["metadata"]["labels"];
                let revision = labels["version"].as_str()?.parse::<u64>().ok()?;
                Some((revision, labels["status"].as_str()?.to_string()))
            })
            .max_by_key(|(revision, _)| *revision))
    }

    /// Ready and wanted pods of a Deployment or DaemonSet (`kind` as in its URL);
    /// None when it does not exist.
    pub async fn ready_counts(
        &self,
        namespace: &str,
        kind: &str,
        name: &str,
    ) -> Result<Option<(i64, i64)>> {
        let url = format!(
            "{}/apis/apps/v1/namespaces/{namespace}/{kind}/{name}",
            self.base
        );
        let (status, w) = self
            .send(self.client.get(url), "reading a workload")
            .await?;
        let n = |v: &Value| v.as_i64().unwrap_or(0);
        match status {
            404 => Ok(None),
            200 if kind == "daemonsets" => Ok(Some((
                n(&w["status"]["numberReady"]),
                n(&w["status"]["desiredNumberScheduled"]),
            ))),
            200 => Ok(Some((
                n(&w["status"]["readyReplicas"]),
                n(&w["spec"]["replicas"]),
            ))),
            s => bail!(
                "reading {kind} {namespace}/{name}: HTTP {s}: {}",
                w["message"]
            ),
        }
    }

    /// Whether `workload` runs its current pod template everywhere it should, all
    /// available (what `kubectl rollout status` waits for).
    pub async fn rolled_out(&self, workload: &Workload) -> Result<bool> {
        let (status, w) = self
            .send(
                self.client.get(workload.url(&self.base)),
                "reading a workload",
            )
            .await?;
        if status != 200 {
            bail!("reading {workload}: HTTP {status}: {}", w["message"]);
        }
        let n = |v: &Value| v.as_i64().unwrap_or(0);
        let st = &w["status"];
        let observed = n(&st["observedGeneration"]) >= n(&w["metadata"]["generation"]);
        let (want, updated, available) = match workload.kind {
            WorkloadKind::DaemonSet => (
                n(&st["desiredNumberScheduled"]),
                n(&st["updatedNumberScheduled"]),
                n(&st["numberAvailable"]),
            ),
            WorkloadKind::Deployment => (
                n(&w["spec"]["replicas"]),
                n(&st["updatedReplicas"]),
                n(&st["availableReplicas"]),
            ),
        };
        // A Deployment's old pods count in availableReplicas until they are gone.
        let total = match workload.kind {
            WorkloadKind::DaemonSet => n(&st["currentNumberScheduled"]),
            WorkloadKind::Deployment => n(&st["replicas"]),
        };
        Ok(observed && updated == want && available == want && total == want)
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
