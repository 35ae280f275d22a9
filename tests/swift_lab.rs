//! A REAL OpenStack Swift (scripts/swift-lab: Debian's Swift 2.30 on 127.0.0.1) behind
//! the OpenStack lab's Keystone, and TempURLs signed by `paasgen::tempurl`:
//! a) paasgen's project user (clouds.yaml `lab`, a member) finds object-store in its
//!    catalog, creates a versioned container and sets its TempURL key;
//! b) a PUT signature for the prefix `etcd-1/` lets an anonymous client upload
//!    `etcd-1/x.db`, read back intact with the token;
//! c) that signature is refused for GET, HEAD, DELETE, for `etcd-2/`, for listings,
//!    and the object is still there;
//! d) from a network namespace, through `scripts/swift-lab forward`, the same PUT works.
//! Every HTTP request goes to 127.0.0.1 or into the namespace the test creates.

mod common;
#[path = "common/lab.rs"]
mod labkit;
#[path = "common/swift.rs"]
mod swiftkit;

use labkit::{output, text};
use paasgen::tempurl;
use serde_json::Value;
use std::process::Command;
use swiftkit::*;

const CONTAINER: &str = "demo-etcd-backups";
fn cannot_run() -> bool {
    if !common::is_root() {
        assert!(
            std::env::var_os("CI").is_none(),
            "swift_lab needs root in CI"
        );
        eprintln!("SKIPPED: not root (network namespaces)");
        return true;
    }
    !["curl", "ip", "md5sum", "swift-proxy-server", "memcached"]
        .iter()
        .all(|p| common::have(p))
}

#[test]
fn swift_behind_keystone_takes_prefix_tempurl_puts_and_nothing_else() {
    if cannot_run() {
        return;
    }
    let _openstack = OpenStackLab::ensure();
    let netns = Netns::new();
    let mut swift = SwiftLab::start();

    // a) the project user's token finds Swift in its catalog, and works it
    let (tok, project, catalog) = token();
    let xtok = format!("X-Auth-Token: {tok}");
    let store = catalog
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["type"] == "object-store")
        .unwrap_or_else(|| panic!("no object-store in the catalog: {catalog}"));
    let endpoint = store["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["interface"] == "public")
        .and_then(|e| e["url"].as_str())
        .unwrap()
        .to_string();
    let account = format!("/v1/AUTH_{project}");
    assert_eq!(endpoint, format!("{SWIFT}{account}"));
    let container_path = format!("{account}/{CONTAINER}");
    let container_url = format!("{SWIFT}{container_path}");
    let r = curl(&["-X", "PUT", "-H", &xtok, &container_url]);
    assert!(r.code == 201 || r.code == 202, "PUT container: {}", r.code);
    let key = random_hex(32);
    let r = curl(&[
        "-X",
        "POST",
        "-H",
        &xtok,
        "-H",
        "X-Versions-Enabled: true",
        "-H",
        &format!("X-Container-Meta-Temp-URL-Key: {key}"),
        &container_url,
    ]);
    assert_eq!(r.code, 204, "POST container: {}", text(&r.body));
    let r = curl(&["-I", "-H", &xtok, &container_url]);
    assert_eq!(r.code, 204);
    assert_eq!(r.header("X-Versions-Enabled").as_deref(), Some("True"));
    assert_eq!(r.header("X-Container-Meta-Temp-Url-Key"), Some(key.clone()));
    // not for anonymous eyes
    assert_eq!(curl(&["-I", &container_url]).code, 401);

    // b) a PUT signature for the prefix etcd-1/ uploads etcd-1/x.db, no token
    let expires = tempurl::expires_after(now(), 600);
    let signed =
        tempurl::sign_put_prefix(key.as_bytes(), &container_path, "etcd-1/", expires).unwrap();
    let x_path = format!("{container_path}/etcd-1/x.db");
    let x_url = signed.url(SWIFT, &x_path).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("x.db");
    std::fs::write(&data, format!("etcd snapshot {}\n", random_hex(64))).unwrap();
    let md5 = md5_hex(&data);
    let up = |url: &str, prefix: &[&str]| {
        curl_in(
            prefix,
            &[
                "-X",
                "PUT",
                "--data-binary",
                &format!("@{}", data.display()),
                url,
            ],
        )
    };
    let r = up(&x_url, &[]);
    assert_eq!(r.code, 201, "tempurl PUT: {}", text(&r.body));
    assert_eq!(r.header("Etag").as_deref(), Some(md5.as_str()));
    let check = |path: &str| {
        let r = curl(&["-H", &xtok, &format!("{SWIFT}{path}")]);
        assert_eq!(r.code, 200, "GET {path} with the token");
        assert_eq!(r.body, std::fs::read(&data).unwrap(), "{path}");
        assert_eq!(r.header("Etag").as_deref(), Some(md5.as_str()), "{path}");
    };
    check(&x_path);

    // c) the same signature for anything else is refused
    for method in ["GET", "HEAD", "DELETE"] {
        let r = if method == "HEAD" {
            curl(&["-I", &x_url])
        } else {
            curl(&["-X", method, &x_url])
        };
        assert_eq!(r.code, 401, "{method} with a PUT signature");
    }
    let q = signed.query();
    let etcd2 = format!("{SWIFT}{container_path}/etcd-2/x.db");
    assert_eq!(
        up(&format!("{etcd2}?{q}"), &[]).code,
        401,
        "PUT etcd-2/ with etcd-1/'s signature"
    );
    let moved = q.replace("temp_url_prefix=etcd-1/", "temp_url_prefix=etcd-2/");
    assert_ne!(moved, q);
    assert_eq!(
        up(&format!("{etcd2}?{moved}"), &[]).code,
        401,
        "PUT etcd-2/, prefix rewritten"
    );
    assert_eq!(curl(&[&container_url]).code, 401, "anonymous listing");
    assert_eq!(
        curl(&[&format!("{container_url}?{q}")]).code,
        401,
        "listing with the signature"
    );
    let expired =
        tempurl::sign_put_prefix(key.as_bytes(), &container_path, "etcd-1/", now() - 10).unwrap();
    assert_eq!(
        up(&expired.url(SWIFT, &x_path).unwrap(), &[]).code,
        401,
        "expired"
    );
    let wrong = tempurl::sign_put_prefix(b"not-the-key", &container_path, "etcd-1/", expires);
    assert_eq!(
        up(&wrong.unwrap().url(SWIFT, &x_path).unwrap(), &[]).code,
        401,
        "wrong key"
    );
    check(&x_path);
    let r = curl(&["-H", &xtok, &etcd2]);
    assert_eq!(r.code, 404, "etcd-2/x.db was written");
    // what a holder of the signature overwrites stays readable as an older version
    let newer = dir.path().join("newer.db");
    std::fs::write(&newer, format!("newer snapshot {}\n", random_hex(16))).unwrap();
    let r = curl(&[
        "-X",
        "PUT",
        "--data-binary",
        &format!("@{}", newer.display()),
        &x_url,
    ]);
    assert_eq!(r.code, 201, "overwrite through the signature");
    let r = curl(&[
        "-H",
        &xtok,
        &format!("{container_url}?versions&prefix=etcd-1/x.db&format=json"),
    ]);
    assert_eq!(r.code, 200, "versions listing");
    let versions: Value = serde_json::from_slice(&r.body).unwrap();
    let old = versions
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["hash"] == md5.as_str() && v["is_latest"] == false)
        .unwrap_or_else(|| panic!("the overwritten upload is not kept: {versions}"));
    let id = old["version_id"].as_str().unwrap();
    let r = curl(&["-H", &xtok, &format!("{SWIFT}{x_path}?version-id={id}")]);
    assert_eq!((r.code, r.body), (200, std::fs::read(&data).unwrap()));
    let r = curl(&["-H", &xtok, &format!("{SWIFT}{x_path}")]);
    assert_eq!((r.code, r.body), (200, std::fs::read(&newer).unwrap()));

    // d) from a network namespace, through the forwarder
    let inside = ["ip", "netns", "exec", netns.0.as_str()];
    let direct = output(
        Command::new("ip")
            .args(["netns", "exec", &netns.0, "curl", "-sS", "-m", "5"])
            .arg(format!("{SWIFT}/healthcheck")),
    );
    assert!(
        !direct.status.success(),
        "the namespace reaches the host's loopback by itself"
    );
    let fwd = swift.forward(&netns.0, "10.250.0.1:18080");
    let y_path = format!("{container_path}/etcd-1/y.db");
    let r = up(
        &signed.url("http://10.250.0.1:18080", &y_path).unwrap(),
        &inside,
    );
    assert_eq!(
        r.code,
        201,
        "tempurl PUT through the forwarder: {}",
        text(&r.body)
    );
    assert_eq!(r.header("Etag").as_deref(), Some(md5.as_str()));
    check(&y_path);
    let r = curl_in(
        &inside,
        &[&signed.url("http://10.250.0.1:18080", &y_path).unwrap()],
    );
    assert_eq!(r.code, 401, "GET through the forwarder");

    // the end: every process this test started is gone
    let started_here = swift.started;
    let proxy = our_pid(&swift_lab_dir().join("run/proxy.pid")).unwrap();
    swift.stop();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(!alive_with_dir(fwd), "forwarder {fwd} still runs");
    if started_here {
        assert!(!alive_with_dir(proxy), "proxy {proxy} still runs");
    }
}
