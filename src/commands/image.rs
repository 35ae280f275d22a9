//! `paasgen image upload`: the bootable disk (images/qcow2) into Glance, with its
//! recipe hash and the properties Nova boots it by. An image of the same recipe that
//! is already active there is reused, not uploaded again.

use crate::cloud::openstack::glance::{properties, FileSums, Glance};
use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub struct UploadArgs<'a> {
    /// A qcow2 made by images/qcow2 (its manifest `<file>.json` beside it); none:
    /// build (or reuse) it now.
    pub file: Option<&'a Path>,
    /// Image name [default: paasgen-node-<recipe sha12>].
    pub name: Option<&'a str>,
    pub os_cloud: Option<&'a str>,
    pub timeout: Duration,
}

pub fn upload(args: &UploadArgs) -> Result<()> {
    let qcow2 = match args.file {
        Some(f) => f.to_path_buf(),
        None => super::built_path("images/qcow2")?,
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

    crate::day2::setup::runtime()?.block_on(async {
        let glance = Glance::connect(args.os_cloud, args.timeout).await?;
        // The same recipe already there and active: reuse it. Leftovers of an
        // interrupted upload (queued, saving, killed) are removed first.
        for img in glance.with_recipe(&recipe).await? {
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
            glance.delete(&id).await?;
        }

        let sums = FileSums::of(&qcow2)?;
        let (sha256, sha512, md5) = (&sums.sha256, &sums.sha512, &sums.md5);
        if manifest["sha256"].as_str() != Some(sha256.as_str()) {
            bail!(
                "{} does not match its manifest's sha256 (rebuild with PAASGEN_QCOW2_FORCE=1)",
                qcow2.display()
            );
        }
        let id = glance.create(body).await?;
        eprintln!(
            "uploading {} ({} MiB) as image {id} ({name})",
            qcow2.display(),
            sums.size / 1_048_576
        );
        glance.put_file(&id, &qcow2, sums.size).await?;
        let img = glance.get(&id).await?;
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
