//! The lab's verbs: bring a render up as nodes on a local fabric, power nodes off and
//! on, delete and recreate them as a cloud does its servers, tear it all down.
//! The logic is here; `scripts/lab` does only what drives a host tool (see host.rs).

use super::disk::{write_kubernetes_lab_files, write_seed};
use super::host::{alive, children, detached, need_root, signal, Host};
use super::state::{Kind, LabNode, LabState};
use crate::render::read_manifest;
use crate::spec::Role;
use anyhow::{bail, Context, Result};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What Nova's compute waits for a guest asked to power off before it destroys it
/// (its `shutdown_timeout`).
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a booting container may take to show its PID 1.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// The port the remote host's stand-in answers on (with the address it sees).
const REMOTE_PORT: &str = "8080";
/// Namespaces that are not nodes, for `exec`.
const FABRIC_NAMESPACES: [(&str, &str); 3] = [
    ("remote", "plab-remote"),
    ("internet", "plab-inet"),
    ("net", "plab-net"),
];

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

pub struct Lab {
    pub host: Host,
}

fn log(msg: impl std::fmt::Display) {
    eprintln!("lab: {msg}");
}

impl Lab {
    pub fn new(script: PathBuf) -> Lab {
        Lab {
            host: Host::from_env(script),
        }
    }

    pub fn state(&self) -> Result<LabState> {
        LabState::load(&self.host.dir)
    }

    // ------------------------------------------------------------------ up ----

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

    fn bring_up(&self, out: &Path, o: &UpOptions) -> Result<()> {
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
        let (Some(gateway), Some(cidr)) = (&lab.network.public_gateway, &lab.network.public_cidr)
        else {
            bail!("the lab needs fixed public addresses (network.public: fixed)");
        };
        let prefix = cidr.split('/').nth(1).unwrap_or("24");
        self.host.run("fabric", &[&format!("{gateway}/{prefix}")])?;
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
                    if is_kubernetes(n) {
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
                    let prefix = lab.network.private_cidr.split('/').nth(1).unwrap_or("24");
                    let address = format!("{}/{prefix}", n.node.private_ip);
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

    fn down_keeping(&self, keep_holder: Option<i32>) -> Result<()> {
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
    fn acquire_lock(&self, wait: Duration) -> Result<i32> {
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

    // ------------------------------------------------------------- inspect ----

    /// Until cloud-init finished on every booted node (each within `timeout`).
    pub fn wait(&self, timeout: Duration) -> Result<()> {
        let lab = self.state()?;
        let failed: Vec<String> = std::thread::scope(|s| {
            let waits: Vec<_> = lab
                .nodes
                .iter()
                .filter(|n| lab.kind(n) == Kind::Booted)
                .map(|n| {
                    let name = n.node.name.clone();
                    s.spawn(move || (self.wait_cloud_init(&name, timeout), name))
                })
                .collect();
            waits
                .into_iter()
                .filter_map(|w| match w.join() {
                    Ok((true, _)) => None,
                    Ok((false, name)) => Some(name),
                    Err(_) => Some("?".into()),
                })
                .collect()
        });
        for name in &failed {
            log(format!("{name}: cloud-init did not finish cleanly"));
        }
        if !failed.is_empty() {
            bail!("cloud-init did not finish cleanly on {}", failed.join(", "));
        }
        Ok(())
    }

    fn wait_cloud_init(&self, node: &str, timeout: Duration) -> bool {
        let run = |argv: &[&str]| -> Option<Command> {
            let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
            self.host.in_node(node, &argv).ok()
        };
        // Right after boot `cloud-init status --wait` may return at once (its generator
        // has not run yet): cloud-final's result comes first.
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            let done = run(&["test", "-e", "/run/cloud-init/result.json"])
                .and_then(|mut c| c.stdout(Stdio::null()).stderr(Stdio::null()).status().ok())
                .is_some_and(|s| s.success());
            if done {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        let finished = run(&["cloud-init", "status", "--wait"])
            .and_then(|mut c| c.stdout(Stdio::null()).spawn().ok())
            .is_some_and(|child| wait_for(child, timeout));
        if !finished {
            if let Some(mut c) = run(&["cloud-init", "status", "--long"]) {
                let _ = c.stdout(std::io::stderr()).status();
            }
        }
        finished
    }

    /// Nodes, their state and addresses.
    pub fn status(&self) -> Result<String> {
        let lab = self.state()?;
        let mut s = format!(
            "{:<10} {:<8} {:<8} {:<16} {:<16} ADDRS\n",
            "NODE", "ROLE", "STATE", "PRIVATE", "PUBLIC"
        );
        for n in &lab.nodes {
            let name = &n.node.name;
            let (state, addrs) = match lab.kind(n) {
                Kind::Booted => match self.host.leader(name) {
                    Some(l) => (
                        format!("pid:{l}"),
                        addresses(Command::new("nsenter").args(["-t", &l.to_string(), "-n"])),
                    ),
                    None => ("off".to_string(), String::new()),
                },
                Kind::StandIn => {
                    let up = self.host.pid_file(name, "standin.pid").is_some_and(alive);
                    let ns = format!("plab-{name}");
                    let addrs = addresses(Command::new("ip").args(["-n", &ns]));
                    (if up { "standin" } else { "off" }.to_string(), addrs)
                }
            };
            s.push_str(&format!(
                "{:<10} {:<8} {:<8} {:<16} {:<16} {}\n",
                name,
                n.node.role.as_str(),
                state,
                n.node.private_ip,
                n.node.public_ip.as_deref().unwrap_or("-"),
                addrs.trim_end()
            ));
        }
        Ok(s)
    }

    /// The command that runs `argv` inside `node` (or the fabric's `remote`, `internet`,
    /// `net` namespaces).
    pub fn exec_command(&self, node: &str, argv: &[String]) -> Result<Command> {
        let lab = self.state()?;
        let netns = |ns: &str| {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).args(argv);
            c
        };
        if let Some((_, ns)) = FABRIC_NAMESPACES.iter().find(|(n, _)| *n == node) {
            return Ok(netns(ns));
        }
        let n = lab.node(node)?;
        match lab.kind(n) {
            Kind::Booted => self.host.in_node(node, argv),
            Kind::StandIn => Ok(netns(&format!("plab-{node}"))),
        }
    }

    pub fn leader(&self, node: &str) -> Result<i32> {
        self.state()?.booted(node)?;
        self.host
            .leader(node)
            .with_context(|| format!("{node} is not running"))
    }

    // --------------------------------------------------------------- power ----

    /// Powers a node off at once (kill -9; its NICs go); a stand-in stops listening.
    pub fn stop(&self, node: &str) -> Result<()> {
        need_root()?;
        let lab = self.state()?;
        let n = lab.node(node)?;
        match lab.kind(n) {
            Kind::Booted => {
                let _lock = self.lock_node(node)?;
                self.power_off(n)
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
        self.power_off(n)
    }

    /// What deleting a server does: the node is gone, and so is its disk.
    pub fn remove(&self, node: &str) -> Result<()> {
        need_root()?;
        let lab = self.state()?;
        let n = lab.booted(node)?;
        let _lock = self.lock_node(node)?;
        self.remove_locked(n)
    }

    fn remove_locked(&self, n: &LabNode) -> Result<()> {
        self.power_off(n)?;
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
            self.remove_locked(n)?;
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
        if is_kubernetes(n) {
            write_kubernetes_lab_files(&root)?;
        }
        std::fs::remove_file(self.host.node_dir(node).join("removed"))?;
        self.boot(&lab, n)?;
        self.wait_leader(node)
    }

    pub fn removed(&self, node: &str) -> bool {
        self.host.node_dir(node).join("removed").exists()
    }

    // ------------------------------------------------------------- pieces ----

    /// The node's disk: an overlay of the image.
    pub fn root(&self, node: &str) -> PathBuf {
        self.host.node_dir(node).join("merged")
    }

    /// Serialises what changes a node's power, disk and NICs (flock on a file of the
    /// node's; std opens it close-on-exec, so the node's processes never hold it).
    fn lock_node(&self, node: &str) -> Result<File> {
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
    fn plug(&self, lab: &LabState, n: &LabNode) -> Result<()> {
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

    fn mount(&self, lab: &LabState, node: &str) -> Result<()> {
        self.host
            .run("mount-disk", &[node, &lab.lower.to_string_lossy()])
    }

    fn kill(&self, lab: &LabState, node: &str) -> Result<()> {
        let leader = self
            .host
            .leader(node)
            .map_or_else(|| "-".to_string(), |l| l.to_string());
        self.host.run(
            "kill-node",
            &[node, &lab.cgroup_root.to_string_lossy(), &leader],
        )
    }

    fn power_off(&self, n: &LabNode) -> Result<()> {
        let lab = self.state()?;
        self.kill(&lab, &n.node.name)?;
        self.host
            .run("node-net-down", &[&n.node.name, &n.index.to_string()])
    }

    fn start_standin(&self, lab: &LabState, n: &LabNode, address: &str, via: &str) -> Result<()> {
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
    fn boot(&self, lab: &LabState, n: &LabNode) -> Result<()> {
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
        let legacy = is_kubernetes(n);
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

    fn wait_leader(&self, node: &str) -> Result<()> {
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

fn is_kubernetes(n: &LabNode) -> bool {
    matches!(n.node.role, Role::Master | Role::Worker)
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

/// `ip -4 -o addr show scope global` through `prefix` (a netns or nsenter), as
/// "ens3:192.168.0.2/24 ...".
fn addresses(prefix: &mut Command) -> String {
    let out = prefix
        .args(["ip", "-4", "-o", "addr", "show", "scope", "global"])
        .stderr(Stdio::null())
        .output();
    let Ok(out) = out else { return String::new() };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some(format!("{}:{} ", f.get(1)?, f.get(3)?))
        })
        .collect()
}

/// Waits for `child` up to `timeout` (then kills it): whether it exited 0.
fn wait_for(mut child: std::process::Child, timeout: Duration) -> bool {
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if start.elapsed() < timeout => std::thread::sleep(Duration::from_millis(200)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
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
