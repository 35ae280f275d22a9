//! The few Glance (image service) calls `paasgen image upload` makes, through the same
//! Keystone session as everything else: find an image by its recipe hash, delete one,
//! create one with its properties and stream its file in, then read it back.

use super::auth::connect;
use anyhow::{anyhow, bail, Context, Result};
use osauth::services::IMAGE;
use osauth::Session;
use reqwest::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256, Sha512};
use std::path::Path;
use std::time::Duration;

/// The Glance property holding the disk's recipe hash (images/qcow2's cache key).
pub const RECIPE_PROPERTY: &str = "paasgen_recipe_sha256";

pub struct Glance {
    session: Session,
}

impl Glance {
    pub async fn connect(cloud: Option<&str>, timeout: Duration) -> Result<Glance> {
        Ok(Glance {
            session: connect(cloud, timeout).await?,
        })
    }

    /// The images carrying this recipe hash, in any status.
    pub async fn with_recipe(&self, recipe: &str) -> Result<Vec<Value>> {
        let found = self
            .call(
                Method::GET,
                &["images"],
                &[(RECIPE_PROPERTY, recipe)],
                Body::None,
            )
            .await?;
        Ok(found["images"].as_array().cloned().unwrap_or_default())
    }

    pub async fn delete(&self, id: &str) -> Result<()> {
        self.call(Method::DELETE, &["images", id], &[], Body::None)
            .await
            .map(drop)
    }

    /// A new (queued) image with these properties: its id.
    pub async fn create(&self, properties: Value) -> Result<String> {
        let created = self
            .call(Method::POST, &["images"], &[], Body::Json(properties))
            .await?;
        created["id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("Glance gave no image id: {created}"))
    }

    /// Streams the file of `size` bytes in as the image's data.
    pub async fn put_file(&self, id: &str, file: &Path, size: u64) -> Result<()> {
        self.call(
            Method::PUT,
            &["images", id, "file"],
            &[],
            Body::File(file, size),
        )
        .await
        .map(drop)
    }

    pub async fn get(&self, id: &str) -> Result<Value> {
        self.call(Method::GET, &["images", id], &[], Body::None)
            .await
    }

    async fn call(
        &self,
        method: Method,
        path: &[&str],
        query: &[(&str, &str)],
        body: Body<'_>,
    ) -> Result<Value> {
        let what = format!("Glance {method} /{}", path.join("/"));
        let mut req = self.session.request(IMAGE, method, path.iter().copied());
        if !query.is_empty() {
            req = req.query(query);
        }
        req = match body {
            Body::None => req,
            Body::Json(b) => req.json(&b),
            // an upload takes longer than one API call may
            Body::File(path, size) => {
                let file = tokio::fs::File::open(path)
                    .await
                    .with_context(|| format!("reading {}", path.display()))?;
                let stream = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20);
                req.header("Content-Type", "application/octet-stream")
                    .header("Content-Length", size)
                    .timeout(Duration::from_secs(3600))
                    .body(reqwest::Body::wrap_stream(stream))
            }
        };
        let resp = req
            .send_unchecked()
            .await
            .map_err(|e| anyhow!("{what}: {e}"))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("{what}: HTTP {status}: {}", text.trim());
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).with_context(|| format!("{what}: the answer is not JSON"))
    }
}

/// The Glance properties of the image: how Nova must boot it, and what it holds.
pub fn properties(manifest: &Value, name: &str) -> Result<Value> {
    let s = |v: &Value, what: &str| -> Result<String> {
        v.as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("the manifest lacks {what}"))
    };
    let image = &manifest["image"];
    Ok(json!({
        "name": name,
        "disk_format": "qcow2",
        "container_format": "bare",
        "visibility": "private",
        "hw_disk_bus": "virtio",
        "hw_vif_model": "virtio",
        // systemd-boot on a GPT EFI system partition: UEFI firmware (OVMF), i440fx
        // (NICs at PCI slots 3, 4: ens3, ens4, as the user-data expects).
        "hw_firmware_type": "uefi",
        "hw_machine_type": "pc",
        "os_type": "linux",
        "os_distro": "debian",
        "os_version": "12",
        RECIPE_PROPERTY: s(&manifest["recipe_sha256"], "recipe_sha256")?,
        "paasgen_bake_recipe_sha256": s(&manifest["bake_recipe_sha256"], "bake_recipe_sha256")?,
        "paasgen_kernel_version": s(&image["kernel_version"], "image.kernel_version")?,
        "paasgen_kubernetes_version": s(&image["kubernetes_version"], "image.kubernetes_version")?,
        "paasgen_etcd_version": s(&image["etcd_version"], "image.etcd_version")?,
        "paasgen_containerd_version": s(&image["containerd_version"], "image.containerd_version")?,
    }))
}

/// What a Glance call sends: nothing, JSON, or a file of this size (streamed: an image
/// is larger than memory should hold).
enum Body<'a> {
    None,
    Json(Value),
    File(&'a Path, u64),
}

/// A file's size and the hashes Glance keeps (md5 checksum, sha512 os_hash) and the
/// manifest has (sha256), in one pass of 1 MiB reads.
pub struct FileSums {
    pub size: u64,
    pub sha256: String,
    pub sha512: String,
    pub md5: String,
}

impl FileSums {
    pub fn of(path: &Path) -> Result<FileSums> {
        use md5::Md5;
        use std::io::Read;
        let mut file =
            std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
        let (mut sha256, mut sha512, mut md5) = (Sha256::new(), Sha512::new(), Md5::new());
        let mut buf = vec![0; 1 << 20];
        let mut size = 0;
        loop {
            let n = file
                .read(&mut buf)
                .with_context(|| format!("reading {}", path.display()))?;
            if n == 0 {
                break;
            }
            sha256.update(&buf[..n]);
            sha512.update(&buf[..n]);
            md5.update(&buf[..n]);
            size += n as u64;
        }
        Ok(FileSums {
            size,
            sha256: crate::pki::hex(&sha256.finalize()),
            sha512: crate::pki::hex(&sha512.finalize()),
            md5: crate::pki::hex(&md5.finalize()),
        })
    }
}
