//! `paasgen image upload`: the bootable disk (images/qcow2) into Glance, with its
//! recipe hash and the properties Nova boots it by. An image of the same recipe that
//! is already active there is reused, not uploaded again.

use anyhow::{anyhow, bail, Context, Result};
use osauth::services::IMAGE;
use osauth::Session;
use reqwest::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256, Sha512};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The Glance property holding the disk's recipe hash (images/qcow2's cache key).
pub const RECIPE_PROPERTY: &str = "paasgen_recipe_sha256";

pub struct UploadArgs<'a> {
    /// A qcow2 made by images/qcow2 (its manifest `<file>.json` beside it); none:
    /// build (or reuse) it now.
    pub file: Option<&'a Path>,
    /// Image name [default: paasgen-node-<recipe sha12>].
    pub name: Option<&'a str>,
    pub os_cloud: Option<&'a str>,
    pub timeout: Duration,
}

/// The path images/qcow2 prints last (building the disk when its recipe changed).
fn build_qcow2() -> Result<PathBuf> {
    let script = super::script_path("images/qcow2")?;
    let out = std::process::Command::new(&script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!("images/qcow2 failed ({})", out.status);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let path = text
        .lines()
        .last()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .ok_or_else(|| anyhow!("images/qcow2 printed no path"))?;
    Ok(PathBuf::from(path))
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
struct FileSums {
    size: u64,
    sha256: String,
    sha512: String,
    md5: String,
}

impl FileSums {
    fn of(path: &Path) -> Result<FileSums> {
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

async fn glance(
    session: &Session,
    method: Method,
    path: &[&str],
    query: &[(&str, &str)],
    body: Body<'_>,
) -> Result<Value> {
    let what = format!("Glance {method} /{}", path.join("/"));
    let mut req = session.request(IMAGE, method, path.iter().copied());
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

pub fn upload(args: &UploadArgs) -> Result<()> {
    let qcow2 = match args.file {
        Some(f) => f.to_path_buf(),
        None => build_qcow2()?,
    };
    let manifest_path = PathBuf::from(format!("{}.json", qcow2.display()));
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(&manifest_path)
            .with_context(|| format!("reading {}", manifest_path.display()))?,
    )
    .with_context(|| format!("{} is not JSON", manifest_path.display()))?;
    let recipe = manifest["recipe_sha256"]
        .as_str()
        .filter(|r| r.len() == 64)
        .ok_or_else(|| anyhow!("{}: no recipe_sha256", manifest_path.display()))?
        .to_string();
    let name = args
        .name
        .map(str::to_string)
        .unwrap_or_else(|| format!("paasgen-node-{}", &recipe[..12]));
    let body = properties(&manifest, &name)?;

    super::cloud::runtime()?.block_on(async {
        let session = connect(args).await?;
        // The same recipe already there and active: reuse it. Leftovers of an
        // interrupted upload (queued, saving, killed) are removed first.
        let found = glance(
            &session,
            Method::GET,
            &["images"],
            &[(RECIPE_PROPERTY, recipe.as_str())],
            Body::None,
        )
        .await?;
        for img in found["images"].as_array().cloned().unwrap_or_default() {
            let id = img["id"].as_str().unwrap_or_default().to_string();
            if img["status"] == "active" {
                println!(
                    "reused image {id} ({}): recipe {recipe} is already in Glance",
                    img["name"].as_str().unwrap_or_default()
                );
                return Ok(());
            }
            eprintln!(
                "removing image {id}: status {}, left by an interrupted upload",
                img["status"]
            );
            glance(&session, Method::DELETE, &["images", &id], &[], Body::None).await?;
        }

        let sums = FileSums::of(&qcow2)?;
        let (sha256, sha512, md5) = (&sums.sha256, &sums.sha512, &sums.md5);
        if manifest["sha256"].as_str() != Some(sha256.as_str()) {
            bail!(
                "{} does not match its manifest's sha256 (rebuild with PAASGEN_QCOW2_FORCE=1)",
                qcow2.display()
            );
        }
        let created = glance(&session, Method::POST, &["images"], &[], Body::Json(body)).await?;
        let id = created["id"]
            .as_str()
            .ok_or_else(|| anyhow!("Glance gave no image id: {created}"))?
            .to_string();
        eprintln!(
            "uploading {} ({} MiB) as image {id} ({name})",
            qcow2.display(),
            sums.size / 1_048_576
        );
        glance(
            &session,
            Method::PUT,
            &["images", &id, "file"],
            &[],
            Body::File(&qcow2, sums.size),
        )
        .await?;
        let img = glance(&session, Method::GET, &["images", &id], &[], Body::None).await?;
        if img["status"] != "active" {
            bail!(
                "image {id} is {} after the upload, not active",
                img["status"]
            );
        }
        // Glance's own hashes of what it stored against ours.
        if let Some(sum) = img["checksum"].as_str() {
            if sum != md5.as_str() {
                bail!("image {id}: Glance's checksum {sum} differs from the file's md5 {md5}");
            }
        }
        match (img["os_hash_algo"].as_str(), img["os_hash_value"].as_str()) {
            (Some("sha512"), Some(v)) if v != sha512.as_str() => {
                bail!("image {id}: Glance's sha512 {v} differs from the file's {sha512}")
            }
            (Some("sha256"), Some(v)) if v != sha256.as_str() => {
                bail!("image {id}: Glance's sha256 {v} differs from the file's {sha256}")
            }
            _ => {}
        }
        println!("uploaded image {id} ({name}): recipe {recipe}, sha256 {sha256}");
        Ok(())
    })
}

async fn connect(args: &UploadArgs<'_>) -> Result<Session> {
    crate::cloud::openstack::connect(args.os_cloud, args.timeout).await
}
