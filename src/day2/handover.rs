//! A gateway is replaced only while another one serves, and the VIPs move before its
//! server goes: the API, ingress, etcd access and the private nodes' way out stay up.
//!
//! Before: another gateway answers on the API port through its own public address
//! (fixed mode), else the replacement is refused unless `--force`. Then the old server
//! is stopped cleanly (keepalived stops first and hands the VIPs over) and the API must
//! answer through the public address again before the server is deleted. After the
//! new server runs: its haproxy answers on its own address, so the next gateway of an
//! upgrade is not replaced while this one still boots.
//!
//! With `network.public: floating` the gateways have no public address of their own:
//! only the floating IP (the VIP's) can be checked from outside.

use super::replace::Replacer;
use crate::cloud::{apply, Cloud, Existing};
use crate::spec::{Node, Role};
use anyhow::{bail, Result};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// The API port haproxy serves on every gateway address.
const API_PORT: u16 = 6443;

/// How long the VIPs may take to answer through the other gateway once the old one
/// stopped: keepalived's failover takes about 1.5 s, its clean hand-over less.
const VIP_MOVE: Duration = Duration::from_secs(30);

/// Whether the Kubernetes API answers through an address.
pub struct ApiProbe {
    client: reqwest::Client,
}

impl ApiProbe {
    pub fn new(timeout: Duration) -> Result<ApiProbe> {
        // What is checked is the path (gateway, haproxy, a ready master), not who
        // answers: no credential is sent, so the certificate is not verified.
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .danger_accept_invalid_certs(true)
            .connect_timeout(timeout)
            .timeout(timeout)
            .build()?;
        Ok(ApiProbe { client })
    }

    /// `GET /readyz` through `addr` answered 200, or why not.
    pub async fn answers(&self, addr: Ipv4Addr) -> Result<(), String> {
        let url = format!("https://{addr}:{API_PORT}/readyz");
        match self.client.get(&url).send().await {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(format!("{url} answered {}", r.status())),
            // reqwest's message names the URL.
            Err(e) => Err(crate::http::error_chain(&e)),
        }
    }

    /// Asks every second until `addr` answers or `limit` passed.
    pub async fn wait_answers(&self, addr: Ipv4Addr, limit: Duration) -> Result<(), String> {
        let start = Instant::now();
        loop {
            let answer = self.answers(addr).await;
            if answer.is_ok() || start.elapsed() > limit {
                return answer;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

impl Replacer<'_> {
    /// Makes sure another gateway serves, then moves the VIPs off `node` by stopping
    /// its server cleanly. Nothing is stopped when the check refuses.
    pub async fn hand_over(&self, node: &Node, public: Ipv4Addr) -> Result<()> {
        let probe = ApiProbe::new(self.timeout)?;
        let others: Vec<&Node> = self
            .spec
            .nodes_with_role(Role::Gateway)
            .filter(|g| g.name != node.name)
            .collect();
        let mut serving = Vec::new();
        let mut silent = Vec::new();
        for other in &others {
            match self.own_address(other) {
                Some(ip) => match probe.answers(ip).await {
                    Ok(()) => serving.push(other.name.as_str()),
                    Err(why) => silent.push(format!("{}: {why}", other.name)),
                },
                None => silent.push(format!(
                    "{}: no address of its own to ask (floating mode)",
                    other.name
                )),
            }
        }
        if serving.is_empty() && !self.spec.network.is_floating() {
            let this_serves = match self.own_address(node) {
                Some(ip) => probe.answers(ip).await.is_ok(),
                None => false,
            };
            let message = format!("no other gateway serves the API ({})", silent.join("; "));
            if this_serves && !self.with.force {
                bail!(
                    "{} is the last gateway that serves: {message}. Replacing it would cut the API, ingress, etcd access and the private nodes' way out; bring the other gateway back first, or pass --force. Nothing was changed.",
                    node.name
                );
            }
            eprintln!(
                "warning: {message}; replacing {} anyway ({})",
                node.name,
                if this_serves {
                    "--force"
                } else {
                    "it does not serve either"
                }
            );
        } else if !serving.is_empty() {
            println!(
                "gateways: {} serve(s) the API on its own address",
                serving.join(", ")
            );
        }
        if !self
            .stop_if_running(&node.name, "keepalived hands the VIPs over", None)
            .await?
        {
            return Ok(());
        }
        match probe.wait_answers(public, VIP_MOVE).await {
            Ok(()) => println!(
                "gateways: {} stopped; the API answers through {public}",
                node.name
            ),
            Err(why) if self.with.force => eprintln!("warning: {} stopped and {why} (--force)", node.name),
            Err(why) => bail!(
                "{} stopped cleanly, but the API does not answer through {public} {}s later ({why}): its server is stopped, not deleted; start it again (`openstack server start`), see the other gateway's keepalived and haproxy",
                node.name,
                VIP_MOVE.as_secs()
            ),
        }
        Ok(())
    }

    /// Stops `node`'s server cleanly if it runs (`why`: what the clean stop gives) and
    /// waits until it is SHUTOFF, or only `within` when given (what the stop is for is
    /// done by then); whether it ran.
    pub(super) async fn stop_if_running(
        &self,
        node: &str,
        why: &str,
        within: Option<Duration>,
    ) -> Result<bool> {
        let Some(old) = self.server_of(node).await? else {
            return Ok(false);
        };
        if old.status.as_deref() != Some("ACTIVE") {
            return Ok(false);
        }
        println!("stopping server {} ({}) cleanly: {why}", old.name, old.id);
        apply::retry(self.opts, "stopping the server", || {
            self.cloud.stop_server(&old.id)
        })
        .await?;
        let stopped =
            |now: Option<&Existing>| now.is_none_or(|e| e.status.as_deref() == Some("SHUTOFF"));
        let Some(within) = within else {
            self.wait_server(node, "SHUTOFF after it was asked to stop", stopped)
                .await?;
            return Ok(true);
        };
        let deadline = Instant::now() + within;
        while !stopped(self.server_of(node).await?.as_ref()) {
            if Instant::now() > deadline {
                println!(
                    "{} is still powering off {}s after it was asked to: going on",
                    old.name,
                    within.as_secs()
                );
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        Ok(true)
    }

    /// A gateway's own public address (none in floating mode: only the floating IP).
    fn own_address(&self, gateway: &Node) -> Option<Ipv4Addr> {
        gateway
            .public_ip
            .filter(|_| !self.spec.network.is_floating())
    }

    /// Waits until the new gateway's haproxy answers on its own address.
    pub async fn wait_gateway_serves(&self, node: &Node) -> Result<()> {
        let Some(ip) = self.own_address(node) else {
            println!(
                "gateways: {} has no address of its own to ask (floating mode); its server runs",
                node.name
            );
            return Ok(());
        };
        let start = Instant::now();
        let probe = ApiProbe::new(self.timeout)?;
        if let Err(why) = probe.wait_answers(ip, self.with.wait).await {
            bail!(
                "the new {} does not serve the API on its own address within {}s ({why}): see its cloud-init, keepalived and haproxy logs",
                node.name,
                self.with.wait.as_secs()
            );
        }
        println!(
            "gateways: the new {} serves the API on {ip} after {:.0}s",
            node.name,
            start.elapsed().as_secs_f64()
        );
        Ok(())
    }
}
