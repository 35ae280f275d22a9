//! `lab up` and `lab down`: the fabric, the nodes' NICs, disks and seeds, their boot;
//! and everything gone again, the one-lab-per-machine lock last.

use super::disk::{write_kubernetes_lab_files, write_seed};
use super::host::{children, detached, need_root, signal};
use super::state::{Kind, LabNode, LabState};
use super::{log, Lab};
use crate::render::read_manifest;
use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The port the remote host's stand-in answers on (with the address it sees).
const REMOTE_PORT: &str = "8080";

pub struct UpOptions {
    /// A render output (manifest.json and the user-data files).
    pub out: PathBuf,
    /// The baked image (a tarball from images/bake).
    pub image: PathBuf,
    pub kubernetes: bool,
    /// A scripts/lab-mirror output served on the remote host.
    pub mirror: Option<PathBuf>,
    /// Nodes booted from the image without its Kubernetes software (a stock image).
    pub stock: Vec<String>,
    /// How long to wait for another lab to go.
    pub lock_wait: Duration,
}

impl Lab {
    pub fn up(&self, o: &UpOptions) -> Result<()> {
        need_root()?;
        if let Some(m) = &o.mirror {
            if !m.join(".complete").exists() {
                bail!("{} is not a scripts/lab-mirror output", m.display());
            }
        }
        let out = o
            .out
            .canonicalize()
            .with_context(|| format!("render output {}", o.out.display()))?;
        for tool in ["systemd-nspawn", "nsenter", "ip", "openssl", "flock"] {
            if !on_path(tool) {
                bail!("missing tool {tool} (run images/bake, it installs them)");
            }
        }
        let holder = self.acquire_lock(o.lock_wait)?;
        // We hold the lock: anything left of a lab is stale.
        if self.host.dir.exists() || !lab_namespaces().is_empty() {
            log("removing a stale lab");
            let _ = self.down_keeping(Some(holder));
        }
        std::fs::create_dir_all(self.host.dir.join("nodes"))?;
        std::fs::write(self.host.dir.join("lock.pid"), holder.to_string())?;
        let result = self.bring_up(&out, o);
        if result.is_err() {
            log("up failed; cleaning up");
            let _ = self.down();
        }
        result
    }

    pub(super) fn bring_up(&self, out: &Path, o: &UpOptions) -> Result<()> {
        let cgroup_root = cgroup_root()?;
        raise_inotify_limits()?;
        let manifest = read_manifest(out)?;
        let image = o.image.to_string_lossy();
        let lower = PathBuf::from(format!(
            "{}.rootfs",
            image.strip_suffix(".tar").unwrap_or(&image)
        ));
        if !lower.join(".unpacked").exists() {
            self.host
                .run("unpack", &[&image, &lower.to_string_lossy()])?;
        }
        let lab = LabState {
            cluster: manifest.cluster.clone(),
            out: out.to_path_buf(),
            lower,
            cgroup_root,
            kubernetes: o.kubernetes,
            network: manifest.network.clone(),
            nodes: manifest
                .nodes
                .iter()
                .enumerate()
                .map(|(i, n)| LabNode {
                    index: i + 1,
                    node: n.clone(),
                })
                .collect(),
        };
        for name in &o.stock {
            lab.booted(name)?;
        }
        lab.save(&self.host.dir)?;
        let Some(gateway) = &lab.network.public_gateway else {
            bail!("the lab needs fixed public addresses (network.public: fixed)");
        };
        self.host
            .run("fabric", &[&lab.network.on_public(gateway)?])?;
        self.host
            .run("standin", &["remote", "@peer", "-", "-", "-", REMOTE_PORT])?;
        if let Some(m) = &o.mirror {
            let dir = m.canonicalize()?;
            self.host.run("mirror", &[&dir.to_string_lossy()])?;
        }
        for n in &lab.nodes {
            self.plug(&lab, n)?;
            let name = &n.node.name;
            match lab.kind(n) {
                Kind::Booted => {
                    self.mount(&lab, name)?;
                    let root = self.root(name);
                    let user_data = out.join(&n.node.user_data);
                    let iid = format!("iid-{}-{name}", lab.cluster);
                    write_seed(&lab, &root, &n.node, &user_data, true, &iid)?;
                    if n.runs_kubernetes() {
                        write_kubernetes_lab_files(&root)?;
                    }
                    if o.stock.contains(name) {
                        self.host.run("stock", &[name])?;
                    }
                }
                Kind::StandIn => {
                    // what this "server" was launched with, for --cloud lab's inventory
                    let dir = self.host.node_dir(name);
                    std::fs::create_dir_all(&dir)?;
                    std::fs::copy(out.join(&n.node.user_data), dir.join("user-data"))?;
                    let address = lab.network.on_private(&n.node.private_ip)?;
                    self.start_standin(&lab, n, &address, &lab.network.private_vip)?;
                }
            }
        }
        let booted: Vec<&LabNode> = lab
            .nodes
            .iter()
            .filter(|n| lab.kind(n) == Kind::Booted)
            .collect();
        for n in &booted {
            self.boot(&lab, n)?;
        }
        for n in &booted {
            self.wait_leader(&n.node.name)?;
        }
        log(format!(
            "up: {} nodes booting, {} stand-ins",
            booted.len(),
            lab.nodes.len() - booted.len()
        ));
        Ok(())
    }

    // ---------------------------------------------------------------- down ----

    /// Removes everything `up` made, lock last (idempotent).
    pub fn down(&self) -> Result<()> {
        need_root()?;
        self.down_keeping(None)
    }

    pub(super) fn down_keeping(&self, keep_holder: Option<i32>) -> Result<()> {
        let cgroup_root = self
            .state()
            .map(|s| s.cgroup_root.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.host.run("sweep", &[&cgroup_root])?;
        // The lock goes last: a lab waiting for it must find nothing of this one left.
        for pid in lock_holders(&self.host.lock) {
            if Some(pid) != keep_holder {
                signal(-pid, libc::SIGTERM);
            }
        }
        log("down: clean");
        Ok(())
    }

    /// Holds the lab lock in a process of its own (`down` ends it), waiting up to `wait`.
    pub(super) fn acquire_lock(&self, wait: Duration) -> Result<i32> {
        let mut child = detached(
            Command::new("flock")
                .args(["-x", "-w", &wait.as_secs().to_string()])
                .arg(&self.host.lock)
                .args(["sh", "-c", "echo locked; exec sleep 2147483647"]),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("running flock")?;
        let mut line = String::new();
        if let Some(stdout) = child.stdout.take() {
            BufReader::new(stdout).read_line(&mut line)?;
        }
        if line.trim() != "locked" {
            let _ = child.wait();
            bail!(
                "another lab is up (lock {} is held); set PAASGEN_LAB_LOCK_WAIT=SECONDS to wait for it",
                self.host.lock.display()
            );
        }
        Ok(child.id() as i32)
    }
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

/// The lab's network namespaces still present.
fn lab_namespaces() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("plab-"))
                .collect()
        })
        .unwrap_or_default()
}

/// Processes holding the lab lock at `lock`, as `acquire_lock` starts them (one that
/// holds it has started its child; one still waiting, another lab's, has none).
fn lock_holders(lock: &Path) -> Vec<i32> {
    let want = format!(" {} sh -c echo locked", lock.display());
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter_map(|p| {
            let pid: i32 = p.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(p.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            (cmdline.starts_with("flock -x -w ")
                && cmdline.contains(&want)
                && !children(pid).is_empty())
            .then_some(pid)
        })
        .collect()
}

/// Where the nodes' cgroups go: the cgroup2 hierarchy, mounted at /sys/fs/cgroup or, on
/// a host in hybrid mode, at /sys/fs/cgroup/unified.
fn cgroup_root() -> Result<PathBuf> {
    const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
    let is_cgroup2 = |path: &str| {
        let c = std::ffi::CString::new(path).expect("no NUL");
        // SAFETY: statfs with a valid C string and a zeroed buffer it fills.
        unsafe {
            let mut buf: libc::statfs = std::mem::zeroed();
            libc::statfs(c.as_ptr(), &mut buf) == 0 && buf.f_type as i64 == CGROUP2_SUPER_MAGIC
        }
    };
    if is_cgroup2("/sys/fs/cgroup") {
        Ok(PathBuf::from("/sys/fs/cgroup/paasgen-lab"))
    } else if is_cgroup2("/sys/fs/cgroup/unified") {
        Ok(PathBuf::from("/sys/fs/cgroup/unified/paasgen-lab"))
    } else {
        bail!("need a cgroup2 hierarchy (/sys/fs/cgroup/unified)")
    }
}

/// Every node's systemd, kubelet, containerd, API server... holds inotify instances, all
/// as the host's root: the default 128 runs out once a cluster is replaced node by node
/// ("too many open files" from kube-proxy, flannel). Raised, never lowered.
fn raise_inotify_limits() -> Result<()> {
    for (key, want) in [
        ("fs/inotify/max_user_instances", 8192u64),
        ("fs/inotify/max_user_watches", 1_048_576),
    ] {
        let path = Path::new("/proc/sys").join(key);
        let now: u64 = std::fs::read_to_string(&path)?.trim().parse()?;
        if now < want {
            log(format!(
                "raising {} from {now} to {want}",
                key.replace('/', ".")
            ));
            std::fs::write(&path, want.to_string())?;
        }
    }
    Ok(())
}
