//! paasgen's own etcd client for the day-2 verbs: etcd's v3 API (its JSON gateway, the
//! same RPCs as gRPC) over mutual TLS with paasgen's admin client certificate.
//!
//! The members sit on the private network, so paasgen reaches them from outside through
//! the gateways: haproxy passes TLS on `<public VIP>:2379` through to the member whose
//! FQDN the client asks for (SNI). Each member is thus addressed by its own name and
//! checked against its own server certificate. `--etcd-via HOST:PORT` points elsewhere
//! (for example a tunnel's local end) with the same names.

use crate::http::send_retrying;
use crate::pki::Pki;
use crate::spec::{Role, Spec};
use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;

/// One member as etcd lists it. A member added but not started yet has no name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: u64,
    pub name: String,
    pub peer_urls: Vec<String>,
    pub is_learner: bool,
}

/// What a member says of itself.
#[derive(Debug, Clone)]
pub struct MemberStatus {
    pub version: String,
    pub db_size: u64,
    pub is_leader: bool,
}

/// One etcd node of the spec, reachable by its FQDN through `via`.
struct Endpoint {
    name: String,
    url: String,
    client: reqwest::Client,
}

pub struct EtcdAdmin {
    endpoints: Vec<Endpoint>,
}

#[derive(Deserialize)]
struct RawMember {
    #[serde(rename = "ID", default)]
    id: String,
    #[serde(default)]
    name: String,
    #[serde(rename = "peerURLs", default)]
    peer_urls: Vec<String>,
    #[serde(rename = "isLearner", default)]
    is_learner: bool,
}

impl RawMember {
    fn parse(self) -> Result<Member> {
        Ok(Member {
            id: self
                .id
                .parse()
                .with_context(|| format!("member ID `{}`", self.id))?,
            name: self.name,
            peer_urls: self.peer_urls,
            is_learner: self.is_learner,
        })
    }
}

/// How long one health question may take: a member that says nothing in that time
/// says nothing.
const HEALTH_WAIT: Duration = Duration::from_secs(8);

/// What a member said of its health, or that it said nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Healthy,
    /// It answered, unhealthy: etcd's reason ("RAFT NO LEADER", an alarm).
    Unhealthy(String),
    /// No answer (refused, reset, timed out, wrong certificate): this tells nothing of
    /// the member, only that the way to it did not carry an answer.
    NoAnswer(String),
}

/// The peer URL of an etcd node, as its config advertises it.
pub fn peer_url(ip: std::net::Ipv4Addr) -> String {
    format!("https://{ip}:2380")
}

impl EtcdAdmin {
    /// Clients for every etcd node of `spec`, reached through `via` (the gateways'
    /// etcd port on the cluster's public address, see `day2::setup::etcd_via`).
    pub fn new(spec: &Spec, pki: &Pki, via: SocketAddr, timeout: Duration) -> Result<EtcdAdmin> {
        let ca = reqwest::Certificate::from_pem(pki.etcd_ca.cert_pem.as_bytes())?;
        let identity = reqwest::Identity::from_pem(
            format!(
                "{}{}",
                pki.etcd_admin_client.cert_pem, pki.etcd_admin_client.key_pem
            )
            .as_bytes(),
        )
        .context("paasgen's etcd client certificate")?;
        let endpoints = spec
            .nodes_with_role(Role::Etcd)
            .map(|n| {
                let fqdn = spec.fqdn(n);
                let client = reqwest::Client::builder()
                    .use_rustls_tls()
                    .tls_built_in_root_certs(false)
                    .add_root_certificate(ca.clone())
                    .identity(identity.clone())
                    .resolve(&fqdn, via)
                    .connect_timeout(timeout)
                    .timeout(timeout)
                    .build()?;
                Ok(Endpoint {
                    name: n.name.clone(),
                    url: format!("https://{fqdn}:{}", via.port()),
                    client,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(EtcdAdmin { endpoints })
    }

    fn endpoint(&self, name: &str) -> Result<&Endpoint> {
        self.endpoints
            .iter()
            .find(|e| e.name == name)
            .ok_or_else(|| anyhow!("{name} is not an etcd node of the spec"))
    }

    async fn call(&self, e: &Endpoint, rpc: &str, body: Value) -> Result<Value> {
        let request = e.client.post(format!("{}/v3/{rpc}", e.url)).json(&body);
        let response = send_retrying(request, &format!("{}: {rpc}", e.name)).await?;
        let status = response.status();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let message = value["message"].as_str().unwrap_or("no message");
            bail!("{}: {rpc}: {status}: {message}", e.name);
        }
        Ok(value)
    }

    /// What `name` says of its health, asked once and for at most `HEALTH_WAIT`.
    pub async fn health(&self, name: &str) -> Health {
        let e = match self.endpoint(name) {
            Ok(e) => e,
            Err(err) => return Health::NoAnswer(format!("{err:#}")),
        };
        let request = e.client.get(format!("{}/health", e.url)).send();
        let response = match tokio::time::timeout(HEALTH_WAIT, request).await {
            Err(_) => {
                return Health::NoAnswer(format!("no answer within {}s", HEALTH_WAIT.as_secs()))
            }
            Ok(Err(err)) => return Health::NoAnswer(crate::http::error_chain(&err)),
            Ok(Ok(response)) => response,
        };
        // The answer comes through TLS checked against the member's own certificate:
        // only the member itself can have said it.
        match tokio::time::timeout(HEALTH_WAIT, response.json::<Value>()).await {
            Ok(Ok(v)) if v["health"] == "true" => Health::Healthy,
            Ok(Ok(v)) => Health::Unhealthy(
                v["reason"]
                    .as_str()
                    .filter(|r| !r.is_empty())
                    .unwrap_or("no reason given")
                    .to_string(),
            ),
            Ok(Err(err)) => Health::NoAnswer(format!("an answer that is not etcd's: {err}")),
            Err(_) => Health::NoAnswer("the answer did not finish".into()),
        }
    }

    /// What `name` says of itself (maintenance/status), asked for at most `HEALTH_WAIT`.
    pub async fn status(&self, name: &str) -> Result<MemberStatus> {
        let e = self.endpoint(name)?;
        let v = tokio::time::timeout(HEALTH_WAIT, self.call(e, "maintenance/status", json!({})))
            .await
            .map_err(|_| {
                anyhow::anyhow!("{name}: no status within {}s", HEALTH_WAIT.as_secs())
            })??;
        // grpc-gateway writes 64-bit numbers as strings
        let text = |v: &Value| {
            v.as_str()
                .map(String::from)
                .unwrap_or_else(|| v.to_string())
        };
        Ok(MemberStatus {
            version: text(&v["version"]),
            db_size: text(&v["dbSize"]).parse().unwrap_or(0),
            is_leader: !v["leader"].is_null()
                && text(&v["leader"]) == text(&v["header"]["member_id"]),
        })
    }

    /// Whether `name` answers and says it is healthy (it has a leader, no alarms).
    pub async fn healthy(&self, name: &str) -> bool {
        self.health(name).await == Health::Healthy
    }

    /// What every etcd node of the spec says of its health, asked at once.
    pub async fn health_of_all(&self) -> Vec<(String, Health)> {
        let asks = self
            .endpoints
            .iter()
            .map(|e| async move { (e.name.clone(), self.health(&e.name).await) });
        futures::future::join_all(asks).await
    }

    /// The etcd nodes of the spec that say they are healthy, but `except`.
    pub async fn healthy_members(&self, except: Option<&str>) -> Vec<String> {
        self.health_of_all()
            .await
            .into_iter()
            .filter(|(name, health)| Some(name.as_str()) != except && *health == Health::Healthy)
            .map(|(name, _)| name)
            .collect()
    }

    /// The member list, from the first member that gives it (a linearizable read: it
    /// needs the cluster's majority).
    /// A member that just died may have been the leader: while the others elect a new
    /// one ("leader changed", "no leader") the list is asked for again, for up to 30 s.
    pub async fn members(&self, except: Option<&str>) -> Result<Vec<Member>> {
        let mut errors = Vec::new();
        for sweep in 0..15 {
            if sweep > 0 {
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            errors.clear();
            for e in self
                .endpoints
                .iter()
                .filter(|e| Some(e.name.as_str()) != except)
            {
                match self
                    .call(e, "cluster/member/list", json!({"linearizable": true}))
                    .await
                {
                    Ok(v) => return parse_members(&v),
                    Err(err) => errors.push(format!("{err:#}")),
                }
            }
        }
        bail!(
            "no etcd member gave the member list for 30s: {}",
            errors.join("; ")
        )
    }

    /// A membership change. etcd refuses one ("unhealthy cluster") until every member
    /// it must keep has been connected for a few seconds (a member that just came back):
    /// asked again for up to a minute.
    async fn reconfigure(&self, via: &str, rpc: &str, body: Value) -> Result<Value> {
        let e = self.endpoint(via)?;
        let mut tries = 0;
        loop {
            tries += 1;
            match self.call(e, rpc, body.clone()).await {
                Err(err) if tries < 30 && format!("{err:#}").contains("unhealthy cluster") => {
                    if tries == 1 {
                        println!("etcd: {err:#}; asking again every 2 s for up to a minute");
                    }
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                other => return other,
            }
        }
    }

    /// Hands the leadership of `leader` (which must be the leader) to member `to`, as
    /// `etcdctl move-leader` does; etcd answers once `to` leads.
    pub async fn move_leader(&self, leader: &str, to: u64) -> Result<()> {
        let e = self.endpoint(leader)?;
        let body = json!({"targetID": to.to_string()});
        self.call(e, "maintenance/transfer-leadership", body)
            .await?;
        Ok(())
    }

    /// Removes member `id`, asking one of the other members.
    pub async fn remove(&self, id: u64, via: &str) -> Result<()> {
        self.reconfigure(via, "cluster/member/remove", json!({"ID": id.to_string()}))
            .await?;
        Ok(())
    }

    /// Adds a member with `peer_url`; returns its new id. A cluster without a quorum
    /// (a member forced out while another was down) cannot commit the change: it is
    /// asked again for two minutes, and an answer lost in a timeout is found in the
    /// member list rather than added twice.
    pub async fn add(&self, peer_url: &str, via: &str) -> Result<u64> {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            let error = match self
                .reconfigure(via, "cluster/member/add", json!({"peerURLs": [peer_url]}))
                .await
            {
                Ok(v) => {
                    let member: RawMember = serde_json::from_value(v["member"].clone())?;
                    return Ok(member.parse()?.id);
                }
                Err(e) => e,
            };
            let text = format!("{error:#}");
            let unsure = ["timed out", "leader changed", "no leader", "already exists"]
                .iter()
                .any(|m| text.contains(m))
                || error
                    .chain()
                    .any(|c| c.downcast_ref::<reqwest::Error>().is_some());
            if !unsure {
                return Err(error);
            }
            println!("etcd: adding the member at {peer_url}: {text}; looking whether it was added");
            if let Ok(members) = self.members(None).await {
                if let Some(m) = members
                    .iter()
                    .find(|m| m.peer_urls.iter().any(|u| u == peer_url))
                {
                    return Ok(m.id);
                }
            }
            if std::time::Instant::now() > deadline {
                return Err(error.context(format!(
                    "adding the member at {peer_url}: the cluster has no quorum to commit it"
                )));
            }
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
    }
}

impl EtcdAdmin {
    /// Sends the snapshot that `member` restores on its first boot (`recover`): until
    /// etcd runs there, the member's client port takes it (see etcd-restore.py). Asked
    /// again until `wait` passes, since the server may still be booting.
    pub async fn send_restore(
        &self,
        member: &str,
        snapshot: Vec<u8>,
        wait: Duration,
    ) -> Result<Value> {
        // Shared, not copied, by every try.
        let snapshot = bytes::Bytes::from(snapshot);
        let e = self.endpoint(member)?;
        let start = std::time::Instant::now();
        let mut last = String::from("not tried");
        while start.elapsed() < wait {
            let request = e
                .client
                .put(format!("{}/paasgen/restore", e.url))
                .timeout(Duration::from_secs(600))
                .body(snapshot.clone());
            match request.send().await {
                Ok(response) if response.status().as_u16() == 201 => {
                    return Ok(response.json().await.unwrap_or(Value::Null));
                }
                // etcd itself, or its health probe answered: not the receiver.
                Ok(response) if response.status().as_u16() == 404 => {
                    bail!("{member}: no restore receiver answers (etcd runs there already?)")
                }
                Ok(response) => {
                    let status = response.status();
                    let body: Value = response.json().await.unwrap_or(Value::Null);
                    bail!(
                        "{member}: the restore was refused: {status}: {}",
                        body["message"]
                    );
                }
                Err(err) => last = format!("{err:#}"),
            }
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        bail!(
            "{member} did not take the snapshot within {}s (last: {last}); its server is up: see its cloud-init and paasgen-etcd-restore logs",
            wait.as_secs()
        )
    }

    /// Deletes every key under `prefix`, asking `via`; returns how many went.
    pub async fn delete_prefix(&self, via: &str, prefix: &str) -> Result<u64> {
        use base64::Engine;
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let mut end = prefix.as_bytes().to_vec();
        // The range end of a prefix: its last byte plus one (prefixes here end in `/`).
        *end.last_mut().ok_or_else(|| anyhow!("empty prefix"))? += 1;
        let v = self
            .call(
                self.endpoint(via)?,
                "kv/deleterange",
                json!({"key": b64(prefix.as_bytes()), "range_end": b64(&end)}),
            )
            .await?;
        Ok(v["deleted"]
            .as_str()
            .and_then(|d| d.parse().ok())
            .unwrap_or(0))
    }
}

/// What a snapshot stream brought: the member's revision, and the bytes written.
pub struct SnapshotTaken {
    pub member: String,
    pub revision: u64,
    pub bytes: u64,
}

impl EtcdAdmin {
    /// Streams a snapshot of `member`'s database (Maintenance.Snapshot) into `out`, as
    /// `etcdctl snapshot save` writes it: the database followed by its sha256, which
    /// etcd sends last and which is checked here before anything is kept.
    pub async fn snapshot(
        &self,
        member: &str,
        out: &mut impl std::io::Write,
    ) -> Result<SnapshotTaken> {
        use sha2::{Digest, Sha256};
        let e = self.endpoint(member)?;
        // The stream carries no revision: the member's status just before says it (the
        // snapshot holds at least that one).
        let status = self.call(e, "maintenance/status", json!({})).await?;
        let revision: u64 = status["header"]["revision"]
            .as_str()
            .and_then(|r| r.parse().ok())
            .unwrap_or(0);
        // A database of gigabytes takes longer than one API call may.
        let request = e
            .client
            .post(format!("{}/v3/maintenance/snapshot", e.url))
            .timeout(Duration::from_secs(3600))
            .json(&json!({}));
        let mut response = send_retrying(request, &format!("{member}: snapshot")).await?;
        if !response.status().is_success() {
            bail!("{member}: snapshot: {}", response.status());
        }
        // The gateway streams one JSON object per message: {"result": {"blob": base64}}.
        let mut buffer = Vec::new();
        let mut database = Sha256::new();
        // The last 32 bytes seen: the checksum once the stream ends.
        let mut tail: Vec<u8> = Vec::new();
        let mut bytes = 0u64;
        while let Some(chunk) = response
            .chunk()
            .await
            .context("reading the snapshot stream")?
        {
            buffer.extend_from_slice(&chunk);
            let mut stream = serde_json::Deserializer::from_slice(&buffer).into_iter::<Value>();
            let mut consumed = 0;
            loop {
                match stream.next() {
                    Some(Ok(message)) => {
                        consumed = stream.byte_offset();
                        if let Some(err) = message.get("error") {
                            bail!("{member}: snapshot: {}", err["message"]);
                        }
                        let result = &message["result"];
                        let blob = base64::Engine::decode(
                            &base64::engine::general_purpose::STANDARD,
                            result["blob"].as_str().unwrap_or(""),
                        )?;
                        out.write_all(&blob)?;
                        bytes += blob.len() as u64;
                        tail.extend_from_slice(&blob);
                        if tail.len() > 32 {
                            let spill = tail.len() - 32;
                            database.update(&tail[..spill]);
                            tail.drain(..spill);
                        }
                    }
                    Some(Err(err)) if err.is_eof() => break,
                    Some(Err(err)) => return Err(err).context("the snapshot stream"),
                    None => break,
                }
            }
            buffer.drain(..consumed);
        }
        if tail.len() != 32 || database.finalize().as_slice() != tail.as_slice() {
            bail!("{member}: the snapshot's checksum does not match its data (stream cut short?)");
        }
        Ok(SnapshotTaken {
            member: member.to_string(),
            revision,
            bytes,
        })
    }
}

fn parse_members(v: &Value) -> Result<Vec<Member>> {
    let raw: Vec<RawMember> =
        serde_json::from_value(v["members"].clone()).context("member list answer")?;
    raw.into_iter().map(RawMember::parse).collect()
}

/// Whether a cluster of `members` members, `healthy` of them healthy, keeps its
/// majority once a member that is not among the healthy ones is replaced.
pub fn keeps_quorum(members: usize, healthy_others: usize) -> bool {
    // The replacement is added before it runs: the cluster is back at `members`
    // members, of which only the healthy others are up.
    healthy_others > members / 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_arithmetic() {
        assert!(keeps_quorum(3, 2));
        assert!(!keeps_quorum(3, 1));
        assert!(keeps_quorum(5, 3));
        assert!(!keeps_quorum(5, 2));
        assert!(!keeps_quorum(1, 0));
    }

    #[test]
    fn member_ids_are_uint64_strings() {
        let v = json!({"members": [
            {"ID": "17216958484712745000", "name": "etcd-1", "peerURLs": ["https://192.168.0.10:2380"]},
            {"ID": "42", "peerURLs": ["https://192.168.0.11:2380"], "isLearner": true}
        ]});
        let m = parse_members(&v).unwrap();
        assert_eq!(m[0].id, 17216958484712745000);
        assert_eq!(m[1].name, "");
        assert!(m[1].is_learner);
    }
}
