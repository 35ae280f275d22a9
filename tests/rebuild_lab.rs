//! `paasgen rebuild` of an etcd member on the boot lab, through the same planner as on
//! OpenStack (`--cloud lab`): the example's etcd and gateway nodes booted from their
//! rendered user-data, paasgen run from the lab's "internet" (where a user stands),
//! reaching each etcd member through the gateways' public VIP by its name (SNI).
//!
//! Shows: `recover` with the way to etcd cut (haproxy stopped on both gateways) refuses
//! within a minute and deletes nothing; a rebuild that would cost the majority is refused and changes nothing (with
//! `--force` it goes ahead and completes once the missing member is back); a
//! powered-off member is replaced by a fresh node (new disk, new member id, user-data
//! saying `initial-cluster-state: existing`) that joins, holds the data written before,
//! and leaves all three members healthy.
//!
//! Then `paasgen upgrade` rolls a spec change out: with a member down it stops at
//! the first node, saying where and how to go on; with all up it replaces the three
//! members one at a time (each healthy before the next), keeping the data. A change
//! only gateways carry: replacing the last gateway that serves is refused; `upgrade`
//! replaces both, one at a time, while a 10 Hz probe of /readyz through the public VIP
//! counts 0 failures.
//!
//! Then `paasgen backup now` takes a snapshot through the etcd API (via the gateways);
//! etcd's own `etcdutl` reads and restores it, and `backup list` catches a damaged one.
//!
//! Last, the majority is lost (one member destroyed with its disk, two powered off) and
//! `paasgen recover` founds etcd again from the newest good backup: three new members,
//! the keys of the backup there, the ones written after it gone.
//!
//! Needs root and what `paasgen lab` needs; without them it prints why and passes,
//! unless `CI` is set (then it fails).

#[path = "common/lab.rs"]
mod labkit;

use labkit::*;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// `paasgen rebuild NODE --cloud lab` (or upgrade, with no node) from the lab's internet.
fn rebuild(dir: &Path, node: &str, extra: &[&str]) -> Output {
    let mut args = vec!["rebuild", node, "--cloud", "lab", "--wait", "300"];
    args.extend_from_slice(extra);
    paasgen_from_internet(env!("CARGO_BIN_EXE_paasgen"), dir, &args)
}

fn upgrade(dir: &Path) -> Output {
    paasgen_from_internet(
        env!("CARGO_BIN_EXE_paasgen"),
        dir,
        &["upgrade", "--cloud", "lab", "--wait", "300"],
    )
}

/// `upgrade` finds every node running what render gives now.
fn assert_nothing_to_replace(dir: &Path) {
    let again = upgrade(dir);
    assert!(
        text(&again.stdout).contains("nothing to replace"),
        "{}{}",
        text(&again.stdout),
        text(&again.stderr)
    );
}

/// The member that leads, by name (endpoint addresses are the example's).
fn leader_name(node: &str) -> String {
    let o = etcdctl(node, "endpoint status --cluster -w json");
    assert!(o.status.success(), "{}", text(&o.stderr));
    let status: serde_json::Value = serde_json::from_str(text(&o.stdout).trim()).unwrap();
    let leader = status
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["Status"]["header"]["member_id"] == e["Status"]["leader"])
        .expect("a leader");
    match leader["Endpoint"].as_str().unwrap() {
        "https://192.168.0.10:2379" => "etcd-1",
        "https://192.168.0.11:2379" => "etcd-2",
        "https://192.168.0.12:2379" => "etcd-3",
        other => panic!("unknown endpoint {other}"),
    }
    .to_string()
}

const ALL_ENDPOINTS: &str =
    "https://192.168.0.10:2379,https://192.168.0.11:2379,https://192.168.0.12:2379";

/// A client writing `paasgen/during/<n>` through all three members until stopped.
struct Writer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: std::thread::JoinHandle<(Vec<String>, usize, f64)>,
}

impl Writer {
    fn start(node: &'static str) -> Writer {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let (mut ok, mut failed, mut gap) = (Vec::new(), 0, 0f64);
            let mut last = Instant::now();
            let mut n = 0;
            while !flag.load(Ordering::Relaxed) {
                n += 1;
                let key = format!("paasgen/during/{n}");
                // All three members (etcdctl refuses --endpoints next to the profile's
                // ETCDCTL_ENDPOINTS, so the variable is replaced).
                let o = output(&mut exec(
                    node,
                    &[
                        "sh",
                        "-c",
                        &format!(
                            ". /etc/profile.d/etcdctl.sh && ETCDCTL_ENDPOINTS={ALL_ENDPOINTS} etcdctl --dial-timeout=3s --command-timeout=5s put {key} w"
                        ),
                    ],
                ));
                if o.status.success() {
                    gap = gap.max(last.elapsed().as_secs_f64());
                    last = Instant::now();
                    ok.push(key);
                } else {
                    failed += 1;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            (ok, failed, gap.max(last.elapsed().as_secs_f64()))
        });
        Writer { stop, handle }
    }

    /// Keys written, failed writes, longest time without a successful write (s).
    fn stop(self) -> (Vec<String>, usize, f64) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle.join().unwrap()
    }
}

/// `id name` of every member, as etcdctl on `node` lists them.
fn members(node: &str) -> Vec<(String, String)> {
    let o = etcdctl(node, "member list");
    assert!(o.status.success(), "{}", text(&o.stderr));
    text(&o.stdout)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(", ").collect();
            (f[0].to_string(), f[2].to_string())
        })
        .collect()
}

#[test]
fn etcd_member_is_rebuilt_from_scratch() {
    if lab_cannot_run("rebuild lab test") {
        return;
    }
    let tmp = TempDir::new("rebuild-lab");
    let out_dir = render_example(env!("CARGO_BIN_EXE_paasgen"), &tmp.0);
    let _guard = boot_lab(&out_dir);
    wait_healthy("etcd-1", Duration::from_secs(180));
    let put = etcdctl("etcd-1", "put paasgen/before-rebuild kept");
    assert!(put.status.success(), "{}", text(&put.stderr));
    let before = members("etcd-1");
    assert_eq!(before.len(), 3, "{before:?}");

    // 0. Unreachable is not dead: with haproxy stopped on both gateways, paasgen cannot
    //    reach any member while etcd is fine. recover (even --force) refuses quickly,
    //    naming the likely causes, and deletes nothing.
    let taken = paasgen_from_internet(env!("CARGO_BIN_EXE_paasgen"), &tmp.0, &["backup", "now"]);
    assert!(taken.status.success(), "{}", text(&taken.stderr));
    for gw in ["gw-1", "gw-2"] {
        exec_ok(gw, &["systemctl", "stop", "haproxy"]);
    }
    for extra in [&[][..], &["--force"]] {
        let t = Instant::now();
        let mut args = vec!["recover", "--cloud", "lab", "--wait", "300", "--etcd-only"];
        args.extend_from_slice(extra);
        let refused = paasgen_from_internet(env!("CARGO_BIN_EXE_paasgen"), &tmp.0, &args);
        let took = t.elapsed().as_secs_f64();
        let said = format!("{}{}", text(&refused.stdout), text(&refused.stderr));
        println!("rebuild-lab: recover {extra:?} with the gateways' haproxy stopped, refused in {took:.1}s:\n{said}");
        assert!(!refused.status.success(), "{said}");
        assert!(
            said.contains("unreachable is not dead")
                && said.contains("admin_cidrs")
                && said.contains("Nothing was deleted"),
            "{said}"
        );
        assert!(took < 60.0, "{took:.1}s");
    }
    // Every member is still there, the same members, read past the gateways.
    assert_eq!(members("etcd-2"), before, "recover changed the members");
    for gw in ["gw-1", "gw-2"] {
        exec_ok(gw, &["systemctl", "start", "haproxy"]);
    }
    wait_healthy("etcd-1", Duration::from_secs(60));
    let got = etcdctl("etcd-3", "get paasgen/before-rebuild --print-value-only");
    assert_eq!(text(&got.stdout).trim(), "kept", "{}", text(&got.stderr));

    // 1. With etcd-3 down, replacing the healthy etcd-1 would leave 1 of 3: refused,
    //    and nothing changes.
    run_ok(lab().args(["stop", "etcd-3"]));
    let refused = rebuild(&tmp.0, "etcd-1", &[]);
    let said = text(&refused.stderr);
    println!("rebuild-lab: refused: {}", said.trim());
    assert!(!refused.status.success(), "{}", text(&refused.stdout));
    assert!(
        said.contains("would leave 1 of 3 etcd members healthy") && said.contains("--force"),
        "{said}"
    );
    assert_eq!(
        members("etcd-1"),
        before,
        "a refused rebuild changed the members"
    );
    // With --force it goes ahead: etcd-1 is swapped out although etcd-3 is down, so the
    // cluster has no quorum to add the new member until etcd-3 is back (started 15 s
    // later); then the rebuild completes.
    let t = Instant::now();
    let forced = {
        let dir = tmp.0.clone();
        std::thread::spawn(move || rebuild(&dir, "etcd-1", &["--force"]))
    };
    std::thread::sleep(Duration::from_secs(15));
    run_ok(lab().args(["start", "etcd-3"]));
    let forced = forced.join().unwrap();
    let said = format!("{}{}", text(&forced.stdout), text(&forced.stderr));
    assert!(forced.status.success(), "{said}");
    assert!(
        said.contains("(--force)") && said.contains("rebuilt etcd-1"),
        "{said}"
    );
    println!(
        "rebuild-lab: etcd-1 rebuilt with --force while etcd-3 was down, in {:.0}s",
        t.elapsed().as_secs_f64()
    );
    wait_healthy("etcd-1", Duration::from_secs(120));
    let forced_members = members("etcd-2");
    assert_eq!(forced_members.len(), 3, "{forced_members:?}");
    let etcd1 = |ms: &[(String, String)]| ms.iter().find(|(_, n)| n == "etcd-1").cloned();
    assert_ne!(
        etcd1(&forced_members),
        etcd1(&before),
        "etcd-1 has a new member id"
    );
    let before = forced_members;

    // 2. etcd-2 dies (powered off; its disk would be lost with it): rebuilt from scratch.
    exec_ok("etcd-2", &["touch", "/var/lib/old-disk-marker"]);
    run_ok(lab().args(["stop", "etcd-2"]));
    let t = Instant::now();
    let rebuilt = rebuild(&tmp.0, "etcd-2", &[]);
    println!("{}", text(&rebuilt.stdout));
    assert!(
        rebuilt.status.success(),
        "{}{}",
        text(&rebuilt.stdout),
        text(&rebuilt.stderr)
    );
    println!(
        "rebuild-lab: etcd-2 rebuilt and healthy in {:.0}s",
        t.elapsed().as_secs_f64()
    );
    let after = members("etcd-1");
    assert_eq!(after.len(), 3, "{after:?}");
    let id_of = |ms: &[(String, String)], n: &str| {
        ms.iter()
            .find(|(_, name)| name == n)
            .map(|(id, _)| id.clone())
    };
    let (old_id, new_id) = (id_of(&before, "etcd-2"), id_of(&after, "etcd-2"));
    assert!(
        new_id.is_some() && new_id != old_id,
        "{before:?} -> {after:?}"
    );
    assert_eq!(id_of(&before, "etcd-1"), id_of(&after, "etcd-1"));
    let config = exec_ok("etcd-2", &["cat", "/etc/etcd/etcd.conf.yml"]);
    assert!(
        config.contains("initial-cluster-state: existing"),
        "{config}"
    );
    let fresh = output(&mut exec(
        "etcd-2",
        &["test", "-e", "/var/lib/old-disk-marker"],
    ));
    assert!(!fresh.status.success(), "the replacement kept the old disk");
    wait_healthy("etcd-2", Duration::from_secs(60));
    // The new member serves the data written before, from its own copy.
    let got = etcdctl(
        "etcd-2",
        "get paasgen/before-rebuild --print-value-only --consistency=s",
    );
    assert_eq!(text(&got.stdout).trim(), "kept", "{}", text(&got.stderr));
    println!(
        "rebuild-lab: members {:?} -> {:?}",
        before
            .iter()
            .map(|(i, n)| format!("{n}={i}"))
            .collect::<Vec<_>>(),
        after
            .iter()
            .map(|(i, n)| format!("{n}={i}"))
            .collect::<Vec<_>>()
    );

    // 3. Launch on the lab sees the cluster as it is: nothing to create, and etcd-2's
    //    user-data (existing) is what render now gives for it.
    let mut plan = Command::new(env!("CARGO_BIN_EXE_paasgen"));
    plan.args(["launch", "--cloud", "lab", "--dry-run", "-f"])
        .arg(tmp.0.join("cluster.yaml"))
        .env("PAASGEN_HOME", repo(""));
    let plan = run_ok(&mut plan);
    let summary = plan.lines().last().unwrap_or_default();
    println!("rebuild-lab: launch --dry-run on the lab after the rebuild: {summary}");
    assert!(
        summary.contains("0 to create") && summary.contains(" 0 differ"),
        "{plan}"
    );

    // 3b. The leader, rebuilt while a client keeps writing through the other members.
    let leader = leader_name("etcd-1");
    let writer_node = ["etcd-1", "etcd-2", "etcd-3"]
        .into_iter()
        .find(|n| *n != leader)
        .unwrap();
    let writes = Writer::start(writer_node);
    std::thread::sleep(Duration::from_secs(3));
    let t = Instant::now();
    let rebuilt = rebuild(&tmp.0, &leader, &[]);
    assert!(
        rebuilt.status.success(),
        "{}{}",
        text(&rebuilt.stdout),
        text(&rebuilt.stderr)
    );
    let rebuild_secs = t.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(3));
    let (ok, failed, longest_gap) = writes.stop();
    println!(
        "rebuild-lab: leader {leader} rebuilt in {rebuild_secs:.0}s while writing: {} writes ok, {failed} failed, longest gap between successes {longest_gap:.1}s",
        ok.len()
    );
    assert!(ok.len() >= 10, "too few writes went through: {}", ok.len());
    assert!(
        longest_gap < 20.0,
        "writes stopped for {longest_gap:.1}s during the rebuild"
    );
    wait_healthy(&leader, Duration::from_secs(60));
    let listed = members("etcd-1");
    assert_eq!(listed.len(), 3, "stale or missing members: {listed:?}");
    for key in &ok {
        let got = etcdctl(
            &leader,
            &format!("get {key} --print-value-only --consistency=s"),
        );
        assert_eq!(
            text(&got.stdout).trim(),
            "w",
            "{key} lost on the new {leader}"
        );
    }
    let after = members("etcd-1");

    // 4. A spec change every etcd node's user-data carries, rolled out by replacement.
    let spec_file = tmp.0.join("cluster.yaml");
    let spec_text = std::fs::read_to_string(&spec_file).unwrap();
    assert!(spec_text.contains("snapshot_keep: 24"));
    std::fs::write(
        &spec_file,
        spec_text.replace("snapshot_keep: 24", "snapshot_keep: 12"),
    )
    .unwrap();
    run_ok(lab().args(["stop", "etcd-3"]));
    let stopped = upgrade(&tmp.0);
    let said = format!("{}{}", text(&stopped.stdout), text(&stopped.stderr));
    assert!(!stopped.status.success(), "{said}");
    assert!(
        said.contains("upgrade stopped at etcd-1 (1 of 3)")
            && said.contains("run `paasgen upgrade` again"),
        "{said}"
    );
    println!(
        "rebuild-lab: upgrade with etcd-3 down: {}",
        said.lines()
            .find(|l| l.contains("upgrade stopped"))
            .unwrap_or_default()
    );
    run_ok(lab().args(["start", "etcd-3"]));
    wait_healthy("etcd-1", Duration::from_secs(120));
    let t = Instant::now();
    let done = upgrade(&tmp.0);
    let said = format!("{}{}", text(&done.stdout), text(&done.stderr));
    assert!(done.status.success(), "{said}");
    assert!(
        said.contains("replacing, one at a time: etcd-1, etcd-2, etcd-3"),
        "{said}"
    );
    println!(
        "rebuild-lab: upgrade replaced 3 etcd members in {:.0}s",
        t.elapsed().as_secs_f64()
    );
    let rolled = members("etcd-1");
    for name in ["etcd-1", "etcd-2", "etcd-3"] {
        assert_ne!(
            id_of(&rolled, name),
            id_of(&after, name),
            "{name} not replaced"
        );
    }
    wait_healthy("etcd-3", Duration::from_secs(60));
    let got = etcdctl("etcd-3", "get paasgen/before-rebuild --print-value-only");
    assert_eq!(text(&got.stdout).trim(), "kept", "{}", text(&got.stderr));
    let script = exec_ok("etcd-1", &["cat", "/usr/local/sbin/paasgen-etcd-snapshot"]);
    assert!(script.contains("keeps the newest 12"), "{script}");
    assert_nothing_to_replace(&tmp.0);

    // 4b. A change only the gateways carry (the ingress NodePort haproxy sends :80 to),
    //     rolled out while a user asks the API through the public VIP ten times a
    //     second. First: with gw-2's haproxy stopped, gw-1 is the last gateway that
    //     serves, and replacing it is refused with nothing changed.
    exec_ok("gw-2", &["systemctl", "stop", "haproxy"]);
    let refused = rebuild(&tmp.0, "gw-1", &[]);
    let said = format!("{}{}", text(&refused.stdout), text(&refused.stderr));
    assert!(!refused.status.success(), "{said}");
    assert!(
        said.contains("gw-1 is the last gateway that serves")
            && said.contains("Nothing was changed"),
        "{said}"
    );
    let state = run_ok(lab().arg("status"));
    assert!(
        exec_ok("gw-1", &["systemctl", "is-active", "keepalived", "haproxy"])
            .split_whitespace()
            .all(|s| s == "active"),
        "gw-1 was touched:\n{state}"
    );
    println!(
        "rebuild-lab: rebuild gw-1 with gw-2's haproxy stopped: {}",
        said.lines()
            .find(|l| l.contains("last gateway"))
            .unwrap_or_default()
    );
    exec_ok("gw-2", &["systemctl", "start", "haproxy"]);
    let spec_text = std::fs::read_to_string(&spec_file).unwrap();
    assert!(spec_text.contains("ingress_http_node_port: 30080"));
    std::fs::write(
        &spec_file,
        spec_text.replace(
            "ingress_http_node_port: 30080",
            "ingress_http_node_port: 30081",
        ),
    )
    .unwrap();
    let probe = Probe::start("https://203.0.113.10:6443/readyz");
    // A few answers before, so a probe that cannot reach the VIP at all fails here.
    std::thread::sleep(Duration::from_secs(2));
    let t = Instant::now();
    let done = upgrade(&tmp.0);
    let took = t.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(2));
    let probed = probe.stop();
    let (answers, failures, gap) = (probed.answers, probed.failures, probed.gap);
    let said = format!("{}{}", text(&done.stdout), text(&done.stderr));
    assert!(done.status.success(), "{said}");
    assert!(
        said.contains("replacing, one at a time: gw-1, gw-2"),
        "{said}"
    );
    println!(
        "rebuild-lab: upgrade replaced gw-1 and gw-2 in {took:.0}s; /readyz through the public VIP at 10 Hz meanwhile: {answers} answers, {failures} failures, longest gap {gap:.2}s"
    );
    println!(
        "rebuild-lab: upgrade said:\n{}",
        said.lines()
            .filter(|l| l.contains("gateways:") || l.contains("stopping"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        answers as f64 > took * 5.0,
        "{answers} answers in {took:.0}s"
    );
    // Each clean stop moves the VIPs once (the new gateway comes up as BACKUP with
    // nopreempt and takes nothing back): two moves. A request in flight through the VIP
    // at the instant it moves loses its connection (the new holder resets what it never
    // accepted), which no VIP failover carries over; the probe has one in flight at a
    // time. So: at most one failure per move, none of them an answer from the platform,
    // and no longer gap than one such request's 3 s timeout and the next request.
    let vip_moves = 2;
    assert_eq!(
        probed.bad_answers, 0,
        "the API through the VIP answered other than 200 during the upgrade"
    );
    assert!(
        failures <= vip_moves,
        "the API through the VIP failed {failures} times during the upgrade, more than the {vip_moves} moves of the VIPs:\n{}",
        probed.failed.join("\n")
    );
    assert!(gap < 5.0, "no answer for {gap:.2}s during the upgrade");
    for gw in ["gw-1", "gw-2"] {
        let cfg = exec_ok(gw, &["cat", "/etc/haproxy/haproxy.cfg"]);
        assert!(cfg.contains(":30081 check"), "{gw}: {cfg}");
        let active = exec_ok(gw, &["systemctl", "is-active", "keepalived", "haproxy"]);
        assert_eq!(
            active.split_whitespace().collect::<Vec<_>>(),
            ["active", "active"],
            "{gw}"
        );
    }
    // The VIPs are held by one gateway, not both.
    let holders: Vec<&str> = ["gw-1", "gw-2"]
        .into_iter()
        .filter(|gw| exec_ok(gw, &["ip", "-4", "-o", "addr"]).contains("203.0.113.10/"))
        .collect();
    assert_eq!(holders.len(), 1, "public VIP held by {holders:?}");
    assert_nothing_to_replace(&tmp.0);

    // 5. A backup through the etcd API, read and restored by etcd's own etcdutl.
    let t = Instant::now();
    let taken = paasgen_from_internet(env!("CARGO_BIN_EXE_paasgen"), &tmp.0, &["backup", "now"]);
    let said = text(&taken.stdout);
    assert!(taken.status.success(), "{said}{}", text(&taken.stderr));
    println!(
        "rebuild-lab: {} ({:.1}s)",
        said.trim(),
        t.elapsed().as_secs_f64()
    );
    let path = said
        .strip_prefix("backup ")
        .and_then(|r| r.split(" (").next())
        .expect("the backup's path");
    let gout = run_ok(&mut Command::new(repo("images/gobuild")));
    let etcdutl = Path::new(gout.lines().last().unwrap().trim()).join("bin/etcdutl");
    let status = run_ok(Command::new(&etcdutl).args(["snapshot", "status", path, "-w", "json"]));
    let status: serde_json::Value = serde_json::from_str(status.trim()).unwrap();
    assert!(
        status["revision"].as_u64() > Some(0) && status["totalKey"].as_u64() > Some(0),
        "{status}"
    );
    let restored = tmp.0.join("restored");
    run_ok(
        Command::new(&etcdutl)
            .args(["snapshot", "restore", path, "--data-dir"])
            .arg(&restored),
    );
    println!("rebuild-lab: etcdutl snapshot status: {status}; restore ok");
    let listed = run_ok(
        Command::new(env!("CARGO_BIN_EXE_paasgen"))
            .args(["backup", "list", "-f"])
            .arg(tmp.0.join("cluster.yaml")),
    );
    // This one and step 0's.
    assert!(
        listed.lines().filter(|l| l.contains(" ok ")).count() == 2,
        "{listed}"
    );
    let mut bytes = std::fs::read(path).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(path, bytes).unwrap();
    let listed = run_ok(
        Command::new(env!("CARGO_BIN_EXE_paasgen"))
            .args(["backup", "list", "-f"])
            .arg(tmp.0.join("cluster.yaml")),
    );
    assert!(listed.contains("BAD: sha256 differs"), "{listed}");

    // 6. Majority loss, recovered from the newest good backup. While etcd has its
    //    majority, recover is refused.
    let recover = |extra: &[&str]| {
        // No Kubernetes in this lab: its masters are stand-ins.
        let mut args = vec!["recover", "--cloud", "lab", "--wait", "300", "--etcd-only"];
        args.extend_from_slice(extra);
        paasgen_from_internet(env!("CARGO_BIN_EXE_paasgen"), &tmp.0, &args)
    };
    let put = etcdctl("etcd-1", "put paasgen/before-backup kept");
    assert!(put.status.success(), "{}", text(&put.stderr));
    let taken = paasgen_from_internet(env!("CARGO_BIN_EXE_paasgen"), &tmp.0, &["backup", "now"]);
    assert!(taken.status.success(), "{}", text(&taken.stderr));
    let refused = recover(&[]);
    let said = text(&refused.stderr);
    assert!(
        !refused.status.success() && said.contains("still has its majority"),
        "{}{said}",
        text(&refused.stdout)
    );
    let put = etcdctl("etcd-1", "put paasgen/after-backup lost");
    assert!(put.status.success(), "{}", text(&put.stderr));
    let old_members = members("etcd-1");
    // etcd-1 is destroyed with its disk; etcd-2 and etcd-3 are powered off.
    run_ok(lab().args(["remove", "etcd-1"]));
    run_ok(lab().args(["stop", "etcd-2"]));
    run_ok(lab().args(["stop", "etcd-3"]));
    let t = Instant::now();
    let recovered = recover(&[]);
    let said = text(&recovered.stdout);
    println!("{said}");
    assert!(
        recovered.status.success(),
        "{said}{}",
        text(&recovered.stderr)
    );
    println!(
        "rebuild-lab: recover from command to 3 healthy members: {:.0}s",
        t.elapsed().as_secs_f64()
    );
    for node in ["etcd-1", "etcd-2", "etcd-3"] {
        wait_healthy(node, Duration::from_secs(60));
    }
    let new_members = members("etcd-3");
    assert_eq!(new_members.len(), 3, "{new_members:?}");
    assert!(
        new_members.iter().all(|m| !old_members.contains(m)),
        "{old_members:?} -> {new_members:?}"
    );
    let got = etcdctl("etcd-3", "get paasgen/before-backup --print-value-only");
    assert_eq!(text(&got.stdout).trim(), "kept", "{}", text(&got.stderr));
    let got = etcdctl("etcd-2", "get paasgen/after-backup --print-value-only");
    assert!(
        got.status.success() && text(&got.stdout).trim().is_empty(),
        "{}",
        text(&got.stdout)
    );
    // Revisions go on far above the snapshot's, so watchers see every change as new.
    let status = etcdctl("etcd-1", "endpoint status -w json");
    let status: serde_json::Value = serde_json::from_str(text(&status.stdout).trim()).unwrap();
    assert!(
        status[0]["Status"]["header"]["revision"].as_u64() > Some(1_000_000_000),
        "{status}"
    );
    let put = etcdctl("etcd-2", "put paasgen/after-recover written");
    assert!(put.status.success(), "{}", text(&put.stderr));
    let config = |n| exec_ok(n, &["cat", "/etc/etcd/etcd.conf.yml"]);
    let (c1, c2, c3) = (config("etcd-1"), config("etcd-2"), config("etcd-3"));
    assert!(
        c1.contains("initial-cluster: \"etcd-1=https://192.168.0.10:2380\"\n"),
        "{c1}"
    );
    assert!(
        c2.contains("initial-cluster-state: existing")
            && c2.contains("etcd-2=")
            && !c2.contains("etcd-3="),
        "{c2}"
    );
    assert!(
        c3.contains("initial-cluster-state: existing") && c3.contains("etcd-3="),
        "{c3}"
    );
    // The recovered cluster is what render gives now: nothing left to replace.
    assert_nothing_to_replace(&tmp.0);
}
