//! A node's power, disk and NICs, changed as a cloud changes its servers': stop and
//! start, a clean shutdown, delete, create anew in the same place.

use super::disk::{write_kubernetes_lab_files, write_seed};
use super::host::{alive, detached, need_root, signal};
use super::state::{Kind, LabNode, LabState};
use super::{log, Lab};
use crate::spec::Role;
use anyhow::{bail, Context, Result};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What Nova's compute waits for a guest asked to power off before it destroys it
/// (its `shutdown_timeout`).
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a booting container may take to show its PID 1.
const START_TIMEOUT: Duration = Duration::from_secs(60);

impl Lab {
    /// Powers a node off at once (kill -9; its NICs go); a stand-in stops listening.
    pub fn stop(&self, node: &str) -> Result<()> {
        need_root()?;
        let lab = self.state()?;
        let n = lab.node(node)?;
        match lab.kind(n) {
            Kind::Booted => {
                let _lock = self.lock_node(node)?;
                self.power_off(&lab, n)
            }
            Kind::StandIn => self.host.run("standin-stop", &[node]),
        }
    }

    /// Boots a powered-off node again from its disk; a stand-in listens again.
    pub fn start(&self, node: &str) -> Result<()> {
        need_root()?;
        let lab = self.state()?;
        let n = lab.node(node)?;
        if lab.kind(n) == Kind::StandIn {
            self.host.run("standin-stop", &[node])?;
            return self.start_standin(&lab, n, "-", "-");
        }
        let _lock = self.lock_node(node)?;
        if self.removed(node) {
            bail!("{node} was removed (lab replace NODE USER_DATA makes a new one)");
        }
        if self.host.leader(node).is_some() {
            bail!("{node} is running");
        }
        self.kill(&lab, node)?;
        self.plug(&lab, n)?;
        self.mount(&lab, node)?;
        self.boot(&lab, n)?;
        self.wait_leader(node)
    }

    /// What a cloud's server stop does (Nova's): the guest is asked to power off and the
    /// call returns; a guest still running after `SHUTDOWN_TIMEOUT` is destroyed. That
    /// part runs detached (`lab finish-shutdown`).
    pub fn shutdown(&self, node: &str) -> Result<()> {
        need_root()?;
        self.state()?.booted(node)?;
        let (Some(leader), Some(nspawn)) = (
            self.host.leader(node),
            self.host.pid_file(node, "nspawn.pid"),
        ) else {
            return Ok(()); // off already
        };
        // SIGRTMIN+3 asks systemd (the container's PID 1) to power off.
        signal(leader, libc::SIGRTMIN() + 3);
        let dir = self.host.node_dir(node);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("shutdown.log"))?;
        let finisher = detached(
            Command::new(std::env::current_exe()?)
                .args(["lab", "finish-shutdown", node, &nspawn.to_string()])
                .env("PAASGEN_LAB_DIR", &self.host.dir)
                .env("PAASGEN_LAB_DATA", &self.host.data),
        )
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting the shutdown's finishing step")?;
        std::fs::write(dir.join("shutdown.pid"), finisher.id().to_string())?;
        Ok(())
    }

    /// The detached end of `shutdown`: waits for the container (nspawn `nspawn_pid`) to
    /// go, destroys it after `SHUTDOWN_TIMEOUT`; leaves alone a node removed or booted
    /// again meanwhile.
    pub fn finish_shutdown(&self, node: &str, nspawn_pid: i32) -> Result<()> {
        let lab = self.state()?;
        let n = lab.booted(node)?;
        let start = Instant::now();
        while alive(nspawn_pid) && start.elapsed() < SHUTDOWN_TIMEOUT {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _lock = self.lock_node(node)?;
        if self.host.pid_file(node, "nspawn.pid") != Some(nspawn_pid) {
            return Ok(());
        }
        if alive(nspawn_pid) {
            log(format!(
                "{node}: no clean power-off within {} s; destroyed",
                SHUTDOWN_TIMEOUT.as_secs()
            ));
        }
        self.power_off(&lab, n)
    }

    /// What deleting a server does: the node is gone, and so is its disk.
    pub fn remove(&self, node: &str) -> Result<()> {
        need_root()?;
        let lab = self.state()?;
        let n = lab.booted(node)?;
        let _lock = self.lock_node(node)?;
        self.remove_locked(&lab, n)
    }

    pub(super) fn remove_locked(&self, lab: &LabState, n: &LabNode) -> Result<()> {
        self.keep_journal(&n.node.name);
        self.power_off(lab, n)?;
        self.host.run("drop-disk", &[&n.node.name])?;
        File::create(self.host.node_dir(&n.node.name).join("removed"))?;
        Ok(())
    }

    /// What creating a server does: a fresh disk from the image, the node's NICs with
    /// their fixed addresses, and `user_data` as its user-data (a new instance id).
    pub fn replace(&self, node: &str, user_data: &Path) -> Result<()> {
        need_root()?;
        let lab = self.state()?;
        let n = lab.booted(node)?;
        if !user_data.is_file() {
            bail!("no user-data file {}", user_data.display());
        }
        let _lock = self.lock_node(node)?;
        if !self.removed(node) {
            self.remove_locked(&lab, n)?;
        }
        self.plug(&lab, n)?;
        self.mount(&lab, node)?;
        let kept = self.host.node_dir(node).join("user-data");
        std::fs::copy(user_data, &kept)?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos();
        let iid = format!("iid-{}-{node}-{nanos}", lab.cluster);
        let root = self.root(node);
        write_seed(&lab, &root, &n.node, &kept, false, &iid)?;
        if n.runs_kubernetes() {
            write_kubernetes_lab_files(&root)?;
        }
        std::fs::remove_file(self.host.node_dir(node).join("removed"))?;
        self.boot(&lab, n)?;
        self.wait_leader(node)
    }

    /// A running node's journal, kept beside its state as `journal-K.log` before its disk
    /// goes: what a failed test shows of a node's life before it was replaced. Best
    /// effort (a node that cannot answer within 30 s leaves none): a delete never waits
    /// on it longer.
    fn keep_journal(&self, node: &str) {
        let argv = [
            "timeout",
            "30",
            "journalctl",
            "--no-pager",
            "-o",
            "short-precise",
        ]
        .map(String::from);
        let Ok(mut journalctl) = self.host.in_node(node, &argv) else {
            return; // not running
        };
        let dir = self.host.node_dir(node);
        let kept = (1..)
            .map(|k| dir.join(format!("journal-{k}.log")))
            .find(|p| !p.exists())
            .expect("an unused name");
        match journalctl.stderr(Stdio::null()).output() {
            Ok(out) if !out.stdout.is_empty() => {
                if let Err(e) = std::fs::write(&kept, &out.stdout) {
                    log(format!("{node}: cannot keep its journal: {e}"));
                }
            }
            _ => log(format!("{node}: its journal could not be read; none kept")),
        }
    }

    pub fn removed(&self, node: &str) -> bool {
        self.host.node_dir(node).join("removed").exists()
    }

    // ------------------------------------------------------------- pieces ----

    /// The node's disk: an overlay of the image.
    pub(super) fn root(&self, node: &str) -> PathBuf {
        self.host.node_dir(node).join("merged")
    }

    /// Serialises what changes a node's power, disk and NICs (flock on a file of the
    /// node's; std opens it close-on-exec, so the node's processes never hold it).
    pub(super) fn lock_node(&self, node: &str) -> Result<File> {
        let dir = self.host.node_dir(node);
        std::fs::create_dir_all(&dir)?;
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("power.lock"))?;
        file.lock()
            .with_context(|| format!("locking {node}'s power"))?;
        Ok(file)
    }

    /// The node's NICs on the fabric (new ones on every boot, as a powered-off node has
    /// none: nothing of it, VIPs included, survives on the wire).
    pub(super) fn plug(&self, lab: &LabState, n: &LabNode) -> Result<()> {
        let index = n.index.to_string();
        let mut args = vec![
            n.node.name.as_str(),
            index.as_str(),
            lab.network.private_interface.as_str(),
        ];
        if n.node.role == Role::Gateway {
            if let Some(public) = &lab.network.public_interface {
                args.push(public);
            }
        }
        self.host.run("node-net", &args)
    }

    pub(super) fn mount(&self, lab: &LabState, node: &str) -> Result<()> {
        self.host
            .run("mount-disk", &[node, &lab.lower.to_string_lossy()])
    }

    pub(super) fn kill(&self, lab: &LabState, node: &str) -> Result<()> {
        let leader = self
            .host
            .leader(node)
            .map_or_else(|| "-".to_string(), |l| l.to_string());
        self.host.run(
            "kill-node",
            &[node, &lab.cgroup_root.to_string_lossy(), &leader],
        )
    }

    pub(super) fn power_off(&self, lab: &LabState, n: &LabNode) -> Result<()> {
        self.kill(lab, &n.node.name)?;
        self.host
            .run("node-net-down", &[&n.node.name, &n.index.to_string()])
    }

    pub(super) fn start_standin(
        &self,
        lab: &LabState,
        n: &LabNode,
        address: &str,
        via: &str,
    ) -> Result<()> {
        let net = &lab.network;
        let ports = match n.node.role {
            Role::Master => vec![net.api_port.to_string()],
            _ => vec![
                net.ingress_http_node_port.to_string(),
                net.ingress_https_node_port.to_string(),
            ],
        };
        let name = &n.node.name;
        let interface = if address == "-" {
            "-"
        } else {
            &net.private_interface
        };
        let mut args = vec![name.as_str(), name.as_str(), interface, address, via];
        args.extend(ports.iter().map(String::as_str));
        self.host.run("standin", &args)
    }

    /// Boots the node's disk in systemd-nspawn, detached, in a cgroup of its own, moving
    /// its NICs into the container (a private network: CAP_NET_ADMIN, writable
    /// /proc/sys/net). Kubernetes nodes get what containerd and runc need.
    pub(super) fn boot(&self, lab: &LabState, n: &LabNode) -> Result<()> {
        let name = &n.node.name;
        let dir = self.host.node_dir(name);
        let cgroup = lab.cgroup_root.join(name);
        std::fs::create_dir_all(&cgroup)?;
        let mut args: Vec<String> = vec![
            "-b".into(),
            "-q".into(),
            "-D".into(),
            dir.join("merged").to_string_lossy().into_owned(),
            format!("--machine={name}"),
            "--register=no".into(),
            "--keep-unit".into(),
            format!("--network-interface={}", lab.network.private_interface),
        ];
        if n.node.role == Role::Gateway {
            if let Some(public) = &lab.network.public_interface {
                args.push(format!("--network-interface={public}"));
            }
        }
        let legacy = n.runs_kubernetes();
        if legacy {
            let containerd = self.host.data.join(name).join("containerd");
            std::fs::create_dir_all(&containerd)?;
            args.extend([
                "--capability=all".into(),
                "--system-call-filter=@keyring bpf".into(),
                "--bind=/dev/kmsg".into(),
                format!("--bind={}:/var/lib/containerd", containerd.display()),
            ]);
        }
        args.extend(
            [
                "--resolv-conf=off",
                "--timezone=off",
                "--link-journal=no",
                "--console=pipe",
            ]
            .map(String::from),
        );
        let console = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("console.log"))?;
        let child = detached(
            self.host
                .command("nspawn")
                .arg(&cgroup)
                .arg(format!("plab-{name}"))
                .arg(if legacy { "1" } else { "0" })
                .args(&args),
        )
        .stdout(console.try_clone()?)
        .stderr(console)
        .spawn()
        .with_context(|| format!("{name}: starting systemd-nspawn"))?;
        std::fs::write(dir.join("nspawn.pid"), child.id().to_string())?;
        Ok(())
    }

    pub(super) fn wait_leader(&self, node: &str) -> Result<()> {
        let start = Instant::now();
        while start.elapsed() < START_TIMEOUT {
            if self.host.leader(node).is_some() {
                return Ok(());
            }
            if !self.host.pid_file(node, "nspawn.pid").is_some_and(alive) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let console = std::fs::read_to_string(self.host.node_dir(node).join("console.log"))
            .unwrap_or_default();
        let tail: Vec<&str> = console.lines().rev().take(20).collect();
        for line in tail.iter().rev() {
            eprintln!("{line}");
        }
        bail!("{node}: container did not start")
    }
}
