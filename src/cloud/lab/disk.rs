//! What the lab writes into a node's disk before it boots: the NoCloud seed a cloud's
//! metadata would serve, and on Kubernetes nodes the settings a container needs where a
//! VM would not.

use super::state::LabState;
use crate::fsutil::write_atomic;
use crate::render::{config_sha256, nocloud, sha256_hex, ManifestNode, Templates};
use anyhow::{bail, Context, Result};
use std::path::Path;

/// The seed under `root`: `user_data` byte for byte (checked against the manifest's
/// sha256 and size when `check`), meta-data naming `instance_id`, the network-config.
pub fn write_seed(
    lab: &LabState,
    root: &Path,
    node: &ManifestNode,
    user_data: &Path,
    check: bool,
    instance_id: &str,
) -> Result<()> {
    let bytes = std::fs::read(user_data).with_context(|| {
        format!(
            "{}: reading its user-data {}",
            node.name,
            user_data.display()
        )
    })?;
    if check {
        let got = sha256_hex(&bytes);
        if got != node.sha256 {
            bail!(
                "{}: sha256 of {} is {got}, the manifest says {}",
                node.name,
                user_data.display(),
                node.sha256
            );
        }
        if bytes.len() != node.bytes {
            bail!(
                "{}: {} has {} bytes, the manifest says {}",
                node.name,
                user_data.display(),
                bytes.len(),
                node.bytes
            );
        }
    }
    if !bytes.starts_with(b"#cloud-config") {
        bail!(
            "{}: {} is not #cloud-config",
            node.name,
            user_data.display()
        );
    }
    let seed = root.join("var/lib/cloud/seed/nocloud");
    std::fs::create_dir_all(&seed)?;
    write_atomic(&seed.join("user-data"), &bytes, 0o600)?;
    let meta = nocloud::meta_data(&node.name, instance_id)?;
    write_atomic(&seed.join("meta-data"), meta.as_bytes(), 0o600)?;
    let net = nocloud::network_config(&lab.network, node)?;
    write_atomic(&seed.join("network-config"), net.as_bytes(), 0o600)
}

/// The sha256 `launch` records for the user-data in `path` (none when it is absent).
pub fn user_data_sha256(path: &Path) -> Result<Option<String>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(config_sha256(&String::from_utf8_lossy(&bytes)))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

pub fn seed_user_data(root: &Path) -> std::path::PathBuf {
    root.join("var/lib/cloud/seed/nocloud/user-data")
}

/// Kernel tunables the kubelet sets at start unless they already hold its values:
/// /proc/sys is read-only in a node (and the host's own), so files holding its values
/// are bound over them.
const KUBELET_TUNABLES: [(&str, &str); 3] = [
    ("vm/overcommit_memory", "1"),
    ("kernel/panic", "10"),
    ("kernel/panic_on_oops", "1"),
];

/// What the lab adds to a Kubernetes node's root beside its user-data. It weakens the
/// node (no cgroup limits for pods, fixed kernel tunables), so it stays here, never in
/// what paasgen renders.
pub fn write_kubernetes_lab_files(root: &Path) -> Result<()> {
    let t = Templates::load()?;
    let plain = |name: &str| t.render(name, &tera::Context::new());
    let mut tunables = tera::Context::new();
    tunables.insert(
        "tunables",
        &KUBELET_TUNABLES.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
    );
    let files = [
        (
            "etc/default/paasgen-kubeadm",
            plain("lab/kubeadm-defaults.tera")?,
        ),
        ("etc/default/kubelet", plain("lab/kubelet-defaults.tera")?),
        (
            "etc/paasgen-lab/kubelet.conf.d/90-lab.conf",
            plain("lab/kubelet-lab.conf.tera")?,
        ),
        (
            "etc/containerd/conf.d/90-lab.toml",
            plain("lab/containerd-lab.toml.tera")?,
        ),
        (
            "etc/systemd/system/paasgen-lab-sysctl.service",
            t.render("lab/lab-sysctl.service.tera", &tunables)?,
        ),
        (
            // nspawn mounts the v1 hierarchies read-only; each is the node's own subtree
            // (its cgroup namespace), which containerd and the kubelet must write.
            "etc/systemd/system/paasgen-lab-cgroup-rw.service",
            plain("lab/lab-cgroup-rw.service.tera")?,
        ),
    ];
    for (path, text) in &files {
        write_file(&root.join(path), text.as_bytes())?;
    }
    for (tunable, value) in KUBELET_TUNABLES {
        write_file(
            &root.join("etc/paasgen-lab/sysctl").join(tunable),
            format!("{value}\n").as_bytes(),
        )?;
    }
    for (unit, wanted_by) in [
        ("paasgen-lab-sysctl.service", "kubelet.service.wants"),
        ("paasgen-lab-cgroup-rw.service", "sysinit.target.wants"),
    ] {
        let dir = root.join("etc/systemd/system").join(wanted_by);
        std::fs::create_dir_all(&dir)?;
        let link = dir.join(unit);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(format!("../{unit}"), &link)
            .with_context(|| format!("linking {}", link.display()))?;
    }
    Ok(())
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    write_atomic(path, bytes, 0o644)
}
