//! Playing the hypervisor for servers that never boot (the OpenStack lab's Nova runs the
//! fake virt driver): each node is a network namespace holding its fixed addresses, on
//! one bridge in a namespace of its own, and the real programs run in it on the files of
//! the node's real user-data (`write_files` of its `#cloud-config`).
//!
//! Only the paths of the host that the node would own are moved into a directory of the
//! test (`/etc/etcd/pki`, `/var/lib/etcd`, haproxy's stats socket); everything else of
//! each file is used as rendered. Every namespace, link and process is removed on drop.
#![allow(dead_code)]

use super::labkit::run_ok;
use paasgen::render::DecodedFile;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The namespaces of one test: a bridge (the private network) and one namespace per node,
/// plus at most one veth from the host into a node (the public side of a gateway).
pub struct Fabric {
    prefix: String,
    bridge_ns: String,
    nodes: Vec<String>,
    host_link: Option<String>,
}

impl Fabric {
    /// A bridge `br0` in namespace `<prefix>-br`.
    pub fn new(prefix: &str) -> Self {
        let fabric = Fabric {
            prefix: prefix.to_string(),
            bridge_ns: format!("{prefix}-br"),
            nodes: Vec::new(),
            host_link: None,
        };
        add_netns(&fabric.bridge_ns);
        let ns = &fabric.bridge_ns;
        run_ok(Command::new("ip").args(["-n", ns, "link", "add", "br0", "type", "bridge"]));
        run_ok(Command::new("ip").args(["-n", ns, "link", "set", "br0", "up"]));
        fabric
    }

    pub fn ns(&self, node: &str) -> String {
        format!("{}-{node}", self.prefix)
    }

    /// A namespace for `node` with `eth0` on the bridge holding `cidr` (its fixed IP).
    pub fn node(&mut self, node: &str, cidr: &str) -> String {
        let ns = self.ns(node);
        add_netns(&ns);
        self.nodes.push(ns.clone());
        let port = format!("v-{node}");
        let br = &self.bridge_ns;
        run_ok(Command::new("ip").args([
            "-n", br, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ]));
        run_ok(Command::new("ip").args(["-n", br, "link", "set", &port, "master", "br0", "up"]));
        run_ok(Command::new("ip").args(["-n", &ns, "addr", "add", cidr, "dev", "eth0"]));
        run_ok(Command::new("ip").args(["-n", &ns, "link", "set", "eth0", "up"]));
        ns
    }

    /// A veth `host_link` (host side, `host_cidr`) to `pub0` in `ns` (`node_cidr`, and
    /// `extra` addresses such as a VIP), with a host route to each `extra` through it:
    /// the host reaches those addresses, and only them, inside the namespace.
    pub fn host_link(
        &mut self,
        ns: &str,
        host_link: &str,
        host_cidr: &str,
        node_cidr: &str,
        extra: &[&str],
    ) {
        let _ = Command::new("ip")
            .args(["link", "del", host_link])
            .stderr(Stdio::null())
            .status();
        run_ok(Command::new("ip").args([
            "link", "add", host_link, "type", "veth", "peer", "name", "pub0", "netns", ns,
        ]));
        self.host_link = Some(host_link.to_string());
        run_ok(Command::new("ip").args(["addr", "add", host_cidr, "dev", host_link]));
        run_ok(Command::new("ip").args(["link", "set", host_link, "up"]));
        run_ok(Command::new("ip").args(["-n", ns, "addr", "add", node_cidr, "dev", "pub0"]));
        let via = node_cidr.split('/').next().unwrap();
        for addr in extra {
            run_ok(Command::new("ip").args([
                "-n",
                ns,
                "addr",
                "add",
                &format!("{addr}/32"),
                "dev",
                "pub0",
            ]));
            // replace, not add: a route left by a killed run (its link under another pid's
            // name) would make add fail with "File exists".
            run_ok(Command::new("ip").args([
                "route",
                "replace",
                &format!("{addr}/32"),
                "via",
                via,
            ]));
        }
        run_ok(Command::new("ip").args(["-n", ns, "link", "set", "pub0", "up"]));
    }
}

impl Drop for Fabric {
    fn drop(&mut self) {
        // The host's routes through the link go with it.
        if let Some(link) = &self.host_link {
            let _ = Command::new("ip").args(["link", "del", link]).status();
        }
        for ns in self.nodes.iter().chain(std::iter::once(&self.bridge_ns)) {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn add_netns(name: &str) {
    let _ = Command::new("ip")
        .args(["netns", "del", name])
        .stderr(Stdio::null())
        .status();
    run_ok(Command::new("ip").args(["netns", "add", name]));
    run_ok(Command::new("ip").args(["-n", name, "link", "set", "lo", "up"]));
}

/// A process of the test, killed (and reaped) when dropped or killed, with its output
/// in a log file.
pub struct Process {
    pub what: String,
    child: Option<Child>,
    pub log: PathBuf,
}

impl Process {
    pub fn spawn(what: &str, cmd: &mut Command, log: PathBuf) -> Self {
        let out = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {what}: {e}"));
        Process {
            what: what.to_string(),
            child: Some(child),
            log,
        }
    }

    /// `program ARGS` in network namespace `ns`. `ip netns exec` execs the program, so
    /// the child is the program itself.
    pub fn in_netns(what: &str, ns: &str, program: &Path, args: &[&str], log: PathBuf) -> Self {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns]).arg(program).args(args);
        Process::spawn(what, &mut cmd, log)
    }

    /// SIGKILL, as a node that fails does not say goodbye.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Its exit status, once it has ended.
    pub fn ended(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().unwrap())
    }

    /// Panics with the log's tail if the program has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.ended() {
            panic!("{} exited ({status}):\n{}", self.what, self.tail());
        }
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn tail(&self) -> String {
        let log = self.output();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn decoded<'a>(files: &'a [DecodedFile], path: &str) -> &'a DecodedFile {
    files
        .iter()
        .find(|f| f.path == path)
        .unwrap_or_else(|| panic!("{path} is not in the user-data"))
}

/// A text file of the user-data.
pub fn file_text(files: &[DecodedFile], path: &str) -> String {
    String::from_utf8(decoded(files, path).bytes.clone()).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `text` with `from` replaced by `to`; panics when `from` is not there (the rendered
/// file changed: the test must follow).
fn moved(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "`{from}` is not in:\n{text}");
    text.replace(from, to)
}

/// Starts `etcd` as the node's etcd.service would, from the files of its user-data, in
/// `ns`, with `dir` standing for its disk (an empty `dir`: a new disk).
pub fn start_etcd(etcd: &Path, ns: &str, files: &[DecodedFile], dir: &Path) -> Process {
    use std::os::unix::fs::PermissionsExt;
    let unit = file_text(files, "/etc/systemd/system/etcd.service");
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("etcd.service has an ExecStart");
    assert!(
        exec.ends_with(" --config-file /etc/etcd/etcd.conf.yml"),
        "{exec}"
    );
    let pki = dir.join("pki");
    std::fs::create_dir_all(&pki).unwrap();
    for f in files
        .iter()
        .filter(|f| f.path.starts_with("/etc/etcd/pki/"))
    {
        let path = pki.join(f.path.rsplit('/').next().unwrap());
        std::fs::write(&path, &f.bytes).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let conf = file_text(files, "/etc/etcd/etcd.conf.yml");
    let conf = moved(&conf, "/etc/etcd/pki/", &format!("{}/", pki.display()));
    let conf = moved(
        &conf,
        "data-dir: /var/lib/etcd\n",
        &format!("data-dir: {}/data\n", dir.display()),
    );
    let path = dir.join("etcd.conf.yml");
    std::fs::write(&path, conf).unwrap();
    Process::in_netns(
        &format!("etcd in {ns}"),
        ns,
        etcd,
        &["--config-file", path.to_str().unwrap()],
        dir.join("etcd.log"),
    )
}

/// Starts Debian's haproxy on the gateway's haproxy.cfg of its user-data, in `ns`
/// (checked with `haproxy -c` first).
pub fn start_haproxy(ns: &str, files: &[DecodedFile], dir: &Path) -> Process {
    std::fs::create_dir_all(dir).unwrap();
    let cfg = file_text(files, "/etc/haproxy/haproxy.cfg");
    let cfg = moved(
        &cfg,
        "stats socket /run/haproxy/admin.sock",
        &format!("stats socket {}/admin.sock", dir.display()),
    );
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, cfg).unwrap();
    let path = path.to_str().unwrap();
    run_ok(Command::new("haproxy").args(["-c", "-f", path]));
    let haproxy =
        PathBuf::from(run_ok(Command::new("sh").args(["-c", "command -v haproxy"])).trim());
    Process::in_netns(
        &format!("haproxy in {ns}"),
        ns,
        &haproxy,
        &["-db", "-f", path],
        dir.join("haproxy.log"),
    )
}
