//! What the lab tests share: running `paasgen lab`, its commands inside nodes, and
//! tearing it down whatever happens.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const REPO: &str = env!("CARGO_MANIFEST_DIR");
/// The remote host the lab puts behind the "internet" namespace.
pub const REMOTE: &str = "http://198.51.100.10:8080/";

// ------------------------------------------------------------- helpers ----

pub fn repo(p: &str) -> PathBuf {
    Path::new(REPO).join(p)
}

/// The program and argument that run a lab step: `paasgen lab`.
pub const LAB: [&str; 2] = [env!("CARGO_BIN_EXE_paasgen"), "lab"];

/// `paasgen lab ...`
pub fn lab() -> Command {
    let mut c = Command::new(LAB[0]);
    c.arg(LAB[1]);
    c
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

pub fn output(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", describe(cmd)))
}

/// Runs `cmd`, panics with its output unless it succeeds; returns stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = output(cmd);
    if !out.status.success() {
        panic!(
            "`{}` failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
            describe(cmd),
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        );
    }
    text(&out.stdout)
}

pub fn with_stdin(cmd: &mut Command, input: &[u8]) -> Output {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", describe(cmd)));
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// `paasgen lab exec NODE -- ARGS...`
pub fn exec(node: &str, args: &[&str]) -> Command {
    let mut c = lab();
    c.args(["exec", node, "--"]).args(args);
    c
}

pub fn exec_ok(node: &str, args: &[&str]) -> String {
    run_ok(&mut exec(node, args))
}

pub fn sh_ok(script: &str) -> String {
    run_ok(Command::new("sh").args(["-c", script]))
}

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);
impl TempDir {
    pub fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("paasgen-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `paasgen lab down` on drop: whatever happens, the lab is torn down. When the test
/// failed, each running node's journal (and those the lab kept of removed nodes) goes
/// to `<target>/lab-journals/` first, the lines that explain an outage (etcd elections
/// and slow disks, haproxy's checks, the API server's readiness) are printed, and then
/// the failure's message again: CI keeps a failed test's output, not its files, and
/// shows its head and tail.
pub struct LabGuard(());
impl LabGuard {
    pub fn new() -> LabGuard {
        keep_panic_message();
        LabGuard(())
    }
}
impl Drop for LabGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            save_journals();
            if let Some(message) = FAILURE.lock().ok().and_then(|f| f.clone()) {
                eprintln!("lab: the test failed: {message}");
            }
        }
        let _ = lab().arg("down").stdin(Stdio::null()).status();
    }
}

/// The last panic's message, kept by the hook `keep_panic_message` installs.
static FAILURE: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

fn keep_panic_message() {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if let Ok(mut failure) = FAILURE.lock() {
                *failure = Some(info.to_string());
            }
            default(info);
        }));
    });
}

/// What a node's journal says about an outage: etcd leadership and slow disk or
/// network, haproxy's health checks, API servers going unready, keepalived's states.
const OUTAGE_PHRASES: &[&str] = &[
    "leader changed",
    "elected leader",
    "lost leader",
    "became leader",
    "became candidate",
    "slow fdatasync",
    "took too long",
    "apply request took",
    "heartbeat",
    "is DOWN",
    "is UP",
    "no server available",
    "readyz",
    "Entering MASTER",
    "Entering BACKUP",
    "Entering FAULT",
    "Out of memory",
];

fn save_journals() {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo("target"));
    let test = std::env::args()
        .next()
        .and_then(|a| Some(Path::new(&a).file_name()?.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let dir = target
        .join("lab-journals")
        .join(format!("{test}-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    // Plain `Command::output`: a panic here, inside a panic, would abort the test binary.
    let Ok(status) = lab().arg("status").output() else {
        return;
    };
    for line in text(&status.stdout).lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(node), Some(state)) = (fields.first(), fields.get(2)) else {
            continue;
        };
        if !state.starts_with("pid:") {
            continue;
        }
        let Ok(journal) = Command::new("timeout")
            .arg("60")
            .args(LAB)
            .args([
                "exec",
                node,
                "--",
                "journalctl",
                "--no-pager",
                "-o",
                "short-precise",
            ])
            .stdin(Stdio::null())
            .output()
        else {
            continue;
        };
        let path = dir.join(format!("{node}.log"));
        let _ = std::fs::write(&path, &journal.stdout);
        let telling: Vec<&str> = std::str::from_utf8(&journal.stdout)
            .unwrap_or_default()
            .lines()
            .filter(|l| outage_line(l))
            .collect();
        eprintln!(
            "--- {node}: journal in {} ({} lines); the last of {} telling lines:",
            path.display(),
            text(&journal.stdout).lines().count(),
            telling.len()
        );
        for l in &telling[telling.len().saturating_sub(40)..] {
            eprintln!("{node}| {l}");
        }
    }
    // The journals the lab kept of the disks it removed (a replaced node's earlier life).
    let nodes = std::env::var_os("PAASGEN_LAB_DIR")
        .map_or_else(|| PathBuf::from("/run/paasgen-lab"), PathBuf::from)
        .join("nodes");
    for node in std::fs::read_dir(nodes).into_iter().flatten().flatten() {
        for kept in std::fs::read_dir(node.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = kept.file_name().to_string_lossy().into_owned();
            if !name.starts_with("journal-") {
                continue;
            }
            let node = node.file_name().to_string_lossy().into_owned();
            let path = dir.join(format!("{node}.removed-{name}"));
            if std::fs::copy(kept.path(), &path).is_ok() {
                eprintln!(
                    "--- {node}: the journal of a removed disk in {}",
                    path.display()
                );
            }
        }
    }
}

fn outage_line(line: &str) -> bool {
    OUTAGE_PHRASES.iter().any(|p| line.contains(p))
}

/// Why the lab cannot run here, if it cannot.
pub fn missing_prerequisite() -> Option<String> {
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .map(|o| text(&o.stdout).trim().to_string());
    if uid.as_deref() != Some("0") {
        return Some("not root (the lab needs namespaces, mounts and systemd-nspawn)".into());
    }
    let have = |t: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .stdout(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    for t in [
        "ip",
        "nsenter",
        "unshare",
        "openssl",
        "python3",
        "curl",
        "tar",
        "sha256sum",
    ] {
        if !have(t) {
            return Some(format!("missing tool `{t}`"));
        }
    }
    // images/bake installs debootstrap and systemd-container itself, with apt
    for t in ["systemd-nspawn", "debootstrap"] {
        if !have(t) && !have("apt-get") {
            return Some(format!("missing `{t}` and no apt-get to install it"));
        }
    }
    let fs = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if !fs.contains("overlay") {
        return Some("no overlayfs in this kernel".into());
    }
    if !Path::new("/sys/fs/cgroup/unified").is_dir()
        && !Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
    {
        return Some("no cgroup2 hierarchy".into());
    }
    None
}

/// `paasgen init` + `paasgen render` of the example in `dir`; returns the out dir.
pub fn render_example(paasgen: &str, dir: &Path) -> PathBuf {
    render_edited_example(paasgen, dir, |spec| spec)
}

/// Like `render_example`, with the example's text changed by `edit` first.
#[allow(dead_code)]
pub fn render_edited_example(
    paasgen: &str,
    dir: &Path,
    edit: impl FnOnce(String) -> String,
) -> PathBuf {
    let spec = dir.join("cluster.yaml");
    let out_dir = dir.join("out");
    run_ok(
        Command::new(paasgen)
            .current_dir(dir)
            .args(["init", "-f"])
            .arg(&spec),
    );
    let text = std::fs::read_to_string(&spec).expect("example spec");
    std::fs::write(&spec, edit(text)).expect("edited spec");
    run_ok(
        Command::new(paasgen)
            .current_dir(dir)
            .args(["render", "-f"])
            .arg(&spec)
            .arg("-o")
            .arg(&out_dir),
    );
    out_dir
}

/// etcdctl on `node` against its local member, with the node's own client cert.
#[allow(dead_code)]
pub fn etcdctl(node: &str, args: &str) -> Output {
    output(&mut exec(
        node,
        &[
            "sh",
            "-c",
            &format!(". /etc/profile.d/etcdctl.sh && etcdctl --dial-timeout=3s --command-timeout=5s {args}"),
        ],
    ))
}

/// `lab up` of `out_dir` on the baked image (waiting for another lab to go), until every
/// node has finished cloud-init; the guard tears the lab down.
#[allow(dead_code)]
pub fn boot_lab(out_dir: &Path) -> LabGuard {
    boot_lab_with(out_dir, &[])
}

/// `boot_lab` with more `lab up` arguments (e.g. `--mirror DIR`).
pub fn boot_lab_with(out_dir: &Path, extra: &[&std::ffi::OsStr]) -> LabGuard {
    let image = run_ok(&mut Command::new(repo("images/bake")));
    let image = image.lines().last().unwrap().trim().to_string();
    run_ok(
        lab()
            .env("PAASGEN_LAB_LOCK_WAIT", "3600")
            .args(["up", "-d"])
            .arg(out_dir)
            .args(["--image", &image])
            .args(extra),
    );
    let guard = LabGuard::new();
    run_ok(lab().args(["wait", "600"]));
    guard
}

/// Waits until etcd, asked from `node`, finds every member healthy.
pub fn wait_healthy(node: &str, limit: std::time::Duration) {
    let start = std::time::Instant::now();
    loop {
        let o = etcdctl(node, "endpoint health --cluster");
        if o.status.success() {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "etcd not healthy from {node}: {}{}",
            text(&o.stdout),
            text(&o.stderr)
        );
        std::thread::sleep(std::time::Duration::from_secs(2));
    }
}

/// True when the lab cannot run here and the test should pass without it (it prints
/// why); under `CI` a missing prerequisite fails the test instead.
pub fn lab_cannot_run(test: &str) -> bool {
    let Some(why) = missing_prerequisite() else {
        return false;
    };
    if std::env::var_os("CI").is_some() {
        panic!("{test} cannot run: {why}");
    }
    eprintln!("{test} skipped: {why}");
    true
}

/// `paasgen ARGS... -f DIR/cluster.yaml` run from the lab's internet, where a user of the
/// cluster stands. Only the network namespace changes: `ip netns exec` would also remount
/// /sys, hiding the cgroup mounts the lab's nspawn needs when paasgen recreates a node.
#[allow(dead_code)]
pub fn paasgen_from_internet(paasgen: &str, dir: &Path, args: &[&str]) -> Output {
    output(&mut paasgen_in_internet(paasgen, dir, args))
}

/// The command `paasgen_from_internet` runs, to spawn.
#[allow(dead_code)]
pub fn paasgen_in_internet(paasgen: &str, dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("nsenter");
    cmd.args(["--net=/run/netns/plab-inet", "--", paasgen])
        .args(args)
        .arg("-f")
        .arg(dir.join("cluster.yaml"))
        .env("PAASGEN_HOME", repo(""));
    cmd
}

/// A user asking a URL through the gateways ten times a second from the lab's internet,
/// a fresh connection (and TLS session, for https) each time, until stopped. A request
/// fails on any error, a 3 s timeout or an answer other than 200.
#[allow(dead_code)]
pub struct Probe(Option<std::process::Child>);

/// A probe's count: answers, failed requests (of which `bad_answers` got an HTTP answer
/// other than 200), the longest time without an answer (s), and each failure's time of
/// day and error (for the assertion's message: CI keeps a failed test's output, cut).
#[allow(dead_code)]
pub struct Probed {
    pub answers: usize,
    pub failures: usize,
    pub bad_answers: usize,
    pub gap: f64,
    pub failed: Vec<String>,
}

/// The probe: `GET URL` every 100 ms, one at a time; on stdin's end it prints
/// `answers failures bad-answers longest-gap-seconds`, then a line per failure, and
/// exits. A bad answer is a failure that got an HTTP answer other than 200 (the service
/// answered, wrongly); the other failures are at the connection (refused, reset, closed
/// with nothing, timeout).
const PROBE: &str = r#"
import socket, ssl, sys, threading, time, urllib.parse
url = urllib.parse.urlsplit(sys.argv[1])
tls = url.scheme == "https"
port = url.port or (443 if tls else 80)
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
request = ("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (url.path or "/", url.hostname)).encode()
done = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
ok = failed = bad = 0
failures = []
gap = 0.0
last = time.monotonic()
while not done.is_set():
    started = time.monotonic()
    try:
        with socket.create_connection((url.hostname, port), timeout=3) as raw:
            c = ctx.wrap_socket(raw) if tls else raw
            c.settimeout(3)
            c.sendall(request)
            answer = b""
            while True:
                chunk = c.recv(4096)
                if not chunk:
                    break
                answer += chunk
        if not answer.startswith(b"HTTP/1.1 200") and not answer.startswith(b"HTTP/1.0 200"):
            bad += 1 if answer else 0
            raise OSError(answer[:60])
        now = time.monotonic()
        gap = max(gap, now - last)
        last = now
        ok += 1
    except Exception as e:
        failed += 1
        failures.append("%s (started %.2fs before): %r" % (time.strftime("%H:%M:%S"), time.monotonic() - started, e))
        print("probe %s: failed at %s" % (sys.argv[1], failures[-1]), file=sys.stderr, flush=True)
    time.sleep(max(0.0, 0.1 - (time.monotonic() - started)))
print(ok, failed, bad, "%.2f" % max(gap, time.monotonic() - last))
print("\n".join(failures), flush=True)
"#;

#[allow(dead_code)]
impl Probe {
    pub fn start(url: &str) -> Probe {
        let child = Command::new("nsenter")
            .args([
                "--net=/run/netns/plab-inet",
                "--",
                "python3",
                "-c",
                PROBE,
                url,
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("starting the probe");
        Probe(Some(child))
    }

    /// What the probe saw.
    pub fn stop(mut self) -> Probed {
        let mut child = self.0.take().expect("a running probe");
        drop(child.stdin.take());
        let out = child.wait_with_output().expect("the probe's result");
        let said = text(&out.stdout);
        let mut lines = said.lines();
        let f: Vec<&str> = lines
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        assert_eq!(f.len(), 4, "the probe said: {said}");
        let failed: Vec<String> = lines.filter(|l| !l.is_empty()).map(String::from).collect();
        let failures: usize = f[1].parse().unwrap();
        assert_eq!(failed.len(), failures, "the probe said: {said}");
        Probed {
            answers: f[0].parse().unwrap(),
            failures,
            bad_answers: f[2].parse().unwrap(),
            gap: f[3].parse().unwrap(),
            failed,
        }
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `KEY=VALUE` of a shell pins file of images/.
#[allow(dead_code)]
pub fn pin(file: &str, key: &str) -> String {
    std::fs::read_to_string(repo(file))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key} in {file}"))
        .to_string()
}
