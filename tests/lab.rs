//! Boot lab: render the reference platform, bake the node image, boot every
//! etcd and gateway node as a systemd-nspawn container from its rendered
//! user-data (`paasgen lab`), and check what the user-data configured:
//! cloud-init, the etcd cluster over TLS, keepalived VIP failover, haproxy to
//! the masters, NAT to the outside.
//!
//! Needs root, systemd-nspawn, overlayfs and a cgroup2 hierarchy; without them
//! it prints why and passes, unless `CI` is set (then it fails).
//! Run: `cargo test --test lab -- --nocapture` (prints the timings).
//! `PAASGEN_LAB_OUT=DIR` boots an existing render output instead of a fresh one.

#[path = "common/lab.rs"]
mod labkit;

use labkit::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Failover above this fails the test.
const FAILOVER_LIMIT: Duration = Duration::from_secs(10);

#[derive(Clone, Debug)]
struct Node {
    name: String,
    role: String,
    private_ip: String,
    public_ip: Option<String>,
}

fn nodes_with_role<'a>(nodes: &'a [Node], role: &str) -> Vec<&'a Node> {
    nodes.iter().filter(|n| n.role == role).collect()
}

// --------------------------------------------------------- cloud-init -----

fn diagnostics(node: &str) -> String {
    let o = output(&mut exec(
        node,
        &[
            "sh",
            "-c",
            "cloud-init status --long; echo '--- cloud-init.log (warnings/errors)'; \
             grep -nE 'WARNING|ERROR|CRITICAL|Traceback' /var/log/cloud-init.log | tail -n 40; \
             echo '--- cloud-init-output.log'; tail -n 60 /var/log/cloud-init-output.log; \
             echo '--- failed units'; systemctl --failed --no-pager --no-legend; \
             for u in etcd keepalived haproxy nftables paasgen-default-route; do \
               systemctl is-enabled $u.service >/dev/null 2>&1 || continue; \
               echo \"--- $u\"; systemctl status $u.service --no-pager -n 0; \
               journalctl -b _SYSTEMD_UNIT=$u.service --no-pager -o short | tail -n 12; done",
        ],
    ));
    format!("===== {node}\n{}{}", text(&o.stdout), text(&o.stderr))
}

/// cloud-init finished on every booted node without errors; returns seconds
/// from `lab up` to the last node done.
fn check_cloud_init(booted: &[String], since: Instant) -> f64 {
    let handles: Vec<_> = booted
        .iter()
        .cloned()
        .map(|n| {
            thread::spawn(move || {
                // right after boot `status --wait` can return at once (the
                // generator has not run yet): wait for cloud-final's result
                let deadline = Instant::now() + Duration::from_secs(900);
                while !output(&mut exec(
                    &n,
                    &["test", "-e", "/run/cloud-init/result.json"],
                ))
                .status
                .success()
                    && Instant::now() < deadline
                {
                    thread::sleep(Duration::from_millis(250));
                }
                let done = since.elapsed();
                let out = output(&mut exec(
                    &n,
                    &["timeout", "900", "cloud-init", "status", "--wait"],
                ));
                (n, out, done)
            })
        })
        .collect();
    let mut failures = Vec::new();
    let mut last = Duration::ZERO;
    for h in handles {
        let (n, out, t) = h.join().unwrap();
        last = last.max(t);
        println!(
            "lab: {n}: cloud-init finished after {:.1}s",
            t.as_secs_f64()
        );
        if !out.status.success() {
            failures.push(format!(
                "{n}: `cloud-init status --wait` exited {}",
                out.status
            ));
            continue;
        }
        let long = text(&output(&mut exec(&n, &["cloud-init", "status", "--long"])).stdout);
        let js = text(&output(&mut exec(&n, &["cloud-init", "status", "--format", "json"])).stdout);
        let v: serde_json::Value = match serde_json::from_str(&js) {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!(
                    "{n}: cloud-init status json unreadable ({e}): {js}"
                ));
                continue;
            }
        };
        let empty = |k: &str| match v.get(k) {
            None | Some(serde_json::Value::Null) => true,
            Some(serde_json::Value::Array(a)) => a.is_empty(),
            Some(serde_json::Value::Object(o)) => o
                .values()
                .all(|x| x.as_array().is_none_or(|a| a.is_empty())),
            Some(_) => false,
        };
        if v["status"] != "done" || !empty("errors") || !empty("recoverable_errors") {
            failures.push(format!("{n}: cloud-init status:\n{long}\n{js}"));
            continue;
        }
        if long
            .lines()
            .any(|l| l.trim_start().starts_with("status: error"))
        {
            failures.push(format!("{n}: {long}"));
            continue;
        }
        // 22.4 has no recoverable_errors field yet: what it logs as WARNING
        // or worse is what later releases report there.
        let warnings = text(
            &output(&mut exec(
                &n,
                &["sh", "-c", "grep -hE ' - [a-zA-Z0-9_.-]+\\[(WARNING|ERROR|CRITICAL)\\]' /var/log/cloud-init.log || true"],
            ))
            .stdout,
        );
        if !warnings.trim().is_empty() {
            failures.push(format!(
                "{n}: cloud-init logged warnings/errors:\n{warnings}"
            ));
        }
    }
    if !failures.is_empty() {
        let diag: Vec<String> = booted.iter().map(|n| diagnostics(n)).collect();
        panic!(
            "cloud-init failed:\n{}\n\n{}",
            failures.join("\n"),
            diag.join("\n")
        );
    }
    last.as_secs_f64()
}

/// The units the user-data enabled run (cloud-init's runcmd does not stop at a
/// failing command, so a unit can fail while cloud-init reports success).
fn check_units(nodes: &[Node]) {
    for n in nodes {
        let units: &[&str] = match n.role.as_str() {
            "gateway" => &["nftables.service", "haproxy.service", "keepalived.service"],
            "etcd" => &["etcd.service", "paasgen-default-route.service"],
            _ => &[],
        };
        for u in units {
            wait_active(&n.name, u, 60);
        }
    }
    println!("lab: gateway (nftables, haproxy, keepalived) and etcd units active");
}

// --------------------------------------------------------------- etcd -----

const CA: &str = "/etc/etcd/pki/ca.crt";
const HC_CERT: &str = "/etc/etcd/pki/healthcheck-client.crt";
const HC_KEY: &str = "/etc/etcd/pki/healthcheck-client.key";

fn etcdctl(node: &str, endpoints: &str, tls: &[&str], args: &[&str]) -> Output {
    let ep = format!("--endpoints={endpoints}");
    let mut a: Vec<&str> = vec![
        "env",
        "etcdctl",
        "--dial-timeout=3s",
        "--command-timeout=5s",
        &ep,
    ];
    a.extend_from_slice(tls);
    a.extend_from_slice(args);
    output(&mut exec(node, &a))
}

fn hc_tls() -> Vec<String> {
    vec![
        format!("--cacert={CA}"),
        format!("--cert={HC_CERT}"),
        format!("--key={HC_KEY}"),
    ]
}

fn check_etcd(nodes: &[Node], out_dir: &Path, tmp: &Path, since: Instant) {
    let etcd = nodes_with_role(nodes, "etcd");
    assert!(etcd.len() >= 3, "expected 3 etcd nodes, got {}", etcd.len());
    let all: Vec<String> = etcd
        .iter()
        .map(|n| format!("https://{}:2379", n.private_ip))
        .collect();
    let all = all.join(",");
    let first = &etcd[0];
    let last = etcd[etcd.len() - 1];
    let tls = hc_tls();
    let tls: Vec<&str> = tls.iter().map(String::as_str).collect();

    // the unit the user-data wrote runs, not Debian's
    for n in &etcd {
        let frag = exec_ok(
            &n.name,
            &[
                "systemctl",
                "show",
                "-p",
                "FragmentPath",
                "--value",
                "etcd.service",
            ],
        );
        assert_eq!(
            frag.trim(),
            "/etc/systemd/system/etcd.service",
            "{}: etcd unit",
            n.name
        );
        let enabled = output(&mut exec(
            &n.name,
            &["systemctl", "is-enabled", "etcd.service"],
        ));
        assert!(
            enabled.status.success(),
            "{}: etcd.service not enabled",
            n.name
        );
        for f in [CA, HC_CERT, HC_KEY] {
            exec_ok(&n.name, &["test", "-s", f]);
        }
    }

    // healthy (etcd is started --no-block: give the members time to meet)
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let o = etcdctl(&first.name, &all, &tls, &["endpoint", "health"]);
        if o.status.success() {
            println!(
                "lab: etcd healthy {:.1}s after lab up:\n{}",
                since.elapsed().as_secs_f64(),
                text(&o.stdout).trim_end()
            );
            break;
        }
        if Instant::now() > deadline {
            let diag: Vec<String> = etcd.iter().map(|n| diagnostics(&n.name)).collect();
            panic!(
                "etcd not healthy:\n{}{}\n{}",
                text(&o.stdout),
                text(&o.stderr),
                diag.join("\n")
            );
        }
        thread::sleep(Duration::from_millis(500));
    }

    // one cluster of all three
    let o = etcdctl(&first.name, &all, &tls, &["member", "list", "-w", "json"]);
    assert!(o.status.success(), "member list: {}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("member list json");
    let names: BTreeSet<String> = v["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["name"].as_str().unwrap_or("").to_string())
        .collect();
    let want: BTreeSet<String> = etcd.iter().map(|n| n.name.clone()).collect();
    assert_eq!(names, want, "etcd members");
    println!(
        "lab: etcd member list: {}",
        names.iter().cloned().collect::<Vec<_>>().join(", ")
    );

    // write through one member, read through another
    let key = "/paasgen-lab/probe";
    let value = format!("v-{}", std::process::id());
    let ep1 = format!("https://{}:2379", first.private_ip);
    let ep3 = format!("https://{}:2379", last.private_ip);
    let o = etcdctl(&first.name, &ep1, &tls, &["put", key, &value]);
    assert!(
        o.status.success(),
        "put via {}: {}",
        first.name,
        text(&o.stderr)
    );
    let o = etcdctl(&last.name, &ep3, &tls, &["get", "--print-value-only", key]);
    assert!(
        o.status.success(),
        "get via {}: {}",
        last.name,
        text(&o.stderr)
    );
    assert_eq!(
        text(&o.stdout).trim(),
        value,
        "value read from {}",
        last.name
    );

    // no client certificate: refused
    let ca_only = format!("--cacert={CA}");
    let o = etcdctl(&first.name, &ep1, &[&ca_only], &["get", key]);
    assert!(
        !o.status.success(),
        "etcd served a client without certificate: {}",
        text(&o.stdout)
    );

    // a client certificate from another CA: refused
    let rogue = tmp.join("rogue");
    std::fs::create_dir_all(&rogue).unwrap();
    sh_ok(&format!(
        "cd {d} && \
         openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
           -subj /CN=rogue-ca -keyout ca.key -out ca.crt 2>/dev/null && \
         openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
           -subj /CN=kube-apiserver-etcd-client -keyout client.key -out client.csr 2>/dev/null && \
         printf 'extendedKeyUsage=clientAuth\\nkeyUsage=critical,digitalSignature\\n' > ext && \
         openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 1 \
           -extfile ext -out client.crt 2>/dev/null",
        d = rogue.display()
    ));
    for f in ["client.crt", "client.key"] {
        let data = std::fs::read(rogue.join(f)).unwrap();
        let o = with_stdin(
            &mut exec(
                &first.name,
                &["sh", "-c", &format!("umask 077; cat > /tmp/rogue-{f}")],
            ),
            &data,
        );
        assert!(o.status.success());
    }
    let (rc, rk) = (
        "--cert=/tmp/rogue-client.crt",
        "--key=/tmp/rogue-client.key",
    );
    let o = etcdctl(&first.name, &ep1, &[&ca_only, rc, rk], &["get", key]);
    assert!(
        !o.status.success(),
        "etcd served a client with a foreign CA's cert: {}",
        text(&o.stdout)
    );
    println!("lab: etcd refused a client without cert and one with a foreign CA's cert");

    // the apiserver's client cert from the rendered master-1 user-data
    let master = nodes_with_role(nodes, "master")[0].name.clone();
    let ud = std::fs::read(out_dir.join(format!("{master}.yaml"))).unwrap();
    let o = with_stdin(&mut exec(&first.name, &["python3", "-c", EXTRACT_PY]), &ud);
    assert!(
        o.status.success(),
        "extracting {master}'s etcd client files: {}",
        text(&o.stderr)
    );
    let found: serde_json::Value = serde_json::from_slice(&o.stdout).expect("extract json");
    assert!(
        found.get("crt").is_some() && found.get("key").is_some(),
        "{master}.yaml has no apiserver-etcd-client cert/key in write_files: {found}"
    );
    println!("lab: {master}'s etcd client files: {found}");
    let master_ca = if found.get("ca").is_some() {
        "/tmp/lab-apiserver/ca"
    } else {
        CA
    };
    let tls_m = [
        format!("--cacert={master_ca}"),
        "--cert=/tmp/lab-apiserver/crt".to_string(),
        "--key=/tmp/lab-apiserver/key".to_string(),
    ];
    let tls_m: Vec<&str> = tls_m.iter().map(String::as_str).collect();
    let o = etcdctl(
        &first.name,
        &all,
        &tls_m,
        &["put", "/registry/paasgen-lab", "from-apiserver"],
    );
    assert!(
        o.status.success(),
        "apiserver-etcd-client put: {}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    let o = etcdctl(
        &first.name,
        &all,
        &tls_m,
        &["get", "--print-value-only", "/registry/paasgen-lab"],
    );
    assert!(
        o.status.success(),
        "apiserver-etcd-client get: {}",
        text(&o.stderr)
    );
    assert_eq!(text(&o.stdout).trim(), "from-apiserver");
    println!("lab: etcd: apiserver-etcd-client reads and writes");
}

/// Reads a #cloud-config on stdin (inside a node: it has python3-yaml), writes
/// the apiserver's etcd client cert/key (and the etcd CA) it carries to
/// /tmp/lab-apiserver/{crt,key,ca}; prints which paths it found as JSON.
const EXTRACT_PY: &str = r#"
import base64, gzip, json, os, sys, yaml
doc = yaml.safe_load(sys.stdin.buffer.read())
os.makedirs('/tmp/lab-apiserver', mode=0o700, exist_ok=True)
found = {}
for f in doc.get('write_files') or []:
    p = f.get('path', '')
    c = f.get('content', '')
    data = c if isinstance(c, bytes) else str(c).encode()
    enc = str(f.get('encoding') or '').lower()
    if enc in ('b64', 'base64'):
        data = base64.b64decode(data)
    elif enc in ('gz+b64', 'gzip+base64', 'gz+base64', 'gzip+b64'):
        data = gzip.decompress(base64.b64decode(data))
    elif enc in ('gz', 'gzip'):
        data = gzip.decompress(data)
    base = os.path.basename(p)
    k = None
    if 'apiserver-etcd-client' in base and base.endswith('.crt'):
        k = 'crt'
    elif 'apiserver-etcd-client' in base and base.endswith('.key'):
        k = 'key'
    elif '/etcd/' in p and base == 'ca.crt':
        k = 'ca'
    if k:
        with open('/tmp/lab-apiserver/' + k, 'wb') as o:
            o.write(data)
        found[k] = p
print(json.dumps(found))
"#;

// ----------------------------------------------------------- gateways -----

struct Vips {
    private: String,
    public: String,
}

/// Container leader PIDs (`paasgen lab leader`), refreshed when one is gone.
#[derive(Default)]
struct Leaders(std::collections::HashMap<String, String>);
impl Leaders {
    fn get(&mut self, node: &str) -> Option<String> {
        if let Some(pid) = self.0.get(node) {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() == "systemd" {
                return Some(pid.clone());
            }
        }
        let o = lab()
            .args(["leader", node])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        let pid = text(&o.stdout).trim().to_string();
        if !o.status.success() || pid.is_empty() {
            self.0.remove(node);
            return None;
        }
        self.0.insert(node.to_string(), pid.clone());
        Some(pid)
    }
}

/// Which gateways hold (private VIP, public VIP), read in each running
/// container's network namespace (a powered-off gateway holds nothing).
fn holders_with(leaders: &mut Leaders, gws: &[&Node], vips: &Vips) -> (Vec<String>, Vec<String>) {
    let (mut p, mut q) = (Vec::new(), Vec::new());
    for g in gws {
        let Some(pid) = leaders.get(&g.name) else {
            continue;
        };
        let o = Command::new("nsenter")
            .args(["-t", &pid, "-n", "ip", "-4", "-o", "addr", "show"])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output();
        let Ok(o) = o else { continue };
        let s = text(&o.stdout);
        if s.contains(&format!("inet {}/", vips.private)) {
            p.push(g.name.clone());
        }
        if s.contains(&format!("inet {}/", vips.public)) {
            q.push(g.name.clone());
        }
    }
    (p, q)
}

fn holders(gws: &[&Node], vips: &Vips) -> (Vec<String>, Vec<String>) {
    thread_local!(static LEADERS: std::cell::RefCell<Leaders> = std::cell::RefCell::new(Leaders::default()));
    LEADERS.with(|l| holders_with(&mut l.borrow_mut(), gws, vips))
}

/// The one gateway holding both VIPs, if exactly one does.
fn sole_holder(gws: &[&Node], vips: &Vips) -> Option<String> {
    let (p, q) = holders(gws, vips);
    (p.len() == 1 && q == p).then(|| p[0].clone())
}

/// Polls every 50 ms until `want` alone holds both VIPs; returns how long it took.
fn wait_holder(gws: &[&Node], vips: &Vips, want: &str, start: Instant, what: &str) -> Duration {
    let deadline = start + Duration::from_secs(60);
    loop {
        if sole_holder(gws, vips).as_deref() == Some(want) {
            return start.elapsed();
        }
        if Instant::now() > deadline {
            let (p, q) = holders(gws, vips);
            panic!("{what}: VIPs did not move to {want} within 60s (private held by {p:?}, public by {q:?})");
        }
        thread::sleep(Duration::from_millis(50));
    }
}

fn wait_active(node: &str, unit: &str, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !output(&mut exec(
        node,
        &["systemctl", "is-active", "--quiet", unit],
    ))
    .status
    .success()
    {
        if Instant::now() > deadline {
            panic!(
                "{node}: {unit} not active after {secs}s\n{}",
                diagnostics(node)
            );
        }
        thread::sleep(Duration::from_millis(250));
    }
}

/// Waits until `node` has its private and public addresses (as `ip` inside it shows them).
fn wait_addresses(node: &Node, secs: u64) {
    let wanted: Vec<&String> = std::iter::once(&node.private_ip)
        .chain(node.public_ip.as_ref())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let addresses = exec_ok(&node.name, &["ip", "-4", "-o", "addr", "show"]);
        if wanted
            .iter()
            .all(|ip| addresses.contains(&format!(" {ip}/")))
        {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "{}: not all of {wanted:?} after {secs}s (cloud-init did not apply its network \
                 config at this boot):\n{addresses}\n{}",
                node.name,
                diagnostics(&node.name)
            );
        }
        thread::sleep(Duration::from_millis(500));
    }
}

/// Watches for `dur`: every sample, exactly one gateway must hold both VIPs.
fn watch_stable(gws: &[&Node], vips: &Vips, expect: &str, dur: Duration, what: &str) {
    let end = Instant::now() + dur;
    while Instant::now() < end {
        let (p, q) = holders(gws, vips);
        assert!(
            p.len() == 1 && q == p && p[0] == expect,
            "{what}: expected {expect} alone to hold both VIPs, private held by {p:?}, public by {q:?}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

fn check_failover(nodes: &[Node], vips: &Vips) -> Vec<(String, Duration)> {
    let gws = nodes_with_role(nodes, "gateway");
    assert_eq!(gws.len(), 2, "expected 2 gateways");
    for g in &gws {
        wait_active(&g.name, "keepalived.service", 60);
        wait_active(&g.name, "haproxy.service", 60);
    }
    // exactly one keepalived holds both VIPs
    let t = Instant::now();
    let deadline = t + Duration::from_secs(60);
    let holder = loop {
        if let Some(h) = sole_holder(&gws, vips) {
            break h;
        }
        if Instant::now() > deadline {
            let (p, q) = holders(&gws, vips);
            let diag: Vec<String> = gws.iter().map(|g| diagnostics(&g.name)).collect();
            panic!(
                "no single VIP holder: private {p:?}, public {q:?}\n{}",
                diag.join("\n")
            );
        }
        thread::sleep(Duration::from_millis(50));
    };
    watch_stable(&gws, vips, &holder, Duration::from_secs(2), "initial");
    let other = gws.iter().find(|g| g.name != holder).unwrap().name.clone();
    println!("lab: {holder} holds both VIPs");
    assert_status_port_names(&holder, vips);
    let mut times = Vec::new();

    // stop keepalived on the holder
    let t = Instant::now();
    exec_ok(&holder, &["systemctl", "stop", "keepalived.service"]);
    let d = wait_holder(&gws, vips, &other, t, "keepalived stopped");
    println!(
        "lab: failover (keepalived stopped on {holder}): {} ms",
        d.as_millis()
    );
    times.push(("keepalived stop".to_string(), d));
    exec_ok(&holder, &["systemctl", "start", "keepalived.service"]);
    wait_active(&holder, "keepalived.service", 30);
    // nopreempt: the VIPs stay where they are
    watch_stable(
        &gws,
        vips,
        &other,
        Duration::from_secs(5),
        "after keepalived restart",
    );

    // What a first boot cut after cloud-init recorded the instance and before it wrote
    // the network config leaves behind: a known instance without network files. The
    // image has cloud-init apply the network config at every boot, so the gateway powered
    // off below must come back with its addresses all the same.
    exec_ok(
        &other,
        &[
            "sh",
            "-c",
            "rm /etc/systemd/network/10-cloud-init-*.network",
        ],
    );

    // power the holder (now `other`) off
    let t = Instant::now();
    run_ok(lab().args(["stop", &other]));
    let d = wait_holder(&gws, vips, &holder, t, "gateway powered off");
    println!("lab: failover ({other} powered off): {} ms", d.as_millis());
    assert_status_port_names(&holder, vips);
    times.push(("node off".to_string(), d));

    // boot it again: no VIP may be lost (nor doubled) meanwhile
    let watcher = {
        let gws: Vec<Node> = gws.iter().map(|g| (*g).clone()).collect();
        let vips = Vips {
            private: vips.private.clone(),
            public: vips.public.clone(),
        };
        let holder = holder.clone();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s2 = stop.clone();
        let h = thread::spawn(move || {
            let refs: Vec<&Node> = gws.iter().collect();
            let mut bad = Vec::new();
            while !s2.load(std::sync::atomic::Ordering::Relaxed) {
                let (p, q) = holders(&refs, &vips);
                if !(p.len() == 1 && q == p && p[0] == holder) {
                    bad.push(format!("private {p:?} public {q:?}"));
                }
                thread::sleep(Duration::from_millis(50));
            }
            bad
        });
        (stop, h)
    };
    run_ok(lab().args(["start", &other]));
    wait_active(&other, "keepalived.service", 180);
    thread::sleep(Duration::from_secs(5));
    watcher.0.store(true, std::sync::atomic::Ordering::Relaxed);
    let bad = watcher.1.join().unwrap();
    assert!(
        bad.is_empty(),
        "VIPs lost or doubled while {other} rebooted: {:?}",
        &bad[..bad.len().min(10)]
    );
    let rebooted = gws.iter().find(|g| g.name == other).unwrap();
    wait_addresses(rebooted, 60);
    println!(
        "lab: {other} rebooted (its network files removed first: cloud-init wrote them again); \
         {holder} kept both VIPs throughout"
    );

    for (what, d) in &times {
        assert!(
            *d <= FAILOVER_LIMIT,
            "failover ({what}) took {} ms > {} ms",
            d.as_millis(),
            FAILOVER_LIMIT.as_millis()
        );
    }
    times
}

// ------------------------------------------------------------ haproxy -----

/// `curl` inside a lab namespace (stand-ins are plain namespaces).
/// The snapshot unit the user-data installed saves a snapshot etcd can read back, and
/// its timer is scheduled.
fn check_snapshot(nodes: &[Node]) {
    let node = &nodes_with_role(nodes, "etcd")[0].name;
    exec_ok(
        node,
        &["systemctl", "start", "paasgen-etcd-snapshot.service"],
    );
    let files = exec_ok(node, &["sh", "-c", "ls -1 /var/backups/etcd/*.db"]);
    let file = files
        .lines()
        .next()
        .expect("a snapshot file")
        .trim()
        .to_string();
    let status = exec_ok(
        node,
        &["etcdutl", "snapshot", "status", &file, "-w", "json"],
    );
    let status: serde_json::Value =
        serde_json::from_str(status.trim()).expect("snapshot status json");
    assert!(
        status["totalKey"].as_u64().unwrap_or(0) > 0,
        "{file}: {status}"
    );
    let timers = exec_ok(node, &["systemctl", "list-timers", "--all", "--no-pager"]);
    assert!(timers.contains("paasgen-etcd-snapshot.timer"), "{timers}");
    println!(
        "lab: {node}: snapshot {file} holds {} keys; timer scheduled",
        status["totalKey"]
    );
}

/// What `paasgen status` reads: haproxy's status port on the public VIP names the
/// gateway holding it.
fn assert_status_port_names(holder: &str, vips: &Vips) {
    let url = format!("http://{}:8404/", vips.public);
    let said = curl_from("internet", &url).unwrap_or_default();
    assert_eq!(
        said.split_whitespace().next(),
        Some(holder),
        "{url} from the internet said {said:?}"
    );
    println!("lab: {url} says {said:?}");
}

fn curl_from(node: &str, url: &str) -> Option<String> {
    let o = output(&mut exec(node, &["curl", "-sk", "--max-time", "3", url]));
    o.status
        .success()
        .then(|| text(&o.stdout).trim().to_string())
}

fn check_haproxy(nodes: &[Node], vip: &str, api_port: u64) {
    let masters = nodes_with_role(nodes, "master");
    let client = nodes_with_role(nodes, "worker")[0].name.clone();
    let url = format!("https://{vip}:{api_port}/");
    let want: BTreeSet<String> = masters.iter().map(|m| m.name.clone()).collect();

    // haproxy counts a master once its health check (TLS, GET /readyz) passed twice.
    let deadline = Instant::now() + Duration::from_secs(30);
    while curl_from(&client, &url).is_none() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(500));
    }
    let seen: Vec<String> = (0..2 * masters.len())
        .filter_map(|_| curl_from(&client, &url))
        .collect();
    let distinct: BTreeSet<String> = seen.iter().cloned().collect();
    println!("lab: {url} from {client}: {seen:?}");
    assert_eq!(distinct, want, "round-robin over the masters");

    // a master whose listener is down drops out
    let down = masters[1].name.clone();
    run_ok(lab().args(["stop", &down]));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let got: Vec<Option<String>> = (0..2 * masters.len())
            .map(|_| curl_from(&client, &url))
            .collect();
        if got
            .iter()
            .all(|g| g.as_ref().is_some_and(|s| s != &down && want.contains(s)))
        {
            println!("lab: with {down} down: {got:?}");
            break;
        }
        if Instant::now() > deadline {
            panic!("haproxy still sends to {down} (or fails) 15s after its listener went down: {got:?}");
        }
        thread::sleep(Duration::from_millis(500));
    }
    run_ok(lab().args(["start", &down]));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let got: BTreeSet<String> = (0..2 * masters.len())
            .filter_map(|_| curl_from(&client, &url))
            .collect();
        if got.contains(&down) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{down} not back in rotation 15s after its listener returned"
        );
        thread::sleep(Duration::from_millis(500));
    }
    println!("lab: {down} back in rotation");
}

/// Ingress: public VIP :80/:443 from the "internet" reach the workers' node ports.
fn check_ingress(nodes: &[Node], public_vip: &str) {
    let want: BTreeSet<String> = nodes_with_role(nodes, "worker")
        .iter()
        .map(|w| w.name.clone())
        .collect();
    for url in [
        format!("http://{public_vip}/"),
        format!("https://{public_vip}/"),
    ] {
        let got: BTreeSet<String> = (0..2 * want.len())
            .filter_map(|_| curl_from("internet", &url))
            .collect();
        assert_eq!(got, want, "{url} from the internet");
        println!("lab: {url} from the internet reaches {got:?}");
    }
}

// ---------------------------------------------------------------- NAT -----

fn check_nat(nodes: &[Node], public_vip: &str) {
    let mut sources: BTreeSet<String> = nodes_with_role(nodes, "gateway")
        .iter()
        .filter_map(|g| g.public_ip.clone())
        .collect();
    sources.insert(public_vip.to_string());
    let worker = nodes_with_role(nodes, "worker")[0].name.clone();
    let etcd = nodes_with_role(nodes, "etcd")[0].name.clone();
    // a stand-in (static default route via the private VIP) and a booted node
    // (default route from the user-data's unit)
    for from in [worker, etcd] {
        let seen = curl_from(&from, REMOTE).unwrap_or_else(|| {
            let diag = nat_diagnostics(nodes, &from);
            let retry: Vec<Option<String>> = (0..5)
                .map(|_| {
                    thread::sleep(Duration::from_secs(1));
                    curl_from(&from, REMOTE)
                })
                .collect();
            panic!(
                "{from} cannot reach the remote host {REMOTE}\n{diag}\nretries 1s apart: {retry:?}"
            )
        });
        assert!(
            sources.contains(&seen),
            "remote saw {from} as {seen}, expected one of {sources:?}"
        );
        println!("lab: NAT: {from} -> remote host, seen as {seen}");
    }
}

fn nat_diagnostics(nodes: &[Node], from: &str) -> String {
    let mut d = String::new();
    let mut run = |node: &str, cmd: &str| {
        let o = output(&mut exec(node, &["sh", "-c", cmd]));
        d.push_str(&format!(
            "--- {node}: {cmd}\n{}{}",
            text(&o.stdout),
            text(&o.stderr)
        ));
    };
    run(from, "ip -4 -o addr; ip route; ip neigh");
    for g in nodes_with_role(nodes, "gateway") {
        run(
            &g.name,
            "ip -4 -o addr; ip route; ip neigh; sysctl net.ipv4.ip_forward; \
             nft list ruleset; systemctl is-active nftables keepalived haproxy",
        );
    }
    run("internet", "ip -4 -o addr; ip route; ip neigh");
    d
}

// --------------------------------------------------------------- test -----

#[test]
fn lab_boots_rendered_platform() {
    if lab_cannot_run("lab test") {
        return;
    }
    let tmp = TempDir::new("lab");
    // PAASGEN_LAB_OUT: boot an existing render output instead (debugging)
    let out_dir = match std::env::var_os("PAASGEN_LAB_OUT") {
        Some(d) => PathBuf::from(d),
        None => render_example(env!("CARGO_BIN_EXE_paasgen"), &tmp.0),
    };

    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("manifest.json")).unwrap())
            .expect("manifest.json");
    let net = &manifest["network"];
    let vips = Vips {
        private: net["private_vip"].as_str().unwrap().to_string(),
        public: net["public_vip"].as_str().unwrap().to_string(),
    };
    let api_port = net["api_port"].as_u64().unwrap_or(6443);
    let nodes: Vec<Node> = manifest["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| Node {
            name: n["name"].as_str().unwrap().to_string(),
            role: n["role"].as_str().unwrap().to_string(),
            private_ip: n["private_ip"].as_str().unwrap().to_string(),
            public_ip: n["public_ip"].as_str().map(str::to_string),
        })
        .collect();
    let booted: Vec<String> = nodes
        .iter()
        .filter(|n| n.role == "etcd" || n.role == "gateway")
        .map(|n| n.name.clone())
        .collect();

    let t = Instant::now();
    let bake = run_ok(&mut Command::new(repo("images/bake")));
    let image = bake
        .lines()
        .last()
        .expect("bake prints the tarball")
        .trim()
        .to_string();
    println!("lab: image {image} ({:.1}s)", t.elapsed().as_secs_f64());

    // one lab per machine: wait (up to 30 min) for another run's lab to go;
    // `lab up` cleans up after itself when it fails
    run_ok(
        lab()
            .env("PAASGEN_LAB_LOCK_WAIT", "1800")
            .args(["up", "-d"])
            .arg(&out_dir)
            .args(["--image", &image]),
    );
    let _guard = LabGuard::new();
    let since = Instant::now();

    let boot = check_cloud_init(&booted, since);
    println!(
        "lab: boot to cloud-init finished on all {} nodes: {boot:.1}s",
        booted.len()
    );
    check_units(&nodes);
    check_etcd(&nodes, &out_dir, &tmp.0, since);
    check_snapshot(&nodes);
    check_haproxy(&nodes, &vips.private, api_port);
    check_ingress(&nodes, &vips.public);
    check_nat(&nodes, &vips.public);
    let times = check_failover(&nodes, &vips);
    // the lab still works after the failovers
    check_nat(&nodes, &vips.public);
    let summary: Vec<String> = times
        .iter()
        .map(|(w, d)| format!("{w} {} ms", d.as_millis()))
        .collect();
    println!(
        "lab: summary: boot {boot:.1}s; failover: {}",
        summary.join(", ")
    );
}
