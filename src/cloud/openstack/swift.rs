//! The few Swift (object storage) calls etcd's off-site backups need, through the same
//! Keystone session as everything else: the account URL comes from the service catalog.

use super::auth::connect;
use anyhow::{anyhow, bail, Context, Result};
use osauth::services::OBJECT_STORAGE;
use osauth::Session;
use reqwest::Method;
use serde::Deserialize;

pub struct Swift {
    session: Session,
    /// `http[s]://host[:port]/v1/AUTH_<project>` as the catalog gives it.
    pub account_url: reqwest::Url,
}

/// One object of a container listing.
#[derive(Debug, Clone, Deserialize)]
pub struct Object {
    pub name: String,
    pub bytes: u64,
    pub last_modified: String,
}

/// One version of an object in a versioned container.
#[derive(Debug, Clone, Deserialize)]
pub struct Version {
    pub name: String,
    pub version_id: String,
    /// When Swift stored this version (`2026-11-30T01:00:03.123450`, UTC): set by
    /// Swift, not by whoever uploaded it.
    #[serde(default)]
    pub last_modified: String,
}

impl Swift {
    pub async fn connect(cloud: Option<&str>, timeout: std::time::Duration) -> Result<Swift> {
        let session = connect(cloud, timeout).await?;
        let account_url = session
            .get_endpoint(OBJECT_STORAGE, std::iter::empty::<&str>())
            .await
            .map_err(|e| match e.kind() {
                osauth::ErrorKind::EndpointNotFound => anyhow!(
                    "this cloud's service catalog has no object storage (Swift), which off-site backups need: leave `etcd.swift_backups` out of the spec (snapshots stay on the etcd nodes and `paasgen backup now` copies them here), or ask the operator for Swift"
                ),
                _ => anyhow!("object storage (Swift) in the service catalog: {e}"),
            })?;
        Ok(Swift {
            session,
            account_url,
        })
    }

    /// `/v1/AUTH_<project>`: the part of the account URL a TempURL signs.
    pub fn account_path(&self) -> String {
        self.account_url.path().trim_end_matches('/').to_string()
    }

    async fn send(
        &self,
        method: Method,
        path: &[&str],
        headers: &[(&str, &str)],
        query: &[(&str, &str)],
    ) -> Result<reqwest::Response> {
        let what = format!("Swift {method} /{}", path.join("/"));
        let mut req = self
            .session
            .request(OBJECT_STORAGE, method, path.iter().copied());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if !query.is_empty() {
            req = req.query(query);
        }
        let resp = req
            .send_unchecked()
            .await
            .map_err(|e| anyhow!("{what}: {e}"))?;
        if !resp.status().is_success() {
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            bail!("{what}: {status}: {}", body.trim());
        }
        Ok(resp)
    }

    /// Creates `container` (or updates it) with object versioning on, so that an
    /// overwrite keeps the earlier copy, and `tempurl_key` as its TempURL key.
    pub async fn ensure_container(&self, container: &str, tempurl_key: &str) -> Result<()> {
        // A PUT on a container that exists updates its metadata (202).
        self.send(
            Method::PUT,
            &[container],
            &[
                ("X-Versions-Enabled", "true"),
                ("X-Container-Meta-Temp-URL-Key", tempurl_key),
            ],
            &[],
        )
        .await?;
        Ok(())
    }

    /// Every (current) object of `container`, by name.
    pub async fn list(&self, container: &str) -> Result<Vec<Object>> {
        let resp = self
            .send(Method::GET, &[container], &[], &[("format", "json")])
            .await?;
        resp.json()
            .await
            .with_context(|| format!("listing container {container}"))
    }

    /// Uploads `bytes` as `object`; Swift checks them against their md5 (ETag).
    pub async fn put_object(
        &self,
        container: &str,
        object: &str,
        bytes: Vec<u8>,
        meta_sha256: &str,
    ) -> Result<()> {
        use md5::{Digest, Md5};
        let etag = crate::pki::hex(&Md5::digest(&bytes));
        let path = object_path(container, object);
        let what = format!("Swift PUT /{}", path.join("/"));
        let resp = self
            .session
            .request(OBJECT_STORAGE, Method::PUT, path.iter().copied())
            .header("ETag", etag.as_str())
            .header("X-Object-Meta-Sha256", meta_sha256)
            // An upload of a large database takes longer than one API call may.
            .timeout(std::time::Duration::from_secs(3600))
            .body(bytes)
            .send_unchecked()
            .await
            .map_err(|e| anyhow!("{what}: {e}"))?;
        if !resp.status().is_success() {
            let status = resp.status();
            bail!(
                "{what}: {status}: {}",
                resp.text().await.unwrap_or_default().trim()
            );
        }
        Ok(())
    }

    /// Every version of every object of a versioned `container` (overwritten copies
    /// and delete markers included).
    pub async fn list_versions(&self, container: &str) -> Result<Vec<Version>> {
        let mut all: Vec<Version> = Vec::new();
        loop {
            let mut query = vec![("versions", ""), ("format", "json")];
            let (marker, version_marker);
            if let Some(last) = all.last() {
                marker = last.name.clone();
                version_marker = last.version_id.clone();
                query.push(("marker", &marker));
                query.push(("version_marker", &version_marker));
            }
            let page: Vec<Version> = self
                .send(Method::GET, &[container], &[], &query)
                .await?
                .json()
                .await
                .with_context(|| format!("listing the versions in {container}"))?;
            if page.is_empty() {
                return Ok(all);
            }
            all.extend(page);
        }
    }

    /// Deletes one version of `object` for good.
    pub async fn delete_version(
        &self,
        container: &str,
        object: &str,
        version_id: &str,
    ) -> Result<()> {
        let path = object_path(container, object);
        // A URL normalises `.` and `..` away: the DELETE would reach another name.
        if path
            .iter()
            .skip(1)
            .any(|s| s.is_empty() || *s == "." || *s == "..")
        {
            bail!(
                "not deleting `{}`: a name with empty, `.` or `..` segments",
                crate::spec::shown(object, 200)
            );
        }
        self.send(Method::DELETE, &path, &[], &[("version-id", version_id)])
            .await?;
        Ok(())
    }

    /// An object's bytes and its `X-Object-Meta-Sha256` (recover's download).
    pub async fn get_object(
        &self,
        container: &str,
        object: &str,
    ) -> Result<(Vec<u8>, Option<String>)> {
        let path = object_path(container, object);
        let what = format!("Swift GET /{}", path.join("/"));
        let resp = self
            .session
            .request(OBJECT_STORAGE, Method::GET, path.iter().copied())
            // A large database takes longer than one API call may.
            .timeout(std::time::Duration::from_secs(3600))
            .send_unchecked()
            .await
            .map_err(|e| anyhow!("{what}: {e}"))?;
        if !resp.status().is_success() {
            bail!("{what}: {}", resp.status());
        }
        let sha = resp
            .headers()
            .get("x-object-meta-sha256")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = resp.bytes().await.map_err(|e| anyhow!("{what}: {e}"))?;
        Ok((bytes.to_vec(), sha))
    }

    /// An object's user metadata `X-Object-Meta-<name>`.
    pub async fn object_meta(
        &self,
        container: &str,
        object: &str,
        name: &str,
    ) -> Result<Option<String>> {
        let path = object_path(container, object);
        let resp = self.send(Method::HEAD, &path, &[], &[]).await?;
        Ok(resp
            .headers()
            .get(format!("x-object-meta-{name}"))
            .and_then(|v| v.to_str().ok())
            .map(str::to_string))
    }
}

/// The URL path segments of `object` (its name may hold `/`) in `container`.
fn object_path<'a>(container: &'a str, object: &'a str) -> Vec<&'a str> {
    std::iter::once(container)
        .chain(object.split('/'))
        .collect()
}
