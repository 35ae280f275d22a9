//! The serving certificates the API servers present: kubeadm makes each master's when
//! it joins, valid for one year, so paasgen reads them from the live endpoints. Through
//! the gateways: haproxy deals connections out round-robin, so a handful of fresh
//! connections meets every master that serves; each certificate names its master's
//! address among its SANs.

use crate::pki::inspect::{summarize, CertSummary};
use crate::pki::Pki;
use anyhow::Result;
use base64::Engine;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

/// Connections tried per master before giving up on meeting them all.
const TRIES_PER_MASTER: usize = 6;

/// The certificate each master in `masters` (name, private address) serves, as met
/// through `address`:6443; masters not met are missing from the answer.
pub async fn serving_certs(
    address: Ipv4Addr,
    pki: &Pki,
    masters: &[(String, Ipv4Addr)],
    timeout: Duration,
) -> Result<BTreeMap<String, CertSummary>> {
    let ca = reqwest::Certificate::from_pem(pki.kubernetes_ca.cert_pem.as_bytes())?;
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .tls_info(true)
        // A fresh connection (and so perhaps another master) for every request.
        .pool_max_idle_per_host(0)
        .connect_timeout(timeout)
        .timeout(timeout)
        .build()?;
    let url = format!("https://{address}:6443/readyz");
    let mut met = BTreeMap::new();
    for _ in 0..masters.len() * TRIES_PER_MASTER {
        if met.len() == masters.len() {
            break;
        }
        let Ok(response) = client.get(&url).send().await else {
            continue;
        };
        let Some(der) = response
            .extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(|info| info.peer_certificate())
        else {
            continue;
        };
        let pem = format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            base64::engine::general_purpose::STANDARD.encode(der)
        );
        let summary = summarize(&pem)?;
        // Every master's certificate names all masters' addresses (the spec's certSANs),
        // but only its own node name (kubeadm adds it).
        if let Some((name, _)) = masters.iter().find(|(name, _)| summary.sans.contains(name)) {
            met.insert(name.clone(), summary);
        }
    }
    Ok(met)
}
