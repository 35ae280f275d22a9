//! The Swift lab for tests (scripts/swift-lab: Debian's Swift behind the OpenStack
//! lab's Keystone, on 127.0.0.1), and curl against it.
#![allow(dead_code)]

use super::labkit::{output, repo, run_ok, text};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const SWIFT: &str = "http://127.0.0.1:8080";

pub fn oslab_dir() -> PathBuf {
    PathBuf::from(
        std::env::var("OSLAB_DIR").unwrap_or_else(|_| "/var/tmp/paasgen-openstack-lab".into()),
    )
}

pub fn swift_lab_dir() -> PathBuf {
    PathBuf::from(
        std::env::var("SWIFT_LAB_DIR").unwrap_or_else(|_| "/var/tmp/paasgen-swift-lab".into()),
    )
}

pub fn keystone_up() -> bool {
    oslab_dir().join("clouds.yaml").exists()
        && Command::new("curl")
            .args([
                "-sf",
                "-m",
                "5",
                "-o",
                "/dev/null",
                "http://127.0.0.1:5000/v3",
            ])
            .status()
            .is_ok_and(|s| s.success())
}

/// The OpenStack lab: used when it runs (CI starts it), else started here and stopped
/// again at the end.
pub struct OpenStackLab {
    pub started: bool,
}
impl OpenStackLab {
    pub fn ensure() -> Self {
        if keystone_up() {
            return OpenStackLab { started: false };
        }
        eprintln!("starting the OpenStack lab (stopped again at the end)");
        let lab = OpenStackLab { started: true };
        run_ok(Command::new(repo("scripts/openstack-lab")).arg("start"));
        lab
    }
}
impl Drop for OpenStackLab {
    fn drop(&mut self) {
        if self.started {
            let _ = Command::new(repo("scripts/openstack-lab"))
                .arg("stop")
                .status();
        }
    }
}

/// `scripts/swift-lab start`; at the end `stop` when this test started it, else only the
/// forwarders this test started are ended (by the pid in their pid file).
pub struct SwiftLab {
    pub started: bool,
    forwarders: Vec<PathBuf>,
}
impl SwiftLab {
    pub fn start() -> Self {
        let running = Command::new(repo("scripts/swift-lab"))
            .arg("status")
            .output()
            .is_ok_and(|o| o.status.success());
        let lab = SwiftLab {
            started: !running,
            forwarders: Vec::new(),
        };
        let t0 = std::time::Instant::now();
        let out = output(Command::new(repo("scripts/swift-lab")).arg("start"));
        assert!(
            out.status.success(),
            "swift-lab start: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        println!("swift-lab start took {:.1}s", t0.elapsed().as_secs_f64());
        lab
    }

    pub fn forward(&mut self, netns: &str, listen: &str) -> u32 {
        self.forward_to(netns, listen, 8080)
    }

    /// `listen` inside `netns` -> 127.0.0.1:`target` (Swift 8080, Keystone 5000).
    pub fn forward_to(&mut self, netns: &str, listen: &str, target: u16) -> u32 {
        run_ok(Command::new(repo("scripts/swift-lab")).args([
            "forward",
            netns,
            listen,
            &target.to_string(),
        ]));
        let (addr, port) = listen.rsplit_once(':').unwrap();
        let pidfile = swift_lab_dir().join(format!("run/forward-{netns}-{addr}-{port}.pid"));
        self.forwarders.push(pidfile.clone());
        std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    pub fn stop(&mut self) {
        if self.started {
            run_ok(Command::new(repo("scripts/swift-lab")).arg("stop"));
            self.started = false;
        } else {
            for pidfile in self.forwarders.drain(..) {
                if let Some(pid) = our_pid(&pidfile) {
                    let _ = Command::new("kill").arg(pid.to_string()).status();
                }
            }
        }
    }
}
impl Drop for SwiftLab {
    fn drop(&mut self) {
        if self.started {
            let _ = Command::new(repo("scripts/swift-lab")).arg("stop").status();
        } else {
            self.stop();
        }
    }
}

/// The pid in `pidfile` when it is alive and its command line names the swift-lab dir.
pub fn our_pid(pidfile: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(pidfile).ok()?.trim().parse().ok()?;
    alive_with_dir(pid).then_some(pid)
}

pub fn alive_with_dir(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| text(&c).contains(&*swift_lab_dir().to_string_lossy()))
        .unwrap_or(false)
}

/// A network namespace of this test, deleted at the end.
pub struct Netns(pub String);
impl Netns {
    pub fn new() -> Self {
        let name = format!("pswift-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        run_ok(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns(name);
        run_ok(Command::new("ip").args(["-n", &ns.0, "link", "set", "lo", "up"]));
        run_ok(Command::new("ip").args(["-n", &ns.0, "addr", "add", "10.250.0.1/32", "dev", "lo"]));
        ns
    }
}
impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

pub struct Resp {
    pub code: u16,
    pub headers: String,
    pub body: Vec<u8>,
}
impl Resp {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

/// curl ARGS (with `prefix` before it, e.g. `ip netns exec NS`): status, headers, body.
pub fn curl_in(prefix: &[&str], args: &[&str]) -> Resp {
    let dir = tempfile::tempdir().unwrap();
    let (h, b) = (dir.path().join("h"), dir.path().join("b"));
    let mut cmd = if prefix.is_empty() {
        Command::new("curl")
    } else {
        let mut c = Command::new(prefix[0]);
        c.args(&prefix[1..]).arg("curl");
        c
    };
    cmd.args(["-sS", "-m", "30", "-w", "%{http_code}", "-D"])
        .arg(&h)
        .arg("-o")
        .arg(&b)
        .args(args);
    let out = output(&mut cmd);
    assert!(
        out.status.success(),
        "curl {args:?}: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    Resp {
        code: text(&out.stdout).trim().parse().unwrap(),
        // the last response's headers (after any "100 Continue")
        headers: text(&std::fs::read(&h).unwrap())
            .rsplit("\r\n\r\n")
            .find(|s| s.starts_with("HTTP/"))
            .unwrap_or("")
            .to_string(),
        body: std::fs::read(&b).unwrap_or_default(),
    }
}

pub fn curl(args: &[&str]) -> Resp {
    curl_in(&[], args)
}

#[derive(Deserialize)]
pub struct Clouds {
    clouds: BTreeMap<String, Cloud>,
}
#[derive(Deserialize)]
pub struct Cloud {
    auth: Auth,
}
#[derive(Deserialize)]
pub struct Auth {
    auth_url: String,
    username: String,
    password: String,
    project_name: String,
    user_domain_name: String,
    project_domain_name: String,
}

/// A project-scoped token of clouds.yaml's `lab` user: (token, project id, catalog).
pub fn token() -> (String, String, Value) {
    let (tok, v) = token_body();
    (
        tok,
        v["token"]["project"]["id"].as_str().unwrap().to_string(),
        v["token"]["catalog"].clone(),
    )
}

/// Keystone's URL in clouds.yaml's `lab` cloud (127.0.0.1).
pub fn auth_url() -> String {
    let clouds: Clouds =
        serde_saphyr::from_str(&std::fs::read_to_string(oslab_dir().join("clouds.yaml")).unwrap())
            .unwrap();
    let url = clouds.clouds["lab"]
        .auth
        .auth_url
        .trim_end_matches('/')
        .to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    url
}

/// A project-scoped token of clouds.yaml's `lab` user: (token, Keystone's whole answer:
/// `token.user.id`, `token.project.id`, `token.catalog`, ...).
pub fn token_body() -> (String, Value) {
    let clouds: Clouds =
        serde_saphyr::from_str(&std::fs::read_to_string(oslab_dir().join("clouds.yaml")).unwrap())
            .unwrap();
    let a = &clouds.clouds["lab"].auth;
    let body = json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": a.username, "password": a.password,
            "domain": {"name": a.user_domain_name}}}},
        "scope": {"project": {"name": a.project_name,
            "domain": {"name": a.project_domain_name}}}}});
    let url = format!("{}/auth/tokens", a.auth_url.trim_end_matches('/'));
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let r = curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        &body.to_string(),
        &url,
    ]);
    assert_eq!(r.code, 201, "{}", text(&r.body));
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    (r.header("X-Subject-Token").expect("X-Subject-Token"), v)
}

pub fn md5_hex(path: &Path) -> String {
    let out = run_ok(Command::new("md5sum").arg(path));
    out.split_whitespace().next().unwrap().to_string()
}

pub fn random_hex(n: usize) -> String {
    use rand::Rng;
    let bytes: Vec<u8> = (0..n).map(|_| rand::rng().random()).collect();
    paasgen::pki::hex(&bytes)
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
