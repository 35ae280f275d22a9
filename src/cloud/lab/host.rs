//! The lab's edge with the host: `scripts/lab`'s plumbing (namespaces, veths, overlay
//! mounts, systemd-nspawn, stand-in listeners), called with arguments, and what is read
//! straight from /proc (a container's PID 1, whether a process lives).

use anyhow::{bail, Context, Result};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where the lab lives on the host.
#[derive(Debug, Clone)]
pub struct Host {
    /// The lab's state: `lab.json`, per-node dirs (disk overlay, pid files, logs).
    pub dir: PathBuf,
    /// Per-node containerd state on the host's own filesystem.
    pub data: PathBuf,
    /// The one-lab-per-machine lock file.
    pub lock: PathBuf,
    script: PathBuf,
}

impl Host {
    /// `$PAASGEN_LAB_DIR` (default /run/paasgen-lab), `$PAASGEN_LAB_DATA`
    /// (/var/lib/paasgen-lab), `$PAASGEN_LAB_LOCK` (/run/paasgen-lab.lock).
    pub fn from_env(script: PathBuf) -> Host {
        let var = |name: &str, default: &str| {
            std::env::var_os(name)
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(default))
        };
        Host {
            dir: var("PAASGEN_LAB_DIR", "/run/paasgen-lab"),
            data: var("PAASGEN_LAB_DATA", "/var/lib/paasgen-lab"),
            lock: var("PAASGEN_LAB_LOCK", "/run/paasgen-lab.lock"),
            script,
        }
    }

    pub fn node_dir(&self, node: &str) -> PathBuf {
        self.dir.join("nodes").join(node)
    }

    /// The plumbing step `step` of scripts/lab, with `args`; its messages go to stderr.
    pub fn command(&self, step: &str) -> Command {
        let mut c = Command::new(&self.script);
        c.arg(step)
            .env("PAASGEN_LAB_DIR", &self.dir)
            .env("PAASGEN_LAB_DATA", &self.data)
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, step: &str, args: &[&str]) -> Result<()> {
        let status = self
            .command(step)
            .args(args)
            .status()
            .with_context(|| format!("running {} {step}", self.script.display()))?;
        if !status.success() {
            bail!("lab {step} {}: failed ({status})", args.join(" "));
        }
        Ok(())
    }

    /// The pid a node's file (`nspawn.pid`, `standin.pid`...) holds.
    pub fn pid_file(&self, node: &str, file: &str) -> Option<i32> {
        std::fs::read_to_string(self.node_dir(node).join(file))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// The container's PID 1 as the host sees it: the descendant of the node's
    /// systemd-nspawn whose innermost PID is 1.
    pub fn leader(&self, node: &str) -> Option<i32> {
        let nspawn = self.pid_file(node, "nspawn.pid")?;
        let mut queue = vec![nspawn];
        while let Some(pid) = queue.pop() {
            for child in children(pid) {
                if innermost_pid(child) == Some(1) {
                    return Some(child);
                }
                queue.push(child);
            }
        }
        None
    }

    /// A command run inside a booted node: every namespace of its PID 1, a clean
    /// environment, as a login on the node would have.
    pub fn in_node(&self, node: &str, argv: &[String]) -> Result<Command> {
        let Some(leader) = self.leader(node) else {
            bail!("{node} is not running");
        };
        let mut c = Command::new("nsenter");
        c.args(["--target", &leader.to_string()])
            .args(["--mount", "--uts", "--ipc", "--net", "--pid", "--cgroup"])
            .args(["--root", "--wd", "--", "/usr/bin/env", "-i"])
            .arg("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .args(["HOME=/root", "LANG=C.UTF-8"])
            .arg(format!(
                "TERM={}",
                std::env::var("TERM").unwrap_or_else(|_| "dumb".into())
            ))
            .args(argv);
        Ok(c)
    }
}

/// `cmd` in a session of its own, so that it outlives this process and its terminal.
pub fn detached(cmd: &mut Command) -> &mut Command {
    // SAFETY: setsid is async-signal-safe and touches nothing of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

pub fn alive(pid: i32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

/// Sends `signal` to `pid`; a process already gone is no error.
pub fn signal(pid: i32, signal: i32) {
    // SAFETY: kill(2) with a plain pid and signal number.
    unsafe {
        libc::kill(pid, signal);
    }
}

pub fn children(pid: i32) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|s| {
            s.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect()
}

/// The pid a process has in its own (innermost) pid namespace.
fn innermost_pid(pid: i32) -> Option<i32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("NSpid:"))?;
    let pids: Vec<&str> = line.split_whitespace().skip(1).collect();
    if pids.len() < 2 {
        return None; // in the host's namespace only
    }
    pids.last()?.parse().ok()
}

/// Whether this process runs as root (the lab's plumbing needs it).
pub fn need_root() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the lab must run as root");
    }
    Ok(())
}
