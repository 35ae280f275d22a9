//! The replicated MariaDB's elector (templates/charts/mariadb/files/elector.sh) deciding
//! the primary through a real Kubernetes API (kube-apiserver and etcd from
//! images/gobuild, on loopback, no kubelet: the Pods are API objects the electors
//! annotate and label), with real MariaDB nodes (node.sh on Debian's mariadbd). The test
//! plays the Service (it sends writes to the pod labelled primary) and `kubectl exec`
//! (it pipes backup streams into seeds).
mod common;

use common::mariadb::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "elector-test-token-0123456789";
const SELECTOR: &str = "app=mariadb";

/// A process in its own group, killed with it on drop.
struct Service(Child);
impl Drop for Service {
    fn drop(&mut self) {
        unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

fn spawn(program: &Path, args: &[String], log: &Path) -> Service {
    let log = std::fs::File::create(log).unwrap();
    let mut c = Command::new(program);
    c.args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    std::os::unix::process::CommandExt::process_group(&mut c, 0);
    Service(
        c.spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", program.display())),
    )
}

/// The Kubernetes binaries images/gobuild made (cached after the image bake).
fn gobuild_bin() -> PathBuf {
    let out = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("images/gobuild"))
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "images/gobuild failed");
    let dir = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap()
        .to_owned();
    PathBuf::from(dir).join("bin")
}

struct Api {
    kubectl: String,
    _etcd: Service,
    _apiserver: Service,
}

impl Api {
    fn start(bin: &Path, dir: &Path) -> Api {
        let (ok, out) = common::run(Command::new("sh").current_dir(dir).args([
            "-c",
            "openssl genrsa -out sa.key 2048 && openssl rsa -in sa.key -pubout -out sa.pub",
        ]));
        assert!(ok, "{out}");
        std::fs::write(
            dir.join("tokens.csv"),
            format!("{TOKEN},tester,uid-1,system:masters\n"),
        )
        .unwrap();
        let d = |f: &str| dir.join(f).display().to_string();
        let (etcd_port, api_port) = (listen_port(379), listen_port(443));
        let etcd = spawn(
            &bin.join("etcd"),
            &[
                format!("--data-dir={}", d("etcd")),
                format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"),
                format!("--advertise-client-urls=http://127.0.0.1:{etcd_port}"),
                format!("--listen-peer-urls=http://127.0.0.1:{}", etcd_port + 1),
                format!(
                    "--initial-advertise-peer-urls=http://127.0.0.1:{}",
                    etcd_port + 1
                ),
                format!(
                    "--initial-cluster=default=http://127.0.0.1:{}",
                    etcd_port + 1
                ),
            ],
            &dir.join("etcd.log"),
        );
        // Anyone with the token is cluster-admin; no endpoint reconciler (the address is
        // loopback); no ServiceAccount admission (no controller makes the accounts).
        let apiserver = spawn(
            &bin.join("kube-apiserver"),
            &[
                format!("--etcd-servers=http://127.0.0.1:{etcd_port}"),
                format!("--secure-port={api_port}"),
                "--bind-address=127.0.0.1".into(),
                "--endpoint-reconciler-type=none".into(),
                format!("--cert-dir={}", d("certs")),
                "--service-account-issuer=https://kubernetes.default.svc".into(),
                format!("--service-account-key-file={}", d("sa.pub")),
                format!("--service-account-signing-key-file={}", d("sa.key")),
                "--authorization-mode=AlwaysAllow".into(),
                format!("--token-auth-file={}", d("tokens.csv")),
                "--disable-admission-plugins=ServiceAccount".into(),
                "--service-cluster-ip-range=10.96.0.0/24".into(),
            ],
            &dir.join("apiserver.log"),
        );
        let api = Api {
            kubectl: format!(
                "{} --server=https://127.0.0.1:{api_port} --insecure-skip-tls-verify --token={TOKEN}",
                bin.join("kubectl").display()
            ),
            _etcd: etcd,
            _apiserver: apiserver,
        };
        let until = Instant::now() + Duration::from_secs(300);
        while api.kubectl(&["get", "--raw", "/readyz"]).is_err() {
            assert!(
                Instant::now() < until,
                "the API server is not ready after 300 s:\n{}",
                std::fs::read_to_string(dir.join("apiserver.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        api
    }

    fn kubectl(&self, args: &[&str]) -> Result<String, String> {
        let mut words = self.kubectl.split(' ');
        let out = Command::new(words.next().unwrap())
            .args(words)
            .args(["-n", "db"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        trimmed_outcome(out)
    }

    fn ok(&self, args: &[&str]) -> String {
        self.kubectl(args)
            .unwrap_or_else(|e| panic!("kubectl {args:?}: {e}"))
    }

    /// `kubectl apply --dry-run=server`: the API server validates every object.
    fn dry_run(&self, yaml: &[u8]) -> Result<String, String> {
        let mut words = self.kubectl.split(' ');
        let mut child = Command::new(words.next().unwrap())
            .args(words)
            .args(["-n", "db", "apply", "--dry-run=server", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), yaml).unwrap();
        let out = child.wait_with_output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() {
            Ok(text)
        } else {
            Err(text)
        }
    }

    /// The pods labelled `role`, as the Service of that role would select them.
    fn labelled(&self, role: &str) -> Vec<String> {
        self.ok(&[
            "get",
            "pods",
            "-l",
            &format!("{SELECTOR},paasgen.io/mariadb-role={role}"),
            "-o",
            "name",
        ])
        .lines()
        .map(|l| l.trim_start_matches("pod/").to_owned())
        .collect()
    }

    fn wait_labelled(&self, pod: &str, role: &str, limit: Duration) {
        let until = Instant::now() + limit;
        while !self.labelled(role).iter().any(|p| p == pod) {
            assert!(
                Instant::now() < until,
                "{pod} is not labelled {role} after {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// A MariaDB node and its elector, as one pod of the StatefulSet.
struct Pod {
    node: Node,
    elector: Option<Service>,
}

impl Pod {
    fn new(root: &Path, api: &Api, ordinal: u16) -> Pod {
        let name = format!("mariadb-{ordinal}");
        api.ok(&[
            "run",
            &name,
            "--image=mariadb",
            "--labels=app=mariadb",
            "--restart=Never",
        ]);
        Pod {
            node: Node::new(
                root,
                &name,
                listen_port(40 + ordinal),
                u32::from(ordinal) + 1,
            ),
            elector: None,
        }
    }

    fn start_elector(&mut self, api: &Api) {
        let mut c = Command::new("bash");
        c.arg(node_sh().with_file_name("elector.sh"))
            .env("POD_NAME", &self.node.name)
            .env("NAMESPACE", "db")
            .env("POD_IP", "127.0.0.1")
            .env("PORT", self.node.port.to_string())
            .env("ROLE_DIR", self.node.dir.join("role"))
            .env("SELECTOR", SELECTOR)
            .env("KUBECTL", &api.kubectl)
            // Shorter than the chart's 15/10/2 s, the same proportions.
            .env("LEASE_SECONDS", "8")
            .env("FENCE_SECONDS", "5")
            .env("INTERVAL", "1");
        let log = std::fs::File::create(self.node.dir.join("elector.log")).unwrap();
        c.stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        std::os::unix::process::CommandExt::process_group(&mut c, 0);
        self.elector = Some(Service(c.spawn().unwrap()));
    }

    fn elector_log(&self) -> String {
        std::fs::read_to_string(self.node.dir.join("elector.log")).unwrap_or_default()
    }

    fn desired(&self) -> String {
        std::fs::read_to_string(self.node.dir.join("role/desired")).unwrap_or_default()
    }

    /// The seed init container: once the elector says whom to follow, the primary's
    /// stream (through `kubectl exec` on a cluster) becomes this node's datadir.
    fn seed_from(&self, pods: &[&Pod]) {
        let until = Instant::now() + Duration::from_secs(60);
        while !self.desired().starts_with("replica ") {
            assert!(
                Instant::now() < until,
                "{}: no role after 60 s:\n{}",
                self.node.name,
                self.elector_log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        assert!(self.node.command("needs-seed").status().unwrap().success());
        let port: u16 = self
            .desired()
            .split_whitespace()
            .nth(2)
            .unwrap()
            .parse()
            .unwrap();
        let primary = pods
            .iter()
            .find(|p| p.node.port == port)
            .expect("the primary is a pod");
        seed(&primary.node, &self.node);
    }
}

#[test]
fn the_electors_make_one_primary_and_replace_a_lost_one_with_the_replica_that_received_most() {
    if !prerequisites() || !common::have("openssl") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let bin = gobuild_bin();
    let api = Api::start(&bin, tmp.path());
    api.ok(&["create", "namespace", "db"]);

    // The chart these scripts ship in, rendered by Helm and validated by the API server.
    let chart = Command::new(bin.join("helm"))
        .args(["template", "db", "--namespace", "db"])
        .arg(node_sh().parent().unwrap().parent().unwrap())
        .output()
        .unwrap();
    assert!(
        chart.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&chart.stderr)
    );
    let applied = api
        .dry_run(&chart.stdout)
        .unwrap_or_else(|e| panic!("the API refuses the chart: {e}"));
    eprintln!("the chart, dry-run on the API server:\n{applied}");
    assert!(
        applied.contains("statefulset.apps/db-mariadb created (server dry run)"),
        "{applied}"
    );

    // A new database: pod 0 finds no lease, takes it, and makes the datadir.
    let mut p0 = Pod::new(tmp.path(), &api, 0);
    p0.start_elector(&api);
    p0.node.start();
    api.wait_labelled("mariadb-0", "primary", Duration::from_secs(120));
    p0.node.sql_ok("CREATE DATABASE app; CREATE TABLE app.t (id BIGINT PRIMARY KEY AUTO_INCREMENT, v TEXT) ENGINE=InnoDB");
    let holder = api.ok(&[
        "get",
        "lease",
        "mariadb-primary",
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    assert_eq!(holder, "mariadb-0");

    // Pods 1 and 2 are told to follow it, seed from it and are labelled replicas.
    let mut p1 = Pod::new(tmp.path(), &api, 1);
    let mut p2 = Pod::new(tmp.path(), &api, 2);
    for p in [&mut p1, &mut p2] {
        p.start_elector(&api);
    }
    p1.seed_from(&[&p0]);
    p2.seed_from(&[&p0]);
    p1.node.start();
    p2.node.start();
    api.wait_labelled("mariadb-1", "replica", Duration::from_secs(60));
    api.wait_labelled("mariadb-2", "replica", Duration::from_secs(60));
    assert_eq!(api.labelled("primary"), ["mariadb-0"], "one primary");

    // A client writes through "the write Service": to the pod labelled primary.
    let writer = Writer::start(Some(p0.node.port));
    writer.wait_flowing(30);
    let port_of =
        |pod: &str| listen_port(40) + pod.trim_start_matches("mariadb-").parse::<u16>().unwrap();
    // Pod 0's machine is gone: its node and its elector.
    p0.node.kill();
    p0.elector = None;
    let lost_at = Instant::now();
    let until = lost_at + Duration::from_secs(60);
    let new = loop {
        let primaries: Vec<String> = api
            .labelled("primary")
            .into_iter()
            .filter(|p| p != "mariadb-0")
            .collect();
        assert!(primaries.len() <= 1, "two primaries: {primaries:?}");
        if let Some(p) = primaries.first() {
            break p.clone();
        }
        assert!(
            Instant::now() < until,
            "no new primary 60 s after the old one was lost:\n{}\n{}",
            p1.elector_log(),
            p2.elector_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    writer.send_to(Some(port_of(&new)));
    let (first_failure, recovered, acked) = writer.until_recovered();
    eprintln!(
        "{new} promoted {:.1} s after the primary was lost (lease 8 s); writes failed for {:.1} s",
        lost_at.elapsed().as_secs_f64(),
        (recovered - first_failure).as_secs_f64()
    );
    let (newp, other) = if new == "mariadb-1" {
        (&p1, &p2)
    } else {
        (&p2, &p1)
    };
    let have = newp.node.rows();
    let missing: Vec<_> = acked.iter().filter(|id| !have.contains(id)).collect();
    assert!(
        missing.is_empty(),
        "acknowledged writes missing after failover: {missing:?}"
    );
    api.wait_labelled(&other.node.name, "replica", Duration::from_secs(60));
    other.node.wait_rows(&acked);
    eprintln!(
        "{} acknowledged writes, all on {new} and {}",
        acked.len(),
        other.node.name
    );

    // Pod 0 comes back: told to follow, its node retires the datadir and stops; seeded
    // from the new primary, it is a replica again.
    p0.start_elector(&api);
    let until = Instant::now() + Duration::from_secs(60);
    while !p0.desired().starts_with("replica ") {
        assert!(
            Instant::now() < until,
            "the old primary is not told to follow:\n{}",
            p0.elector_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    p0.node.start();
    assert_eq!(
        p0.node.wait_exit(),
        3,
        "a former primary must retire: {}",
        p0.node.log()
    );
    p0.seed_from(&[newp]);
    p0.node.start();
    api.wait_labelled("mariadb-0", "replica", Duration::from_secs(60));
    assert_eq!(
        api.labelled("primary"),
        std::slice::from_ref(&new),
        "one primary"
    );
}
