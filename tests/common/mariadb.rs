//! One node of the replicated MariaDB (templates/charts/mariadb/files/node.sh) on
//! loopback, run against Debian's real mariadbd, mariadb-backup and mbstream, for
//! tests/mariadb_node.rs and tests/mariadb_elector.rs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const ROOT_PASSWORD: &str = "root-password-0123456789";
pub const REPLICATION_PASSWORD: &str = "replication-password-0123";

pub fn node_sh() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/charts/mariadb/files/node.sh")
}

pub fn prerequisites() -> bool {
    ["mariadbd", "mariadb", "mariadb-backup", "mbstream"]
        .iter()
        .all(|p| super::have(p))
}

/// The first port the MariaDB tests listen on. Fixed ports must lie below the kernel's
/// ephemeral range: a port there can be taken at any moment as the local end of some
/// other process's connection (CI lost a run to that: 34030 was in use when mariadbd
/// bound it).
const PORT_BASE: u16 = 24000;

/// Port `PORT_BASE + offset`, checked to be outside this host's ephemeral range.
pub fn listen_port(offset: u16) -> u16 {
    let port = PORT_BASE + offset;
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .expect("the ephemeral port range is readable");
    let low: u16 = range
        .split_whitespace()
        .next()
        .and_then(|w| w.parse().ok())
        .expect("ip_local_port_range starts with a number");
    assert!(
        port < low,
        "port {port} is inside this host's ephemeral range (from {low}): pick a lower PORT_BASE"
    );
    port
}

/// One node: its directories, port, and `node.sh run` while it runs.
pub struct Node {
    pub name: String,
    pub dir: PathBuf,
    pub port: u16,
    pub server_id: u32,
    pub run: Option<Child>,
}

impl Node {
    pub fn new(root: &Path, name: &str, port: u16, server_id: u32) -> Node {
        let dir = root.join(name);
        for d in ["data", "run", "role"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        Node {
            name: name.into(),
            dir,
            port,
            server_id,
            run: None,
        }
    }

    pub fn command(&self, verb: &str) -> Command {
        let mut c = Command::new("bash");
        c.arg(node_sh())
            .arg(verb)
            .env("DATADIR", self.dir.join("data"))
            .env("RUN_DIR", self.dir.join("run"))
            .env("ROLE_DIR", self.dir.join("role"))
            .env("PORT", self.port.to_string())
            .env("SERVER_ID", self.server_id.to_string())
            .env("MARIADB_ROOT_PASSWORD", ROOT_PASSWORD)
            .env("MARIADB_REPLICATION_PASSWORD", REPLICATION_PASSWORD)
            // Short, so that the writes made while a replica is down do not each wait
            // long; the chart's default is 30 s.
            .env("SEMI_SYNC_TIMEOUT_MS", "3000")
            // A pod listens on every address; a test only on loopback (the later
            // option wins).
            .env("MARIADB_ARGS", "--bind-address=127.0.0.1");
        c
    }

    pub fn desire(&self, role: &str) {
        std::fs::write(self.dir.join("role/desired"), format!("{role}\n")).unwrap();
    }

    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("run.log"))
            .unwrap();
        let mut c = self.command("run");
        c.stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null());
        // Its own process group, so that a kill reaches mariadbd too.
        std::os::unix::process::CommandExt::process_group(&mut c, 0);
        self.run = Some(c.spawn().expect("node.sh run"));
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("run.log")).unwrap_or_default()
    }

    pub fn status(&self) -> std::collections::BTreeMap<String, String> {
        std::fs::read_to_string(self.dir.join("role/status"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    /// Waits until its status says `role` (and, for a replica, both threads running).
    pub fn wait_role(&self, role: &str) {
        let until = Instant::now() + Duration::from_secs(90);
        loop {
            let s = self.status();
            let ok = s.get("role").map(String::as_str) == Some(role)
                && (role != "replica"
                    || (s.get("io").map(String::as_str) == Some("Yes")
                        && s.get("sql").map(String::as_str) == Some("Yes")));
            if ok {
                return;
            }
            assert!(
                Instant::now() < until,
                "{} is not {role} after 90 s; status {s:?}; log:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// SIGTERM to node.sh (a clean shutdown) and waits; its exit code.
    pub fn stop(&mut self) -> i32 {
        let mut child = self.run.take().expect("running");
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        child.wait().unwrap().code().unwrap_or(-1)
    }

    /// SIGKILL to node.sh and mariadbd at once: the machine is gone.
    pub fn kill(&mut self) {
        let mut child = self.run.take().expect("running");
        unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
        let _ = child.wait();
    }

    pub fn wait_exit(&mut self) -> i32 {
        let mut child = self.run.take().expect("running");
        child.wait().unwrap().code().unwrap_or(-1)
    }

    /// Runs SQL as root over TCP, as a client would.
    pub fn sql(&self, sql: &str) -> Result<String, String> {
        let out = Command::new("mariadb")
            .args(["--no-defaults", "-uroot", "-h127.0.0.1", "-N", "-B"])
            .arg(format!("-p{ROOT_PASSWORD}"))
            .arg(format!("-P{}", self.port))
            .args(["--connect-timeout=2", "-e", sql])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        trimmed_outcome(out)
    }

    pub fn sql_ok(&self, sql: &str) -> String {
        self.sql(sql)
            .unwrap_or_else(|e| panic!("{}: {sql}: {e}\nlog:\n{}", self.name, self.log()))
    }

    pub fn rows(&self) -> Vec<u64> {
        self.sql_ok("SELECT id FROM app.t ORDER BY id")
            .lines()
            .map(|l| l.parse().unwrap())
            .collect()
    }

    /// Waits until this node holds every row of `want`.
    pub fn wait_rows(&self, want: &[u64]) {
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let have = self.rows();
            if want.iter().all(|id| have.contains(id)) {
                return;
            }
            assert!(
                Instant::now() < until,
                "{} lacks rows after 60 s: has {} of {}; log:\n{}",
                self.name,
                have.len(),
                want.len(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.run.is_some() {
            self.kill();
        }
    }
}

/// `from`'s backup stream (node.sh backup-stream) piped into `to`'s seed, as the chart
/// pipes it through `kubectl exec`; what the seed said.
pub fn seed(from: &Node, to: &Node) -> String {
    let mut backup = from.command("backup-stream");
    backup.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut backup = backup.spawn().unwrap();
    let stream = backup.stdout.take().unwrap();
    let seeded = to.command("seed").stdin(stream).output().unwrap();
    let backed_up = backup.wait_with_output().unwrap();
    assert!(
        backed_up.status.success() && seeded.status.success(),
        "seeding {} from {} failed:\nbackup: {}\nseed: {}",
        to.name,
        from.name,
        String::from_utf8_lossy(&backed_up.stderr),
        String::from_utf8_lossy(&seeded.stderr)
    );
    String::from_utf8_lossy(&seeded.stderr).into_owned()
}

pub fn insert(node: &Node, v: &str) -> u64 {
    node.sql_ok(&format!(
        "INSERT INTO app.t (v) VALUES ('{v}'); SELECT LAST_INSERT_ID()"
    ))
    .parse()
    .unwrap()
}

pub fn semi_sync_acks(primary: &Node) -> u64 {
    primary
        .sql_ok("SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'Rpl_semi_sync_master_yes_tx'")
        .parse()
        .unwrap()
}

pub fn new_primary(root: &Path, port: u16) -> Node {
    let mut p = Node::new(root, "node-0", port, 1);
    p.desire("primary");
    p.start();
    p.wait_role("primary");
    p.sql_ok("CREATE DATABASE app; CREATE TABLE app.t (id BIGINT PRIMARY KEY AUTO_INCREMENT, v TEXT) ENGINE=InnoDB");
    p
}

pub fn new_replica(root: &Path, name: &str, port: u16, id: u32, primary: &Node) -> (Node, String) {
    let mut r = Node::new(root, name, port, id);
    r.desire(&format!("replica 127.0.0.1 {}", primary.port));
    assert!(
        r.command("needs-seed").status().unwrap().success(),
        "an empty replica needs a seed"
    );
    let said = seed(primary, &r);
    r.start();
    r.wait_role("replica");
    (r, said)
}

/// A client inserting rows without pause into whichever port it is sent to (None: no
/// primary known, which counts as a failure), keeping the ids of the writes it saw
/// acknowledged and the first outage it met: (first failure, first success after it).
pub struct Writer {
    target: Arc<Mutex<Option<u16>>>,
    acknowledged: Arc<Mutex<Vec<u64>>>,
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<Option<(Instant, Instant)>>>,
}

impl Writer {
    pub fn start(port: Option<u16>) -> Writer {
        let target = Arc::new(Mutex::new(port));
        let acknowledged = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handle = {
            let (target, acknowledged, stop) = (target.clone(), acknowledged.clone(), stop.clone());
            std::thread::spawn(move || write_until_recovered(&target, &acknowledged, &stop))
        };
        Writer {
            target,
            acknowledged,
            stop,
            handle: Some(handle),
        }
    }

    pub fn send_to(&self, port: Option<u16>) {
        *self.target.lock().unwrap() = port;
    }

    pub fn wait_flowing(&self, writes: usize) {
        let until = Instant::now() + Duration::from_secs(60);
        while self.acknowledged.lock().unwrap().len() < writes {
            assert!(Instant::now() < until, "writes do not flow");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the end of the first outage: (its first failure, the first success
    /// after it, every acknowledged id).
    pub fn until_recovered(mut self) -> (Instant, Instant, Vec<u64>) {
        let outage = self.handle.take().unwrap().join().unwrap();
        let (first, recovered) = outage.expect("the writer saw no outage");
        (first, recovered, self.acknowledged.lock().unwrap().clone())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn write_until_recovered(
    target: &Mutex<Option<u16>>,
    acknowledged: &Mutex<Vec<u64>>,
    stop: &AtomicBool,
) -> Option<(Instant, Instant)> {
    let mut n = 0;
    let mut outage: Option<Instant> = None;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let port = *target.lock().unwrap();
        let out = port.map(|port| {
            Command::new("mariadb")
                .args(["--no-defaults", "-uroot", "-h127.0.0.1", "-N", "-B"])
                .arg(format!("-p{ROOT_PASSWORD}"))
                .arg(format!("-P{port}"))
                .args(["--connect-timeout=1", "-e"])
                .arg(format!(
                    "INSERT INTO app.t (v) VALUES ('w{n}'); SELECT LAST_INSERT_ID()"
                ))
                .stdin(Stdio::null())
                .output()
                .unwrap()
        });
        let now = Instant::now();
        match out {
            Some(out) if out.status.success() => {
                let id = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
                acknowledged.lock().unwrap().push(id);
                if let Some(first) = outage {
                    return Some((first, now));
                }
            }
            _ => {
                outage.get_or_insert(now);
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    None
}

/// A finished command's trimmed stdout when it succeeded, its trimmed stderr if not.
pub fn trimmed_outcome(out: std::process::Output) -> Result<String, String> {
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}
