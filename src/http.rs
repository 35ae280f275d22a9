//! HTTP calls of the day-2 clients (etcd, Kubernetes) that go through the gateways.

use anyhow::Result;
use std::time::Duration;

/// Sends `request`, again after a connection that failed or broke (a server behind the
/// gateways that died since their last health check): 5 tries, 1 s apart.
pub async fn send_retrying(
    request: reqwest::RequestBuilder,
    what: &str,
) -> Result<reqwest::Response> {
    let mut tries = 0;
    loop {
        tries += 1;
        let attempt = request
            .try_clone()
            .ok_or_else(|| anyhow::anyhow!("{what}: the request cannot be repeated"))?;
        match attempt.send().await {
            Ok(response) => return Ok(response),
            Err(e) if tries < 5 && (e.is_connect() || e.is_timeout() || e.is_request()) => {
                tracing::debug!("{what}: {e}; trying again");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(anyhow::Error::new(e).context(what.to_string())),
        }
    }
}

/// A failed request in a few words: reqwest's message and its causes on one line.
pub fn error_chain(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}
