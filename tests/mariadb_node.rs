//! The replicated MariaDB's node program (templates/charts/mariadb/files/node.sh) run
//! against Debian's real mariadbd, mariadb-backup and mbstream on loopback: the test
//! stands in for the chart's elector (it writes each node's `desired` role) and for
//! `kubectl exec` (it pipes one node's backup stream into another's seed).
mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ROOT_PASSWORD: &str = "root-password-0123456789";
const REPLICATION_PASSWORD: &str = "replication-password-0123";

fn node_sh() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/charts/mariadb/files/node.sh")
}

fn prerequisites() -> bool {
    ["mariadbd", "mariadb", "mariadb-backup", "mbstream"]
        .iter()
        .all(|p| common::have(p))
}

/// One node: its directories, port, and `node.sh run` while it runs.
struct Node {
    name: String,
    dir: PathBuf,
    port: u16,
    server_id: u32,
    run: Option<Child>,
}

impl Node {
    fn new(root: &Path, name: &str, port: u16, server_id: u32) -> Node {
        let dir = root.join(name);
        for d in ["data", "run", "role"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        Node { name: name.into(), dir, port, server_id, run: None }
    }

    fn command(&self, verb: &str) -> Command {
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
            .env("SEMI_SYNC_TIMEOUT_MS", "3000");
        c
    }

    fn desire(&self, role: &str) {
        std::fs::write(self.dir.join("role/desired"), format!("{role}\n")).unwrap();
    }

    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("run.log"))
            .unwrap();
        let mut c = self.command("run");
        c.stdout(log.try_clone().unwrap()).stderr(log).stdin(Stdio::null());
        // Its own process group, so that a kill reaches mariadbd too.
        std::os::unix::process::CommandExt::process_group(&mut c, 0);
        self.run = Some(c.spawn().expect("node.sh run"));
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("run.log")).unwrap_or_default()
    }

    fn status(&self) -> std::collections::BTreeMap<String, String> {
        std::fs::read_to_string(self.dir.join("role/status"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    /// Waits until its status says `role` (and, for a replica, both threads running).
    fn wait_role(&self, role: &str) {
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
    fn stop(&mut self) -> i32 {
        let mut child = self.run.take().expect("running");
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        child.wait().unwrap().code().unwrap_or(-1)
    }

    /// SIGKILL to node.sh and mariadbd at once: the machine is gone.
    fn kill(&mut self) {
        let mut child = self.run.take().expect("running");
        unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
        let _ = child.wait();
    }

    fn wait_exit(&mut self) -> i32 {
        let mut child = self.run.take().expect("running");
        child.wait().unwrap().code().unwrap_or(-1)
    }

    /// Runs SQL as root over TCP, as a client would.
    fn sql(&self, sql: &str) -> Result<String, String> {
        let out = Command::new("mariadb")
            .args(["--no-defaults", "-uroot", "-h127.0.0.1", "-N", "-B"])
            .arg(format!("-p{ROOT_PASSWORD}"))
            .arg(format!("-P{}", self.port))
            .args(["--connect-timeout=2", "-e", sql])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }

    fn sql_ok(&self, sql: &str) -> String {
        self.sql(sql)
            .unwrap_or_else(|e| panic!("{}: {sql}: {e}\nlog:\n{}", self.name, self.log()))
    }

    fn rows(&self) -> Vec<u64> {
        self.sql_ok("SELECT id FROM app.t ORDER BY id")
            .lines()
            .map(|l| l.parse().unwrap())
            .collect()
    }

    /// Waits until this node holds every row of `want`.
    fn wait_rows(&self, want: &[u64]) {
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
fn seed(from: &Node, to: &Node) -> String {
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

fn insert(node: &Node, v: &str) -> u64 {
    node.sql_ok(&format!("INSERT INTO app.t (v) VALUES ('{v}'); SELECT LAST_INSERT_ID()"))
        .parse()
        .unwrap()
}

fn semi_sync_acks(primary: &Node) -> u64 {
    primary
        .sql_ok("SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'Rpl_semi_sync_master_yes_tx'")
        .parse()
        .unwrap()
}

fn new_primary(root: &Path, port: u16) -> Node {
    let mut p = Node::new(root, "node-0", port, 1);
    p.desire("primary");
    p.start();
    p.wait_role("primary");
    p.sql_ok("CREATE DATABASE app; CREATE TABLE app.t (id BIGINT PRIMARY KEY AUTO_INCREMENT, v TEXT) ENGINE=InnoDB");
    p
}

fn new_replica(root: &Path, name: &str, port: u16, id: u32, primary: &Node) -> (Node, String) {
    let mut r = Node::new(root, name, port, id);
    r.desire(&format!("replica 127.0.0.1 {}", primary.port));
    assert!(r.command("needs-seed").status().unwrap().success(), "an empty replica needs a seed");
    let said = seed(primary, &r);
    r.start();
    r.wait_role("replica");
    (r, said)
}

#[test]
fn replicas_seed_from_a_backup_stream_and_resume_from_their_gtid_position() {
    if !prerequisites() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let primary = new_primary(tmp.path(), 34010);
    let mut rows: Vec<u64> = (0..5).map(|i| insert(&primary, &format!("before-{i}"))).collect();
    // The binlogs that hold these rows are gone: a new replica cannot replay them, it
    // has to start from a backup.
    primary.sql_ok("FLUSH BINARY LOGS; PURGE BINARY LOGS BEFORE NOW() + INTERVAL 1 SECOND");
    let first_binlog = primary.sql_ok("SHOW BINARY LOGS");
    assert!(!first_binlog.contains(".000001"), "binlogs not purged: {first_binlog}");

    let (mut replica, seeded) = new_replica(tmp.path(), "node-1", 34011, 2, &primary);
    assert!(seeded.contains("seeded from a backup at GTID 0-1-"), "{seeded}");
    replica.wait_rows(&rows);

    // A write is acknowledged by the replica (semi-sync), and the replica refuses writes.
    let acks = semi_sync_acks(&primary);
    rows.push(insert(&primary, "semi-sync"));
    assert!(semi_sync_acks(&primary) > acks, "the write was not acknowledged by a replica");
    replica.wait_rows(&rows);
    let refused = replica.sql("INSERT INTO app.t (v) VALUES ('on a replica')");
    assert!(refused.is_err_and(|e| e.contains("read-only")), "a replica took a write");

    // Restarted, it resumes from its own GTID position with the rows written meanwhile.
    assert_eq!(replica.stop(), 0, "a clean stop exits 0");
    for i in 0..5 {
        rows.push(insert(&primary, &format!("while-down-{i}")));
    }
    replica.start();
    replica.wait_role("replica");
    replica.wait_rows(&rows);
    let resumed = replica.log();
    let start = resumed
        .lines()
        .rfind(|l| l.contains("replication starts at GTID position"))
        .expect("the replica says where it resumes");
    assert!(!start.contains("position ''"), "resumed from nothing: {start}");
    eprintln!("resumed: {start}");
}

#[test]
fn a_fenced_primary_refuses_writes_until_it_is_told_it_is_primary_again() {
    if !prerequisites() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let primary = new_primary(tmp.path(), 34030);
    insert(&primary, "before");
    primary.desire("fenced");
    primary.wait_role("fenced");
    let refused = primary.sql("INSERT INTO app.t (v) VALUES ('fenced')");
    assert!(refused.is_err_and(|e| e.contains("read-only")), "a fenced primary took a write");
    primary.desire("primary");
    primary.wait_role("primary");
    insert(&primary, "after");
    assert_eq!(primary.rows().len(), 2);
}

#[test]
fn a_lost_primary_is_replaced_by_the_replica_that_received_most_and_no_acknowledged_write_is_lost() {
    if !prerequisites() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut primary = new_primary(tmp.path(), 34020);
    let replicas = [
        new_replica(tmp.path(), "node-1", 34021, 2, &primary).0,
        new_replica(tmp.path(), "node-2", 34022, 3, &primary).0,
    ];

    // A client writes without pause, to whichever node is primary, and keeps the ids of
    // the writes it saw acknowledged.
    let target = Arc::new(Mutex::new(primary.port));
    let acknowledged = Arc::new(Mutex::new(Vec::<u64>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (target, acknowledged, stop) = (target.clone(), acknowledged.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            let mut outage: Option<(Instant, Instant)> = None;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let port = *target.lock().unwrap();
                let out = Command::new("mariadb")
                    .args(["--no-defaults", "-uroot", "-h127.0.0.1", "-N", "-B"])
                    .arg(format!("-p{ROOT_PASSWORD}"))
                    .arg(format!("-P{port}"))
                    .args(["--connect-timeout=1", "-e"])
                    .arg(format!("INSERT INTO app.t (v) VALUES ('w{n}'); SELECT LAST_INSERT_ID()"))
                    .stdin(Stdio::null())
                    .output()
                    .unwrap();
                let now = Instant::now();
                if out.status.success() {
                    let id = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
                    acknowledged.lock().unwrap().push(id);
                    if let Some((first, _)) = outage {
                        return Some((first, now));
                    }
                } else {
                    outage.get_or_insert((now, now));
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            outage
        })
    };
    // Writes flow, then the primary's machine is gone mid-write.
    let flowing = Instant::now() + Duration::from_secs(30);
    while acknowledged.lock().unwrap().len() < 50 {
        assert!(Instant::now() < flowing, "writes do not flow");
        std::thread::sleep(Duration::from_millis(50));
    }
    primary.kill();
    let lost_at = Instant::now();

    // The elector's choice: once the replicas' status has settled, the one that received
    // the most of the old primary's history.
    std::thread::sleep(Duration::from_secs(2));
    let received = |r: &Node| -> u64 {
        let s = r.status();
        let pos = s.get("received").cloned().unwrap_or_default();
        pos.rsplit('-').next().unwrap_or("0").parse().unwrap_or(0)
    };
    let chosen = if received(&replicas[0]) >= received(&replicas[1]) { 0 } else { 1 };
    let (new, other) = (&replicas[chosen], &replicas[1 - chosen]);
    eprintln!(
        "received: node-1 {}, node-2 {}; promoting {}",
        received(&replicas[0]),
        received(&replicas[1]),
        new.name
    );
    new.desire("primary");
    other.desire(&format!("replica 127.0.0.1 {}", new.port));
    new.wait_role("primary");
    *target.lock().unwrap() = new.port;
    other.wait_role("replica");

    let outage = writer.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    let (first_failure, recovered) = outage.expect("the writer saw the primary go");
    eprintln!(
        "writes failed for {:.1} s (from the first failed write to the first acknowledged \
         on the new primary; the old one was killed {:.1} s before that failure)",
        (recovered - first_failure).as_secs_f64(),
        first_failure.saturating_duration_since(lost_at).as_secs_f64()
    );
    assert!((recovered - first_failure) < Duration::from_secs(60));

    // Every write the client saw acknowledged is on the new primary and its replica.
    let acked = acknowledged.lock().unwrap().clone();
    let have = new.rows();
    let missing: Vec<_> = acked.iter().filter(|id| !have.contains(id)).collect();
    assert!(missing.is_empty(), "acknowledged writes missing after failover: {missing:?}");
    other.wait_rows(&acked);
    eprintln!("{} acknowledged writes, all on {} and {}", acked.len(), new.name, other.name);

    // The old primary comes back told to follow: it retires its data (kept beside) and
    // stops; re-seeded from the new primary, it replicates.
    primary.desire(&format!("replica 127.0.0.1 {}", new.port));
    primary.start();
    assert_eq!(primary.wait_exit(), 3, "a former primary told to follow must retire: {}", primary.log());
    assert!(primary.command("needs-seed").status().unwrap().success());
    seed(new, &primary);
    let kept: Vec<_> = std::fs::read_dir(tmp.path().join("node-0"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("data.retired-"))
        .collect();
    assert_eq!(kept.len(), 1, "the retired datadir is kept beside the new one");
    primary.start();
    primary.wait_role("replica");
    let last = insert(new, "after-rejoin");
    primary.wait_rows(&[last]);
}
