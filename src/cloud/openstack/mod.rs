//! The `Cloud` trait on OpenStack: Keystone v3 through osauth's session (clouds.yaml,
//! token refresh, service catalog), and the documented Neutron, Nova and Glance JSON APIs
//! called through that session.

mod auth;
pub mod capabilities;
pub mod glance;
mod rights;
pub mod swift;

pub use auth::connect;
pub use capabilities::Capabilities;

use super::apply::Transient;
use super::{Cloud, Existing, Ids, Kind, NetworkRef, Remote, Resource, ServerState, Spec};
use anyhow::{anyhow, bail, Context, Result};
use futures::{stream, FutureExt, StreamExt, TryStreamExt};
use osauth::services::{ServiceType, COMPUTE, IMAGE, NETWORK};
use osauth::Session;
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use tokio::sync::Mutex;

pub struct OpenStack {
    session: Session,
    /// Keystone's token endpoint: who the token is (`rights`).
    token_endpoint: String,
    /// Connect and read timeout of every call (the total per call is four times it).
    timeout: std::time::Duration,
    /// Name -> id lookups of things paasgen does not create (flavors, images, networks).
    lookups: Mutex<BTreeMap<String, String>>,
    /// Calls in flight at once where one operation makes several (the inventory).
    parallel: usize,
    /// What the cloud offers, asked once (`capabilities`).
    capabilities: tokio::sync::OnceCell<Capabilities>,
}

/// Tags put on everything that takes tags, so the cluster's resources can be found.
pub fn tags(cluster: &str) -> Vec<String> {
    vec!["paasgen".into(), format!("paasgen-cluster={cluster}")]
}

fn classify(status: reqwest::StatusCode, body: &str, what: &str) -> anyhow::Error {
    let message = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| {
            // Nova: {"badRequest": {"message"}}, Neutron: {"NeutronError": {"message"}}.
            v.as_object()?
                .values()
                .find_map(|inner| inner.get("message")?.as_str().map(str::to_string))
        })
        .unwrap_or_else(|| body.chars().take(300).collect());
    let text = format!("{what}: HTTP {status}: {message}");
    if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        Transient(text).into()
    } else {
        anyhow!(text)
    }
}

impl OpenStack {
    pub async fn connect(cloud: Option<&str>, timeout: std::time::Duration) -> Result<OpenStack> {
        let (session, token_endpoint) = auth::connect_keystone(cloud, timeout).await?;
        Ok(OpenStack {
            session,
            token_endpoint,
            timeout,
            lookups: Mutex::new(BTreeMap::new()),
            parallel: super::apply::Options::default().parallel,
            capabilities: tokio::sync::OnceCell::new(),
        })
    }

    /// `launch --parallel N`: at most N calls in flight here too.
    pub fn set_parallel(&mut self, parallel: usize) {
        self.parallel = parallel;
    }

    async fn call<S>(
        &self,
        service: S,
        method: Method,
        path: &[&str],
        query: &[(&str, &str)],
        body: Option<Value>,
    ) -> Result<Value>
    where
        S: ServiceType + Send + Clone,
    {
        let what = format!("{method} {}", path.join("/"));
        let mut req = self
            .session
            .request(service.clone(), method, path.iter().copied());
        if service.catalog_type() == "compute" {
            let version = capabilities::show_version(capabilities::NOVA_MICROVERSION);
            req = req.header("X-OpenStack-Nova-API-Version", version);
        }
        if !query.is_empty() {
            req = req.query(query);
        }
        if let Some(b) = &body {
            req = req.json(b);
        }
        let started = std::time::Instant::now();
        let resp = req.send_unchecked().await.map_err(|e| match e.kind() {
            // osauth keeps only the message of the HTTP error: the clock tells a timeout.
            osauth::ErrorKind::ProtocolError if started.elapsed() >= self.timeout => Transient(
                format!("{what}: no answer within {}s: {e}", self.timeout.as_secs()),
            )
            .into(),
            osauth::ErrorKind::ProtocolError | osauth::ErrorKind::EndpointNotFound => {
                Transient(format!("{what}: {e}")).into()
            }
            _ => anyhow!("{what}: {e}"),
        })?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| Transient(format!("{what}: reading the answer: {e}")))?;
        if !status.is_success() {
            return Err(classify(status, &text, &what));
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).with_context(|| format!("{what}: the answer is not JSON"))
    }

    async fn list<S: ServiceType + Send + Clone>(
        &self,
        service: S,
        path: &[&str],
        key: &str,
        query: &[(&str, &str)],
    ) -> Result<Vec<Value>> {
        let mut all = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let mut q = query.to_vec();
            if let Some(m) = &marker {
                q.push(("marker", m.as_str()));
            }
            let v = self
                .call(service.clone(), Method::GET, path, &q, None)
                .await?;
            let page = v[key].as_array().cloned().unwrap_or_default();
            let empty = page.is_empty();
            all.extend(page);
            // Nova pages at its max_limit (1,000 by default), Neutron and Glance when
            // configured to: the next page is named by a marker in a link.
            match next_marker(&v, key) {
                Some(m) if !empty && marker.as_deref() != Some(m.as_str()) => marker = Some(m),
                _ => return Ok(all),
            }
        }
    }

    /// The cluster's servers in detail (Nova filters names by regular expression).
    async fn cluster_servers(&self, cluster: &str) -> Result<Vec<Value>> {
        let pattern = format!("^{cluster}-");
        let query = [("name", pattern.as_str())];
        self.list(COMPUTE, &["servers", "detail"], "servers", &query)
            .await
    }

    /// The id of something paasgen uses but does not create, by name (cached).
    async fn lookup(&self, what: &str, name: &str) -> Result<String> {
        let key = format!("{what}/{name}");
        if let Some(id) = self.lookups.lock().await.get(&key) {
            return Ok(id.clone());
        }
        let found: Vec<Value> = match what {
            // Glance ids are UUIDs and names rarely are: an id is taken as one (Nova's
            // imageRef wants the id either way).
            "image" if looks_like_uuid(name) => {
                let path = ["images", name];
                let image = self.call(IMAGE, Method::GET, &path, &[], None).await;
                let image = image.with_context(|| format!("no image with id `{name}`"))?;
                vec![image]
            }
            "flavor" => {
                self.list(COMPUTE, &["flavors", "detail"], "flavors", &[])
                    .await?
            }
            "image" => {
                self.list(IMAGE, &["images"], "images", &[("name", name)])
                    .await?
            }
            "network" => {
                self.list(NETWORK, &["networks"], "networks", &[("name", name)])
                    .await?
            }
            _ => bail!("unknown lookup {what}"),
        };
        let found: Vec<&Value> = found
            .iter()
            .filter(|v| v["name"] == name || v["id"] == name)
            .collect();
        // An image still uploading (or killed) fails only later, on the hypervisor.
        if let [image] = found.as_slice() {
            let status = image["status"].as_str();
            if what == "image" && status != Some("active") {
                bail!(
                    "image `{name}` is {}, not active: wait for `paasgen image upload` to finish, or upload it again",
                    status.unwrap_or("without a status")
                );
            }
        }
        let ids: Vec<String> = found
            .iter()
            .filter_map(|v| v["id"].as_str().map(str::to_string))
            .collect();
        let id = match ids.as_slice() {
            [one] => one.clone(),
            [] => bail!("no {what} named `{name}` is visible to this project"),
            _ => bail!(
                "{} {what}s are named `{name}`: name one uniquely",
                ids.len()
            ),
        };
        self.lookups.lock().await.insert(key, id.clone());
        Ok(id)
    }

    /// Adds (`add_router_interface`) or removes (`remove_router_interface`) the router's
    /// interface on a subnet.
    async fn router_interface(&self, router: &str, subnet: &str, action: &str) -> Result<Value> {
        self.call(
            NETWORK,
            Method::PUT,
            &["routers", router, action],
            &[],
            Some(json!({ "subnet_id": subnet })),
        )
        .await
    }

    async fn tag(&self, collection: &str, id: &str, cluster: &str) -> Result<()> {
        self.call(
            NETWORK,
            Method::PUT,
            &[collection, id, "tags"],
            &[],
            Some(json!({ "tags": tags(cluster) })),
        )
        .await
        .map(|_| ())
    }

    async fn create_neutron(
        &self,
        collection: &str,
        singular: &str,
        mut body: Value,
        cluster: &str,
    ) -> Result<String> {
        let tagging = self.capabilities().await?.tagging();
        if tagging.on_create(collection) {
            body["tags"] = json!(tags(cluster));
        }
        let v = self
            .call(
                NETWORK,
                Method::POST,
                &[collection],
                &[],
                Some(json!({ singular: body })),
            )
            .await?;
        let id = v[singular]["id"]
            .as_str()
            .ok_or_else(|| anyhow!("no id in the answer to POST {collection}"))?
            .to_string();
        if tagging.afterwards(collection) {
            self.tag(collection, &id, cluster).await?;
        }
        Ok(id)
    }
}

fn id_of<'a>(ids: &'a Ids, name: &str) -> Result<&'a str> {
    ids.get(name)
        .map(String::as_str)
        .ok_or_else(|| anyhow!("{name} has no id yet"))
}

fn existing(kind: Kind, v: &Value, name_field: &str) -> Option<Existing> {
    let name = v[name_field].as_str()?;
    Some(Existing::new(kind, name, v["id"].as_str().unwrap_or(name)))
}

/// Where resources of `kind` are deleted: (on Nova, collection); None for the links
/// (router interfaces, floating IP bindings), which are updates of what they join.
fn collection(kind: Kind) -> Option<(bool, &'static str)> {
    Some(match kind {
        Kind::KeyPair => (true, "os-keypairs"),
        Kind::ServerGroup => (true, "os-server-groups"),
        Kind::Server => (true, "servers"),
        Kind::Network => (false, "networks"),
        Kind::Router => (false, "routers"),
        Kind::FloatingIp => (false, "floatingips"),
        Kind::Subnet => (false, "subnets"),
        Kind::SecurityGroup => (false, "security-groups"),
        Kind::SecurityGroupRule => (false, "security-group-rules"),
        Kind::Port => (false, "ports"),
        Kind::RouterInterface | Kind::FloatingIpAssociation => return None,
    })
}

/// A router interface's id: the router's and the subnet's, which removing it takes.
fn interface_id(router: &str, subnet: &str) -> String {
    format!("{router}:{subnet}")
}

/// Device owners of a router's ports on its internal subnets.
const ROUTER_INTERFACE_OWNERS: [&str; 3] = [
    "network:router_interface",
    "network:router_interface_distributed",
    "network:ha_router_replicated_interface",
];

/// What Neutron names no further, found from the cluster's routers, subnets, ports and
/// floating IPs: the routers' interfaces on the cluster's subnets, and the floating IPs
/// (by description) with their bindings to the cluster's ports.
fn links(cluster: &str, lists: &BTreeMap<&str, Vec<Value>>) -> Vec<Existing> {
    let prefix = format!("{cluster}-");
    let ours = |collection: &str| -> BTreeMap<String, String> {
        lists
            .get(collection)
            .into_iter()
            .flatten()
            .filter_map(|v| {
                Some((
                    v["id"].as_str()?.to_string(),
                    v["name"].as_str()?.to_string(),
                ))
            })
            .filter(|(_, name)| name.starts_with(&prefix))
            .collect()
    };
    let (routers, subnets, ports) = (ours("routers"), ours("subnets"), ours("ports"));
    let mut out = Vec::new();
    for port in lists.get("ports").into_iter().flatten() {
        let owner = port["device_owner"].as_str().unwrap_or_default();
        let Some(router) = port["device_id"]
            .as_str()
            .filter(|_| ROUTER_INTERFACE_OWNERS.contains(&owner))
        else {
            continue;
        };
        let Some(router_name) = routers.get(router) else {
            continue;
        };
        for ip in port["fixed_ips"].as_array().into_iter().flatten() {
            let subnet = ip["subnet_id"].as_str().unwrap_or_default();
            if let Some(subnet_name) = subnets.get(subnet) {
                out.push(Existing::new(
                    Kind::RouterInterface,
                    super::link_name(cluster, router_name, subnet_name),
                    interface_id(router, subnet),
                ));
            }
        }
    }
    for fip in lists.get("floatingips").into_iter().flatten() {
        let (Some(name), Some(id)) = (fip["description"].as_str(), fip["id"].as_str()) else {
            continue;
        };
        out.push(Existing {
            address: fip["floating_ip_address"]
                .as_str()
                .and_then(|a| a.parse().ok()),
            ..Existing::new(Kind::FloatingIp, name, id)
        });
        if let Some(port_name) = fip["port_id"].as_str().and_then(|p| ports.get(p)) {
            out.push(Existing::new(
                Kind::FloatingIpAssociation,
                super::link_name(cluster, name, port_name),
                id,
            ));
        }
    }
    out
}

impl Cloud for OpenStack {
    async fn inventory(&self, cluster: &str) -> Result<Vec<Existing>> {
        let prefix = format!("{cluster}-");
        let mut out = Vec::new();
        // Routers and floating IPs exist only with the L3 router plugin: elsewhere the
        // listings are 404s, not empty.
        let routers = self.capabilities().await?.routers();
        let neutron = [
            (Some(Kind::Network), "networks", "name"),
            (Some(Kind::Router), "routers", "name"),
            (Some(Kind::Subnet), "subnets", "name"),
            (Some(Kind::SecurityGroup), "security-groups", "name"),
            (
                Some(Kind::SecurityGroupRule),
                "security-group-rules",
                "description",
            ),
            (Some(Kind::Port), "ports", "name"),
            // Floating IPs have no name: `links` reads them by description.
            (None, "floatingips", "description"),
        ];
        let neutron: Vec<_> = neutron
            .into_iter()
            .filter(|(_, collection, _)| {
                routers || !["routers", "floatingips"].contains(collection)
            })
            .collect();
        // Up to ten listings, independent of each other: `parallel` at a time (round trips to
        // a far cloud are most of a relaunch's time).
        let neutron_lists = neutron.iter().map(|(_, collection, _)| {
            let key = collection.replace('-', "_");
            async move { self.list(NETWORK, &[collection], &key, &[]).await }.boxed()
        });
        let compute_lists = [
            self.list(COMPUTE, &["os-keypairs"], "keypairs", &[])
                .boxed(),
            self.list(COMPUTE, &["os-server-groups"], "server_groups", &[])
                .boxed(),
            self.cluster_servers(cluster).boxed(),
        ];
        let mut answers: Vec<Vec<Value>> = stream::iter(neutron_lists.chain(compute_lists))
            .buffered(self.parallel.max(1))
            .try_collect()
            .await?;
        let servers = answers.pop().unwrap_or_default();
        let server_groups = answers.pop().unwrap_or_default();
        let keypairs = answers.pop().unwrap_or_default();
        let mut lists = BTreeMap::new();
        for ((kind, collection, name_field), values) in neutron.into_iter().zip(answers) {
            if let Some(kind) = kind {
                out.extend(values.iter().filter_map(|v| existing(kind, v, name_field)));
            }
            lists.insert(collection, values);
        }
        out.extend(links(cluster, &lists));
        for v in keypairs {
            out.extend(existing(Kind::KeyPair, &v["keypair"], "name"));
        }
        for v in server_groups {
            out.extend(existing(Kind::ServerGroup, &v, "name"));
        }
        for v in servers {
            if let Some(mut e) = existing(Kind::Server, &v, "name") {
                e.status = v["status"].as_str().map(str::to_string);
                e.fault = v["fault"]["message"].as_str().map(str::to_string);
                e.user_data_sha256 = v["metadata"]["paasgen_user_data_sha256"]
                    .as_str()
                    .map(str::to_string);
                out.push(e);
            }
        }
        out.retain(|e| e.name.starts_with(&prefix));
        Ok(out)
    }

    async fn create(&self, cluster: &str, r: &Resource, ids: &Ids) -> Result<String> {
        let name = r.name.as_str();
        match &r.spec {
            Spec::KeyPair { public_key } => {
                let v = self
                    .call(
                        COMPUTE,
                        Method::POST,
                        &["os-keypairs"],
                        &[],
                        Some(json!({"keypair": {"name": name, "public_key": public_key}})),
                    )
                    .await?;
                Ok(v["keypair"]["name"].as_str().unwrap_or(name).to_string())
            }
            Spec::ServerGroup { policy } => {
                let v = self
                    .call(
                        COMPUTE,
                        Method::POST,
                        &["os-server-groups"],
                        &[],
                        Some(json!({"server_group": {"name": name, "policy": policy}})),
                    )
                    .await?;
                v["server_group"]["id"]
                    .as_str()
                    .map(str::to_string)
                    .ok_or_else(|| anyhow!("no server group id"))
            }
            Spec::Network => {
                self.create_neutron(
                    "networks",
                    "network",
                    json!({"name": name, "admin_state_up": true}),
                    cluster,
                )
                .await
            }
            Spec::Subnet {
                network,
                cidr,
                dns_servers,
                gateway,
            } => {
                // No DHCP: addresses come from the ports, the default route from the
                // user-data (the gateways' VIP; in floating mode the router, whose
                // interface takes the subnet's gateway address).
                let body = json!({
                    "name": name, "network_id": id_of(ids, network)?, "ip_version": 4, "cidr": cidr,
                    "enable_dhcp": false, "gateway_ip": gateway.map(|ip| ip.to_string()),
                    "dns_nameservers": dns_servers.iter().map(ToString::to_string).collect::<Vec<_>>(),
                });
                self.create_neutron("subnets", "subnet", body, cluster)
                    .await
            }
            Spec::Router { external_network } => {
                let body = json!({
                    "name": name, "admin_state_up": true,
                    "external_gateway_info": {"network_id": self.lookup("network", external_network).await?},
                });
                self.create_neutron("routers", "router", body, cluster)
                    .await
            }
            Spec::RouterInterface { router, subnet } => {
                let (router, subnet) = (id_of(ids, router)?, id_of(ids, subnet)?);
                self.router_interface(router, subnet, "add_router_interface")
                    .await?;
                Ok(interface_id(router, subnet))
            }
            Spec::FloatingIp { network } => {
                let body = json!({
                    "floating_network_id": self.lookup("network", network).await?,
                    "description": name,
                });
                self.create_neutron("floatingips", "floatingip", body, cluster)
                    .await
            }
            Spec::FloatingIpAssociation {
                floating_ip, port, ..
            } => {
                let fip = id_of(ids, floating_ip)?;
                self.call(
                    NETWORK,
                    Method::PUT,
                    &["floatingips", fip],
                    &[],
                    Some(json!({"floatingip": {"port_id": id_of(ids, port)?}})),
                )
                .await?;
                Ok(fip.to_string())
            }
            Spec::SecurityGroup => {
                let body =
                    json!({"name": name, "description": format!("paasgen cluster {cluster}")});
                self.create_neutron("security-groups", "security_group", body, cluster)
                    .await
            }
            Spec::SecurityGroupRule {
                group,
                protocol,
                ports,
                remote,
            } => {
                let mut body = json!({
                    "security_group_id": id_of(ids, group)?, "direction": "ingress", "ethertype": "IPv4",
                    "protocol": protocol, "description": name,
                });
                if let Some((min, max)) = ports {
                    body["port_range_min"] = json!(min);
                    body["port_range_max"] = json!(max);
                }
                match remote {
                    Remote::Group(g) => body["remote_group_id"] = json!(id_of(ids, g)?),
                    Remote::Cidr(c) => body["remote_ip_prefix"] = json!(c),
                }
                self.create_neutron("security-group-rules", "security_group_rule", body, cluster)
                    .await
            }
            Spec::Port {
                network,
                fixed_ip,
                security_groups,
                allowed_address_pairs,
            } => {
                let network_id = match network {
                    NetworkRef::Own { network, .. } => id_of(ids, network)?.to_string(),
                    NetworkRef::Existing(n) => self.lookup("network", n).await?,
                };
                let sgs: Vec<&str> = security_groups
                    .iter()
                    .map(|g| id_of(ids, g))
                    .collect::<Result<_>>()?;
                // Port security stays at its default (on); fields are sent only when
                // needed, since policy guards each one on networks the project does not own.
                let mut body = json!({
                    "name": name, "network_id": network_id,
                    "fixed_ips": [{"ip_address": fixed_ip.to_string()}],
                });
                if !sgs.is_empty() {
                    body["security_groups"] = json!(sgs);
                }
                if !allowed_address_pairs.is_empty() {
                    body["allowed_address_pairs"] = json!(allowed_address_pairs
                        .iter()
                        .map(|a| json!({"ip_address": a}))
                        .collect::<Vec<_>>());
                }
                self.create_neutron("ports", "port", body, cluster).await
            }
            Spec::Server {
                node: _,
                flavor,
                image,
                ports,
                key_pair,
                server_group,
                user_data,
                user_data_sha256,
            } => {
                let networks: Vec<Value> = ports
                    .iter()
                    .map(|p| Ok(json!({"port": id_of(ids, p)?})))
                    .collect::<Result<_>>()?;
                let mut body = json!({
                    "server": {
                        "name": name,
                        "flavorRef": self.lookup("flavor", flavor).await?,
                        "imageRef": self.lookup("image", image).await?,
                        "networks": networks,
                        "key_name": key_pair,
                        "user_data": user_data,
                        "config_drive": true,
                        "metadata": {"paasgen_cluster": cluster, "paasgen_user_data_sha256": user_data_sha256},
                        "tags": tags(cluster),
                    }
                });
                if let Some(group) = server_group {
                    body["os:scheduler_hints"] = json!({"group": id_of(ids, group)?});
                }
                let v = self
                    .call(COMPUTE, Method::POST, &["servers"], &[], Some(body))
                    .await?;
                v["server"]["id"]
                    .as_str()
                    .map(str::to_string)
                    .ok_or_else(|| anyhow!("no server id in the answer"))
            }
        }
    }

    async fn server_state(&self, id: &str) -> Result<ServerState> {
        let v = self
            .call(COMPUTE, Method::GET, &["servers", id], &[], None)
            .await?;
        Ok(state_of(&v["server"]))
    }

    async fn server_states(&self, cluster: &str) -> Result<BTreeMap<String, ServerState>> {
        let servers = self.cluster_servers(cluster).await?;
        let mut states = BTreeMap::new();
        for v in &servers {
            let Some(id) = v["id"].as_str() else { continue };
            let mut state = state_of(v);
            // A listing leaves the fault out: the failed ones are read one by one.
            if v["fault"].is_null() && matches!(state, ServerState::Error(_)) {
                state = self.server_state(id).await?;
            }
            states.insert(id.to_string(), state);
        }
        Ok(states)
    }

    async fn delete(&self, kind: Kind, id: &str) -> Result<()> {
        let result = match (collection(kind), kind) {
            (Some((true, collection)), _) => {
                self.call(COMPUTE, Method::DELETE, &[collection, id], &[], None)
                    .await
            }
            (Some((false, collection)), _) => {
                self.call(NETWORK, Method::DELETE, &[collection, id], &[], None)
                    .await
            }
            // Links are undone by an update of what they join.
            (None, Kind::RouterInterface) => {
                let (router, subnet) = id.split_once(':').ok_or_else(|| {
                    anyhow!("`{id}` is not a router interface id (router:subnet)")
                })?;
                self.router_interface(router, subnet, "remove_router_interface")
                    .await
            }
            (None, _) => {
                self.call(
                    NETWORK,
                    Method::PUT,
                    &["floatingips", id],
                    &[],
                    Some(json!({"floatingip": {"port_id": null}})),
                )
                .await
            }
        };
        match result {
            Err(e) if e.to_string().contains("HTTP 404") => Ok(()),
            other => other.map(|_| ()),
        }
    }

    async fn stop_server(&self, id: &str) -> Result<()> {
        // Nova's stop asks the guest to power off (ACPI) and waits its shutdown_timeout
        // before pulling the plug; a delete pulls it at once.
        let stopped = self
            .call(
                COMPUTE,
                Method::POST,
                &["servers", id, "action"],
                &[],
                Some(json!({"os-stop": null})),
            )
            .await;
        match stopped {
            // 409: the server is stopped already (or stopping).
            Err(e) if e.to_string().contains("HTTP 409") => Ok(()),
            other => other.map(|_| ()),
        }
    }

    async fn server_user_data(&self, id: &str) -> Result<Option<String>> {
        use base64::Engine;
        let v = self
            .call(COMPUTE, Method::GET, &["servers", id], &[], None)
            .await?;
        match v["server"]["OS-EXT-SRV-ATTR:user_data"].as_str() {
            None => Ok(None),
            Some(b64) => {
                let bytes = base64::engine::general_purpose::STANDARD.decode(b64)?;
                Ok(Some(String::from_utf8(bytes)?))
            }
        }
    }
}

/// A Nova server's state, from its status, task state and fault.
fn state_of(server: &Value) -> ServerState {
    let status = server["status"].as_str();
    // The compute host has claimed it (the task states that follow the claim).
    let placed = matches!(
        server["OS-EXT-STS:task_state"].as_str(),
        Some("networking" | "block_device_mapping" | "spawning")
    );
    match (status, placed) {
        (Some("BUILD"), true) => ServerState::Placed,
        _ => ServerState::from_status(status, server["fault"]["message"].as_str()),
    }
}

/// The marker of the next page: Nova's and Neutron's `<key>_links` rel "next", or
/// Glance's `next`.
fn next_marker(answer: &Value, key: &str) -> Option<String> {
    let href = answer[format!("{key}_links")]
        .as_array()
        .into_iter()
        .flatten()
        .find(|l| l["rel"] == "next")
        .and_then(|l| l["href"].as_str())
        .or_else(|| answer["next"].as_str())?;
    let query = href.split_once('?')?.1;
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "marker")
        .map(|(_, v)| v.to_string())
}

/// `8-4-4-4-12` hex digits, as OpenStack writes its ids.
fn looks_like_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups
            .iter()
            .all(|g| g.chars().all(|c| c.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::{looks_like_uuid, next_marker, state_of};

    #[test]
    fn the_next_page_is_found_in_nova_neutron_and_glance_answers() {
        let nova = serde_json::json!({"servers": [{}], "servers_links": [
            {"rel": "next", "href": "http://nova/v2.1/servers/detail?limit=1000&marker=abc-1&name=x"}]});
        assert_eq!(next_marker(&nova, "servers").as_deref(), Some("abc-1"));
        let glance =
            serde_json::json!({"images": [{}], "next": "/v2/images?marker=img-9&limit=25"});
        assert_eq!(next_marker(&glance, "images").as_deref(), Some("img-9"));
        let last = serde_json::json!({"ports": [{}], "ports_links": [{"rel": "previous", "href": "x?marker=p"}]});
        assert_eq!(next_marker(&last, "ports"), None);
    }

    #[test]
    fn a_server_is_placed_once_its_host_has_claimed_it() {
        use crate::cloud::ServerState;
        let server = |status: &str, task: Option<&str>| serde_json::json!({"status": status, "OS-EXT-STS:task_state": task});
        assert_eq!(
            state_of(&server("BUILD", Some("scheduling"))),
            ServerState::Building
        );
        assert_eq!(state_of(&server("BUILD", None)), ServerState::Building);
        for task in ["networking", "block_device_mapping", "spawning"] {
            assert_eq!(state_of(&server("BUILD", Some(task))), ServerState::Placed);
        }
        assert_eq!(state_of(&server("ACTIVE", None)), ServerState::Active);
        let failed = serde_json::json!({"status": "ERROR", "fault": {"message": "No valid host"}});
        assert_eq!(
            state_of(&failed),
            ServerState::Error("No valid host".into())
        );
    }

    #[test]
    fn image_ids_are_told_from_names() {
        assert!(looks_like_uuid("0f4cbc8e-7a2b-4c1d-9e3f-0123456789ab"));
        assert!(!looks_like_uuid("debian-12"));
        assert!(!looks_like_uuid("paasgen-node-0123456789ab"));
        assert!(!looks_like_uuid("0f4cbc8e-7a2b-4c1d-9e3f-0123456789ag"));
        assert!(!looks_like_uuid("0f4cbc8e7a2b4c1d9e3f0123456789ab"));
    }
}
