//! `paasgen upgrade --etcd` on the boot lab: the example's etcd members, booted from
//! the baked image's etcd (images/versions' ETCD_VERSION), are moved to the patch
//! release of images/upgrade-versions by replacement, through the same planner as on
//! OpenStack (`--cloud lab`, paasgen run from the lab's "internet").
//!
//! The new release is not in the image: each new member downloads it through
//! `mirrors.files` from the lab's mirror (`scripts/lab-mirror`, which serves the
//! tarball images/gobuild-etcd built from etcd's Go modules) and checks it against the
//! spec's `etcd.sha256`, which `upgrade --etcd-sha256` writes.
//!
//! Shows: with a checksum that does not match, the first new member refuses the
//! download, its health wait times out, and the upgrade stops there saying where and
//! how to go on, the cluster still serving on the other two; with the right checksum it
//! goes on and replaces etcd-1, etcd-2, etcd-3 one at a time, in that order, while a
//! client keeps writing; then every member reports the new version and runs the
//! mirror's binary, the cluster is healthy with exactly three members (no stale entry),
//! and the keys written before and during the rollout are there on every member.
//!
//! Needs root and what `paasgen lab` needs; without them it prints why and passes,
//! unless `CI` is set (then it fails).

#[path = "common/lab.rs"]
mod labkit;

use labkit::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MEMBERS: [(&str, &str); 3] = [
    ("etcd-1", "192.168.0.10"),
    ("etcd-2", "192.168.0.11"),
    ("etcd-3", "192.168.0.12"),
];
const ALL_ENDPOINTS: &str =
    "https://192.168.0.10:2379,https://192.168.0.11:2379,https://192.168.0.12:2379";
/// Keys written before the upgrade.
const BEFORE: usize = 20;

/// The last line `cmd` prints, as a path.
fn last_line_path(cmd: &mut Command) -> PathBuf {
    PathBuf::from(run_ok(cmd).lines().last().unwrap_or_default().trim())
}

fn upgrade(dir: &Path, extra: &[&str]) -> (bool, String) {
    let mut args = vec!["upgrade", "--cloud", "lab"];
    args.extend_from_slice(extra);
    let o = paasgen_from_internet(env!("CARGO_BIN_EXE_paasgen"), dir, &args);
    (
        o.status.success(),
        format!("{}{}", text(&o.stdout), text(&o.stderr)),
    )
}

/// etcdctl on `node` with its own client cert, parsed from `-w json`.
fn etcdctl_json(node: &str, args: &str) -> serde_json::Value {
    let o = etcdctl(node, &format!("{args} -w json"));
    assert!(
        o.status.success(),
        "{node}: etcdctl {args}: {}",
        text(&o.stderr)
    );
    serde_json::from_str(text(&o.stdout).trim()).unwrap()
}

/// `member list`: (id, name, peer URLs, started and a voter) of each member.
fn members(node: &str) -> Vec<(u64, String, Vec<String>, bool)> {
    let list = etcdctl_json(node, "member list");
    list["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let strings = |k: &str| -> Vec<String> {
                m[k].as_array()
                    .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
                    .unwrap_or_default()
            };
            let started = !strings("clientURLs").is_empty() && m["isLearner"] != true;
            (
                m["ID"].as_u64().unwrap(),
                m["name"].as_str().unwrap_or("").to_string(),
                strings("peerURLs"),
                started,
            )
        })
        .collect()
}

/// Version each member reports, by its client endpoint (`endpoint status`).
fn versions(status: &serde_json::Value) -> BTreeMap<String, String> {
    status
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    (
                        e["Endpoint"].as_str().unwrap().to_string(),
                        e["Status"]["version"].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn endpoint(ip: &str) -> String {
    format!("https://{ip}:2379")
}

/// etcdctl on gw-1 with paasgen's client certificate (copied there by `Client::start`),
/// through all three members.
fn etcdctl_on_gw1(args: &str) -> Output {
    output(&mut exec(
        "gw-1",
        &[
            "sh",
            "-c",
            &format!(
                "d=/run/upgrade-lab; etcdctl --cacert=$d/ca.crt --cert=$d/client.crt --key=$d/client.key --endpoints={ALL_ENDPOINTS} --dial-timeout=2s --command-timeout=4s {args}"
            ),
        ],
    ))
}

/// What a client on gw-1 (which the upgrade does not replace) saw: each write
/// (`paasgen/during/<n>`, about every 0.2 s) and each look at the members' status
/// (about every 0.5 s), with the seconds since it started.
#[derive(Default)]
struct Seen {
    written: Vec<String>,
    writes: Vec<(f64, bool)>,
    /// The version each member that answered reports, by its client endpoint.
    looks: Vec<(f64, BTreeMap<String, String>)>,
}

struct Client {
    stop: Arc<AtomicBool>,
    writer: std::thread::JoinHandle<Seen>,
    watcher: std::thread::JoinHandle<Seen>,
}

impl Client {
    fn start(state_dir: &Path) -> Client {
        for (from, to) in [
            ("etcd/ca.crt", "ca.crt"),
            ("etcd/paasgen-admin-client.crt", "client.crt"),
            ("etcd/paasgen-admin-client.key", "client.key"),
        ] {
            let pem = std::fs::read(state_dir.join("pki").join(from)).unwrap();
            let o = with_stdin(
                &mut exec(
                    "gw-1",
                    &[
                        "sh",
                        "-c",
                        &format!(
                            "mkdir -p -m 0700 /run/upgrade-lab && cat > /run/upgrade-lab/{to}"
                        ),
                    ],
                ),
                &pem,
            );
            assert!(o.status.success(), "{}", text(&o.stderr));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let start = Instant::now();
        let flag = stop.clone();
        let writer = std::thread::spawn(move || {
            let mut seen = Seen::default();
            while !flag.load(Ordering::Relaxed) {
                let key = format!("paasgen/during/{}", seen.writes.len() + 1);
                let ok = etcdctl_on_gw1(&format!("put {key} w")).status.success();
                seen.writes.push((start.elapsed().as_secs_f64(), ok));
                if ok {
                    seen.written.push(key);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            seen
        });
        let flag = stop.clone();
        let watcher = std::thread::spawn(move || {
            let mut seen = Seen::default();
            while !flag.load(Ordering::Relaxed) {
                let o = etcdctl_on_gw1("endpoint status -w json");
                // Members that do not answer are left out (and etcdctl exits 1).
                let status = text(&o.stdout)
                    .lines()
                    .find(|l| l.starts_with('['))
                    .and_then(|l| serde_json::from_str(l).ok())
                    .unwrap_or(serde_json::Value::Null);
                seen.looks
                    .push((start.elapsed().as_secs_f64(), versions(&status)));
                std::thread::sleep(Duration::from_millis(500));
            }
            seen
        });
        Client {
            stop,
            writer,
            watcher,
        }
    }

    fn stop(self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        let Seen {
            written, writes, ..
        } = self.writer.join().unwrap();
        let looks = self.watcher.join().unwrap().looks;
        Seen {
            written,
            writes,
            looks,
        }
    }
}

/// `lab up` of `out_dir` with `mirror` served in the lab's internet, until every node
/// has finished cloud-init; the guard tears the lab down.
#[test]
fn etcd_patch_upgrade_rolls_out_one_member_at_a_time() {
    if lab_cannot_run("upgrade lab test") {
        return;
    }
    let t_all = Instant::now();
    let from = pin("images/versions", "ETCD_VERSION");
    let to = pin("images/upgrade-versions", "ETCD_UPGRADE_VERSION");
    assert_ne!(from, to);

    // The mirror serves the new release, built from its Go modules.
    let t = Instant::now();
    let mirror = last_line_path(&mut Command::new(repo("scripts/lab-mirror")));
    let tarball =
        format!("github.com/etcd-io/etcd/releases/download/v{to}/etcd-v{to}-linux-amd64.tar.gz");
    let sums = std::fs::read_to_string(mirror.join("files.sha256")).unwrap();
    let sum = sums
        .lines()
        .find_map(|l| l.strip_suffix(&format!("  {tarball}")))
        .unwrap_or_else(|| panic!("the mirror has no {tarball}:\n{sums}"))
        .to_string();
    let built = last_line_path(&mut Command::new(repo("images/gobuild-etcd")));
    let etcd_sum = std::fs::read_to_string(built.join("SHA256SUMS")).unwrap();
    let etcd_sum = etcd_sum
        .lines()
        .find_map(|l| l.strip_suffix("  bin/etcd"))
        .unwrap()
        .to_string();
    eprintln!(
        "upgrade-lab: mirror {} serves etcd {to} (sha256 {sum}) ({:.1}s)",
        mirror.display(),
        t.elapsed().as_secs_f64()
    );

    let tmp = TempDir::new("upgrade-lab");
    let out_dir = render_edited_example(env!("CARGO_BIN_EXE_paasgen"), &tmp.0, |spec| {
        spec.replacen(
            "\nnodes:\n",
            "\nmirrors:\n  files: http://198.51.100.10/files\n\nnodes:\n",
            1,
        )
    });
    let state_dir = tmp.0.join(".paasgen");
    let t = Instant::now();
    let _guard = boot_lab_with(&out_dir, &["--mirror".as_ref(), mirror.as_os_str()]);
    wait_healthy("etcd-1", Duration::from_secs(180));
    eprintln!(
        "upgrade-lab: lab up, etcd healthy in {:.0}s",
        t.elapsed().as_secs_f64()
    );
    // What launch records of the servers the lab booted is what upgrade compares with.
    let mut launch = Command::new(env!("CARGO_BIN_EXE_paasgen"));
    launch
        .args(["launch", "--cloud", "lab", "-f"])
        .arg(tmp.0.join("cluster.yaml"))
        .env("PAASGEN_HOME", repo(""));
    let launched = run_ok(&mut launch);
    for (node, _) in MEMBERS {
        assert!(
            launched
                .lines()
                .any(|l| l.starts_with(node) && l.contains("ACTIVE")),
            "{launched}"
        );
    }
    let status = etcdctl_json("etcd-1", "endpoint status --cluster");
    let before_versions = versions(&status);
    assert_eq!(before_versions.len(), 3, "{status}");
    assert!(
        before_versions.values().all(|v| *v == from),
        "{before_versions:?}"
    );
    let put = etcdctl(
        "etcd-1",
        &format!("put paasgen/before-upgrade/0 v0 && for i in $(seq 1 {}); do etcdctl put paasgen/before-upgrade/$i v$i >/dev/null || exit 1; done", BEFORE - 1),
    );
    assert!(put.status.success(), "{}", text(&put.stderr));
    let old_members = members("etcd-1");
    assert_eq!(old_members.len(), 3, "{old_members:?}");

    // 1. A checksum that is not the tarball's: etcd-1's replacement refuses the download,
    //    so it never becomes healthy and the upgrade stops there, saying how to go on.
    let wrong = format!(
        "{}{}",
        &sum[..63],
        if sum.ends_with('0') { '1' } else { '0' }
    );
    let t = Instant::now();
    let (ok, said) = upgrade(
        &tmp.0,
        &["--etcd", &to, "--etcd-sha256", &wrong, "--wait", "60"],
    );
    let stopped_secs = t.elapsed().as_secs_f64();
    assert!(!ok, "{said}");
    for want in [
        &format!("etcd.version is now {to}, etcd.sha256 is now {wrong}"),
        "replacing, one at a time: etcd-1, etcd-2, etcd-3",
        "upgrade stopped at etcd-1 (1 of 3)",
        "etcd-1 did not become a healthy etcd member within 60s",
        "replaced so far: none; fix the cause and run `paasgen upgrade` again to go on",
    ] {
        assert!(said.contains(want), "no `{want}` in:\n{said}");
    }
    assert!(!said.contains("[2/3]"), "{said}");
    eprintln!(
        "upgrade-lab: wrong etcd.sha256: {} ({stopped_secs:.0}s)",
        said.lines()
            .find(|l| l.contains("upgrade stopped"))
            .unwrap_or_default()
    );
    let log = exec_ok("etcd-1", &["cat", "/var/log/cloud-init-output.log"]);
    let refused = format!("paasgen: checksum mismatch for http://198.51.100.10/files/{tarball}");
    assert!(log.contains(&refused), "etcd-1's cloud-init output:\n{log}");
    eprintln!("upgrade-lab: etcd-1 said: {refused}");
    // The other two keep the cluster serving; etcd-1's new member was added but never
    // started; the spec says what was asked.
    let put = etcdctl("etcd-2", "put paasgen/while-stopped kept");
    assert!(put.status.success(), "{}", text(&put.stderr));
    let listed = members("etcd-2");
    assert_eq!(
        listed.iter().filter(|m| !m.3).count(),
        1,
        "one member (etcd-1's new one) unstarted: {listed:?}"
    );
    let spec_text = std::fs::read_to_string(tmp.0.join("cluster.yaml")).unwrap();
    assert!(
        spec_text.contains(&format!("  version: {to} "))
            && spec_text.contains(&format!("  sha256: {wrong}\n")),
        "{spec_text}"
    );

    // 2. The right checksum: the upgrade goes on (etcd-1 again, then the others), one
    //    member at a time, while a client on gw-1 keeps writing.
    let client = Client::start(&state_dir);
    std::thread::sleep(Duration::from_secs(3));
    let t = Instant::now();
    let (ok, said) = upgrade(&tmp.0, &["--etcd-sha256", &sum, "--wait", "300"]);
    let rollout_secs = t.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(3));
    let seen = client.stop();
    assert!(ok, "{said}");
    println!("{said}");
    assert!(
        said.contains(&format!("etcd.sha256 is now {sum}"))
            && said.contains("replacing, one at a time: etcd-1, etcd-2, etcd-3")
            && said.contains("upgrade done: 3 node(s) replaced"),
        "{said}"
    );
    // paasgen's own account: each member started and healthy before the next one.
    let steps = [
        "[1/3] etcd-1",
        "etcd: etcd-1 started and healthy",
        "[2/3] etcd-2",
        "etcd: etcd-2 started and healthy",
        "[3/3] etcd-3",
        "etcd: etcd-3 started and healthy",
    ];
    let at: Vec<usize> = steps
        .iter()
        .map(|s| {
            said.find(s)
                .unwrap_or_else(|| panic!("no `{s}` in:\n{said}"))
        })
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "out of order:\n{said}");
    // The client's account: when each member first answered with the new version, and
    // how many answered at the worst moment.
    let first_new: Vec<Option<f64>> = MEMBERS
        .iter()
        .map(|(_, ip)| {
            seen.looks
                .iter()
                .find(|(_, versions)| versions.get(&endpoint(ip)) == Some(&to))
                .map(|(at, _)| *at)
        })
        .collect();
    let fewest = seen.looks.iter().map(|(_, v)| v.len()).min().unwrap_or(0);
    let (mut gap, mut last) = (0f64, 0f64);
    for (at, ok) in &seen.writes {
        if *ok {
            gap = gap.max(at - last);
            last = *at;
        }
    }
    let end = seen.writes.last().map_or(0.0, |(at, _)| *at);
    gap = gap.max(end - last);
    let (written, failed) = (&seen.written, seen.writes.len() - seen.written.len());
    eprintln!(
        "upgrade-lab: rollout to etcd {to} in {rollout_secs:.0}s; the client saw {} first at {}; {} writes ok, {failed} failed, longest gap between successes {gap:.1}s; fewest members answering at once: {fewest} of 3 ({} looks)",
        MEMBERS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "),
        first_new
            .iter()
            .map(|t| t.map_or("never".to_string(), |t| format!("{t:.0}s")))
            .collect::<Vec<_>>()
            .join(", "),
        written.len(),
        seen.looks.len()
    );
    assert!(
        first_new.iter().all(Option::is_some) && first_new.windows(2).all(|w| w[0] < w[1]),
        "members moved to {to} out of order: {first_new:?}"
    );
    assert!(fewest >= 2, "at some point fewer than 2 members answered");
    assert!(
        written.len() >= 10,
        "too few writes went through: {}",
        written.len()
    );
    assert!(
        gap < 20.0,
        "writes stopped for {gap:.1}s during the upgrade"
    );

    // 3. Where it ended: every member on the new version, running the mirror's binary,
    //    healthy, exactly three members, every key there on each of them.
    for (node, _) in MEMBERS {
        wait_healthy(node, Duration::from_secs(60));
    }
    let status = etcdctl_json("etcd-3", "endpoint status --cluster");
    let now = versions(&status);
    assert_eq!(now.len(), 3, "{status}");
    assert!(now.values().all(|v| *v == to), "{now:?}");
    for (node, _) in MEMBERS {
        let reported = exec_ok(node, &["etcd", "--version"]);
        assert!(
            reported.contains(&format!("etcd Version: {to}\n")),
            "{node}: {reported}"
        );
        let binary = exec_ok(node, &["sha256sum", "/usr/local/bin/etcd"]);
        assert!(binary.starts_with(&etcd_sum), "{node}: {binary}");
    }
    let listed = members("etcd-2");
    assert_eq!(listed.len(), 3, "stale or missing members: {listed:?}");
    for (node, ip) in MEMBERS {
        let m = listed
            .iter()
            .find(|m| m.1 == node)
            .unwrap_or_else(|| panic!("no member {node}: {listed:?}"));
        assert_eq!(m.2, [format!("https://{ip}:2380")], "{listed:?}");
        assert!(m.3, "{node} is not a started voter: {listed:?}");
        assert!(
            old_members.iter().all(|old| old.0 != m.0),
            "{node} was not replaced: {old_members:?} -> {listed:?}"
        );
    }
    for (node, _) in MEMBERS {
        // Serializable: what this member holds itself.
        let got = etcdctl_json(node, "get --prefix paasgen/before-upgrade/ --consistency=s");
        assert_eq!(got["count"], BEFORE, "{node}: {got}");
        let got = etcdctl(
            node,
            "get paasgen/while-stopped --print-value-only --consistency=s",
        );
        assert_eq!(text(&got.stdout).trim(), "kept", "{node}");
    }
    for (node, _) in MEMBERS {
        let during = etcdctl(node, "get --prefix paasgen/during/ --keys-only");
        let during = text(&during.stdout);
        let during: std::collections::BTreeSet<&str> = during.lines().collect();
        let lost: Vec<&String> = written
            .iter()
            .filter(|k| !during.contains(k.as_str()))
            .collect();
        assert!(lost.is_empty(), "{node}: writes lost: {lost:?}");
    }
    let spec_text = std::fs::read_to_string(tmp.0.join("cluster.yaml")).unwrap();
    assert!(
        spec_text.contains(&format!("  sha256: {sum}\n")),
        "{spec_text}"
    );
    eprintln!(
        "upgrade-lab: members {}, all {to}, healthy; {BEFORE} keys from before and the {} written during it on every member",
        listed
            .iter()
            .map(|m| format!("{}={:x}", m.1, m.0))
            .collect::<Vec<_>>()
            .join(" "),
        written.len()
    );

    // 4. Run again: nothing left to replace.
    let (ok, said) = upgrade(&tmp.0, &[]);
    assert!(ok && said.contains("nothing to replace"), "{said}");
    eprintln!(
        "upgrade-lab: whole test {:.0}s",
        t_all.elapsed().as_secs_f64()
    );
}
