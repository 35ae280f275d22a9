//! etcd's off-site backups, end to end: a real Swift (scripts/swift-lab) behind the
//! OpenStack lab's Keystone, `paasgen backup setup` preparing the container through
//! the service catalog, and the example's etcd nodes booted in the boot lab from user-data
//! rendered afterwards. Each node's snapshot timer runs; only the leader uploads, and
//! its copy lands in Swift with the sha256 of the node's own snapshot. With the URL its
//! user-data holds, the node can add objects under its own name and nothing else: reading,
//! listing, deleting, and writing under another member's name are refused by Swift.
//!
//! Then `paasgen backup now`, run from the lab's internet, keeps a snapshot locally and
//! copies it to Swift, and `paasgen backup list` shows the copies with their sha256.
//!
//! The nodes reach Swift at 198.51.100.10:8081 (the lab's remote host, through the
//! gateways' NAT), forwarded by `scripts/swift-lab forward` to Swift on 127.0.0.1.

mod common;
#[path = "common/lab.rs"]
mod labkit;
#[path = "common/swift.rs"]
mod swiftkit;

use labkit::*;
use sha2::{Digest, Sha256};
use std::process::Command;
use std::time::{Duration, Instant};
use swiftkit::*;

/// curl on `node`: the HTTP status only.
fn node_curl(node: &str, args: &[&str]) -> String {
    let mut all = vec![
        "curl",
        "-sS",
        "-m",
        "20",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
    ];
    all.extend_from_slice(args);
    exec_ok(node, &all).trim().to_string()
}

#[test]
fn leader_uploads_snapshots_to_swift_with_a_put_only_url() {
    if lab_cannot_run("backup lab test") {
        return;
    }
    if !["swift-proxy-server", "memcached"]
        .iter()
        .all(|p| common::have(p))
    {
        assert!(
            std::env::var_os("CI").is_none(),
            "backup_lab needs Swift in CI"
        );
        eprintln!("backup lab test skipped: Swift is not installed (scripts/setup)");
        return;
    }
    let _openstack = OpenStackLab::ensure();
    let mut swift = SwiftLab::start();
    let tmp = TempDir::new("backup-lab");
    let paasgen = env!("CARGO_BIN_EXE_paasgen");
    let container = format!("demo-etcd-backups-{}", std::process::id());
    let spec = tmp.0.join("cluster.yaml");
    let out_dir = render_edited_example(paasgen, &tmp.0, |text| {
        text.replacen(
            "  snapshot_keep: 24\n",
            &format!(
                "  snapshot_keep: 24\n  swift_backups: {{ container: {container}, keep: 1, upload_endpoint: \"http://198.51.100.10:8081\" }}\n"
            ),
            1,
        )
    });
    let clouds = swiftkit::oslab_dir().join("clouds.yaml");
    let setup = run_ok(
        Command::new(paasgen)
            .env("OS_CLIENT_CONFIG_FILE", &clouds)
            .args(["backup", "setup", "--os-cloud", "lab", "-f"])
            .arg(&spec),
    );
    println!("backup-lab: {}", setup.trim());
    let key = std::fs::read_to_string(tmp.0.join(".paasgen/backups/swift-tempurl.key")).unwrap();
    run_ok(
        Command::new(paasgen)
            .args(["render", "-f"])
            .arg(&spec)
            .arg("-o")
            .arg(&out_dir),
    );
    // Only the etcd nodes get a signature, each its own; the key stays in the state dir.
    for entry in std::fs::read_dir(&out_dir).unwrap().flatten() {
        let doc = std::fs::read_to_string(entry.path()).unwrap_or_default();
        assert!(
            !doc.contains(key.trim()),
            "{} holds the TempURL key",
            entry.path().display()
        );
    }

    let _lab = boot_lab(&out_dir);
    swift.forward("plab-remote", "198.51.100.10:8081");
    let t = Instant::now();
    while !etcdctl("etcd-1", "endpoint health --cluster")
        .status
        .success()
    {
        assert!(
            t.elapsed() < Duration::from_secs(180),
            "etcd never became healthy"
        );
        std::thread::sleep(Duration::from_secs(2));
    }

    // Every member's timer fires once: one copy, from the leader.
    let mut uploaded = Vec::new();
    for node in ["etcd-1", "etcd-2", "etcd-3"] {
        exec_ok(
            node,
            &["systemctl", "start", "paasgen-etcd-snapshot.service"],
        );
        let log = exec_ok(
            node,
            &[
                "journalctl",
                "-u",
                "paasgen-etcd-snapshot",
                "--no-pager",
                "-o",
                "cat",
            ],
        );
        if let Some(line) = log.lines().find(|l| l.starts_with("uploaded ")) {
            uploaded.push((node, line.to_string()));
        }
    }
    println!("backup-lab: {uploaded:?}");
    assert_eq!(
        uploaded.len(),
        1,
        "exactly the leader uploads: {uploaded:?}"
    );
    let (leader, _) = uploaded[0];

    let (token, project, _) = token();
    let base = format!("{SWIFT}/v1/AUTH_{project}/{container}");
    let listing = curl(&[
        "-H",
        &format!("X-Auth-Token: {token}"),
        &format!("{base}?format=json"),
    ]);
    assert_eq!(listing.code, 200);
    let objects: serde_json::Value = serde_json::from_slice(&listing.body).unwrap();
    let names: Vec<&str> = objects
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    let object = names[0].to_string();
    assert!(
        object.starts_with(&format!("{leader}/{leader}-")),
        "{object}"
    );
    let got = curl(&[
        "-H",
        &format!("X-Auth-Token: {token}"),
        &format!("{base}/{object}"),
    ]);
    assert_eq!(got.code, 200);
    let sha = paasgen::pki::hex(&Sha256::digest(&got.body));
    assert_eq!(
        got.header("X-Object-Meta-Sha256").as_deref(),
        Some(sha.as_str())
    );
    let local = exec_ok(
        leader,
        &[
            "sh",
            "-c",
            &format!(
                "sha256sum /var/backups/etcd/{}",
                object.rsplit('/').next().unwrap()
            ),
        ],
    );
    assert!(local.starts_with(&sha), "{local} vs {sha}");
    println!(
        "backup-lab: {object} ({} bytes) in Swift, sha256 {sha}",
        got.body.len()
    );

    // What the node holds lets it add, nothing more.
    let env = exec_ok(leader, &["cat", "/etc/paasgen/etcd-backup-upload"]);
    let value = |k: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(|v| v.trim_matches('\'').to_string())
            .unwrap()
    };
    let (prefix, query) = (value("UPLOAD_URL_PREFIX"), value("UPLOAD_QUERY"));
    let file = object.rsplit('/').next().unwrap();
    let own = format!("{prefix}{file}?{query}");
    assert_eq!(node_curl(leader, &[&own]), "401", "GET with the node's URL");
    assert_eq!(node_curl(leader, &["-X", "DELETE", &own]), "401", "DELETE");
    let listing_url = format!("{}?{query}", prefix.trim_end_matches(&format!("{leader}/")));
    assert_eq!(node_curl(leader, &[&listing_url]), "401", "listing");
    let other = if leader == "etcd-1" {
        "etcd-2"
    } else {
        "etcd-1"
    };
    let foreign = own.replacen(&format!("/{leader}/"), &format!("/{other}/"), 1);
    assert_eq!(
        node_curl(leader, &["-X", "PUT", "--data-binary", "x", &foreign]),
        "401",
        "PUT under another member's name"
    );
    // (Named as a copy of long ago, but uploaded after the first: pruned below, as
    // prune orders copies by when Swift stored them, not by name.)
    let fresh = format!("{prefix}{leader}-20000101T000000Z.db?{query}");
    assert_eq!(
        node_curl(leader, &["-X", "PUT", "--data-binary", "x", &fresh]),
        "201",
        "PUT of a new object under its own name"
    );
    // Hostile names a node can plant under its prefix, sorting after every copy: by
    // name order they would be "the newest" and push the genuine copies out.
    let planted = [
        format!("{leader}/{leader}-99991231T235959Z.db"),
        format!("{leader}/{leader}-zzzz.db"),
    ];
    for name in &planted {
        let file = name.rsplit('/').next().unwrap();
        let url = format!("{prefix}{file}?{query}");
        assert_eq!(
            node_curl(leader, &["-X", "PUT", "--data-binary", "x", &url]),
            "201"
        );
    }
    let still = curl(&[
        "-I",
        "-H",
        &format!("X-Auth-Token: {token}"),
        &format!("{base}/{object}"),
    ]);
    assert_eq!(
        still.code, 200,
        "the backup is gone after the refused DELETE"
    );

    // The leader's timer once more: a second copy under its name.
    std::thread::sleep(Duration::from_millis(1100));
    exec_ok(
        leader,
        &["systemctl", "start", "paasgen-etcd-snapshot.service"],
    );

    // `backup now` from where a user stands (the lab's internet, with Keystone and Swift
    // forwarded to its loopback as a cloud's public endpoints would be): kept locally
    // and copied to Swift, then the copies beyond `keep: 1` per member are pruned with
    // all their versions; `backup list` shows what is left.
    run_ok(Command::new("ip").args(["-n", "plab-inet", "link", "set", "lo", "up"]));
    swift.forward_to("plab-inet", "127.0.0.1:8080", 8080);
    swift.forward_to("plab-inet", "127.0.0.1:5000", 5000);
    let now = output(
        Command::new("nsenter")
            .args(["--net=/run/netns/plab-inet", "--", paasgen])
            .args(["backup", "now", "--os-cloud", "lab", "-f"])
            .arg(&spec)
            .env("OS_CLIENT_CONFIG_FILE", &clouds)
            .env("PAASGEN_HOME", repo("")),
    );
    let said = text(&now.stdout);
    assert!(now.status.success(), "{said}{}", text(&now.stderr));
    let copied = said
        .lines()
        .find_map(|l| l.strip_prefix(&format!("copied to Swift: {container}/")))
        .unwrap_or_else(|| panic!("no copy in Swift: {said}"))
        .to_string();
    let local_sha = said
        .lines()
        .find_map(|l| l.rsplit_once("sha256 ").map(|(_, s)| s.trim().to_string()))
        .unwrap();
    let got = curl(&[
        "-H",
        &format!("X-Auth-Token: {token}"),
        &format!("{base}/{copied}"),
    ]);
    assert_eq!(got.code, 200);
    assert_eq!(paasgen::pki::hex(&Sha256::digest(&got.body)), local_sha);
    let listed = run_ok(
        Command::new(paasgen)
            .env("OS_CLIENT_CONFIG_FILE", &clouds)
            .args(["backup", "list", "--os-cloud", "lab", "-f"])
            .arg(&spec),
    );
    println!("backup-lab: backup list:\n{listed}");
    assert!(said.contains("pruned Swift: "), "{said}");
    let names = |query: &str| -> Vec<String> {
        let r = curl(&[
            "-H",
            &format!("X-Auth-Token: {token}"),
            &format!("{base}?format=json{query}"),
        ]);
        assert_eq!(r.code, 200);
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|o| o["name"].as_str().unwrap().to_string())
            .collect()
    };
    let left = names("");
    // The newest genuine copy of the leader, paasgen's, and the planted two (left
    // alone and reported, never trusted, never deleted).
    assert_eq!(left.len(), 4, "{left:?}");
    for name in &planted {
        assert!(left.contains(name), "{name}: {left:?}");
        let warned = text(&now.stderr);
        assert!(
            warned.contains(&format!("`{name}`")) && warned.contains("left alone"),
            "{warned}"
        );
    }
    let newest = left
        .iter()
        .find(|n| n.starts_with(&format!("{leader}/")) && !planted.contains(n))
        .unwrap();
    assert!(newest.as_str() > object.as_str(), "{left:?}");
    assert!(left.contains(&copied), "{left:?}");
    // Pruned for good: no version of the older copies is left either.
    let versions = names("&versions");
    assert!(
        !versions
            .iter()
            .any(|n| *n == object || n.contains("20000101T000000Z")),
        "{versions:?}"
    );
    assert!(
        listed.contains(newest.as_str()) && listed.contains(&copied),
        "{listed}"
    );
    assert!(listed.contains(&local_sha[..12]), "{listed}");

    // `paasgen status` finds the newest copy in Swift and says its age. The lab has no
    // masters: the report is red for the API, and only its Swift check is read here.
    let status = output(
        Command::new("nsenter")
            .args(["--net=/run/netns/plab-inet", "--", paasgen])
            .args(["status", "--output", "json", "--os-cloud", "lab", "-f"])
            .arg(&spec)
            .env("OS_CLIENT_CONFIG_FILE", &clouds),
    );
    let report: serde_json::Value = serde_json::from_slice(&status.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", text(&status.stdout), text(&status.stderr)));
    let swift_said = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "swift backups")
        .unwrap_or_else(|| panic!("no Swift check: {report}"));
    let detail = swift_said["detail"].as_str().unwrap();
    // paasgen's copy or the leader's, whichever Swift stored last (seconds apart).
    assert!(
        swift_said["ok"] == true
            && (detail.contains(&format!("newest {copied},"))
                || detail.contains(&format!("newest {newest},"))),
        "{swift_said}"
    );
    println!("backup-lab: status: {detail}");

    // recover from Swift: no local copy, two etcd servers deleted; the newest copy the
    // timers uploaded is restored. Then once more with the newest copy damaged in
    // Swift: it is skipped with a warning and the one before it restored.
    let auth = format!("X-Auth-Token: {token}");
    let objects = || names("");
    // Every member's timer once (only the leader uploads); the new object's name.
    let upload = |before: &[String]| -> String {
        std::thread::sleep(Duration::from_millis(1100));
        for node in ["etcd-1", "etcd-2", "etcd-3"] {
            exec_ok(
                node,
                &["systemctl", "start", "paasgen-etcd-snapshot.service"],
            );
        }
        let now = objects();
        let new: Vec<&String> = now.iter().filter(|n| !before.contains(n)).collect();
        assert_eq!(new.len(), 1, "{new:?}");
        new[0].clone()
    };
    let recover = || {
        // No local copy: only Swift's.
        for e in std::fs::read_dir(tmp.0.join(".paasgen/backups"))
            .unwrap()
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".db") || (name.ends_with(".json") && name != "swift.json") {
                std::fs::remove_file(e.path()).unwrap();
            }
        }
        run_ok(lab().args(["remove", "etcd-2"]));
        run_ok(lab().args(["remove", "etcd-3"]));
        let t = Instant::now();
        let out = output(
            Command::new("nsenter")
                .args(["--net=/run/netns/plab-inet", "--", paasgen])
                .args([
                    "recover",
                    "--cloud",
                    "lab",
                    "--os-cloud",
                    "lab",
                    "--etcd-only",
                ])
                .args(["--wait", "300", "-f"])
                .arg(&spec)
                .env("OS_CLIENT_CONFIG_FILE", &clouds)
                .env("PAASGEN_HOME", repo("")),
        );
        let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(out.status.success(), "recover:\n{said}");
        println!(
            "backup-lab: recover from Swift in {:.0}s:\n{said}",
            t.elapsed().as_secs_f64()
        );
        for node in ["etcd-1", "etcd-2", "etcd-3"] {
            wait_healthy(node, Duration::from_secs(120));
        }
        said
    };
    let get = |key: &str| {
        let o = etcdctl("etcd-2", &format!("get {key} --print-value-only"));
        assert!(o.status.success(), "{}", text(&o.stderr));
        text(&o.stdout).trim().to_string()
    };
    let put = |key: &str| {
        let o = etcdctl("etcd-1", &format!("put {key} v"));
        assert!(o.status.success(), "{}", text(&o.stderr));
    };
    put("paasgen/before-a");
    upload(&objects());
    put("paasgen/after-a");
    let b = upload(&objects());
    put("paasgen/after-b");
    let said = recover();
    assert!(said.contains(&format!("snapshot swift:{b} (")), "{said}");
    assert_eq!(get("paasgen/before-a"), "v");
    assert_eq!(get("paasgen/after-a"), "v");
    assert_eq!(
        get("paasgen/after-b"),
        "",
        "written after the copy restored"
    );

    put("paasgen/before-c");
    let c = upload(&objects());
    // Damaged in Swift: other bytes under the sha256 it was uploaded with.
    let got = curl(&["-H", &auth, &format!("{base}/{c}")]);
    assert_eq!(got.code, 200);
    let sha = got.header("X-Object-Meta-Sha256").unwrap();
    let mut bytes = got.body.to_vec();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    let damaged = tmp.0.join("damaged.db");
    std::fs::write(&damaged, &bytes).unwrap();
    let put_back = curl(&[
        "-X",
        "PUT",
        "-H",
        &auth,
        "-H",
        &format!("X-Object-Meta-Sha256: {sha}"),
        "--data-binary",
        &format!("@{}", damaged.display()),
        &format!("{base}/{c}"),
    ]);
    assert_eq!(put_back.code, 201);
    let said = recover();
    assert!(
        said.contains(&format!("warning: copy swift:{c} skipped: sha256 differs")),
        "{said}"
    );
    assert!(said.contains(&format!("snapshot swift:{b} (")), "{said}");
    assert_eq!(get("paasgen/after-a"), "v");
    assert_eq!(get("paasgen/before-c"), "", "only in the damaged copy");
    swift.stop();
}
