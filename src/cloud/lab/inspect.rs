//! What the lab shows: cloud-init's end on every node, the nodes' state and addresses,
//! a command run inside a node.

use super::host::alive;
use super::state::Kind;
use super::{log, Lab};
use anyhow::{bail, Context, Result};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Namespaces that are not nodes, for `exec`.
const FABRIC_NAMESPACES: [(&str, &str); 3] = [
    ("remote", "plab-remote"),
    ("internet", "plab-inet"),
    ("net", "plab-net"),
];

impl Lab {
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

    pub(super) fn wait_cloud_init(&self, node: &str, timeout: Duration) -> bool {
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
