//! The PKI is generated once and kept: reuse, issue only what is new, re-issue from the
//! same CA when SANs change, never replace a CA.

mod common;

use common::{example_spec, have, run};
use paasgen::pki::{signed_by, Change, Pki};
use paasgen::spec;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

fn ensure_and_save(dir: &std::path::Path, spec: &spec::Spec) -> Pki {
    let lock = paasgen::lock::StateLock::acquire(dir, "test", true).unwrap();
    let pki = Pki::ensure(dir, spec).unwrap();
    pki.save(&lock).unwrap();
    pki
}

fn spec_with(from: &str, to: &str) -> spec::Spec {
    let text = spec::EXAMPLE.replacen(from, to, 1);
    spec::parse("cluster.yaml", &text).unwrap().0
}

#[test]
fn a_second_run_reuses_everything() {
    let dir = tempfile::tempdir().unwrap();
    let first = ensure_and_save(dir.path(), &example_spec());
    assert!(!first.changes().is_empty());
    let second = ensure_and_save(dir.path(), &example_spec());
    assert_eq!(second.changes(), &[] as &[Change]);
    assert_eq!(first.etcd_ca, second.etcd_ca);
    assert_eq!(first.kubernetes_ca, second.kubernetes_ca);
    assert_eq!(first.etcd_server, second.etcd_server);
    assert_eq!(first.bootstrap_token, second.bootstrap_token);
}

#[test]
fn adding_a_node_issues_only_its_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let before = ensure_and_save(dir.path(), &example_spec());
    let bigger = spec_with(
        "  - { name: master-1,",
        "  - { name: etcd-4,   role: etcd,    private_ip: 192.168.0.13 }\n  - { name: master-1,",
    );
    let after = ensure_and_save(dir.path(), &bigger);
    assert_eq!(
        after.changes(),
        &[
            Change::Created("certificate etcd/etcd-4-server".into()),
            Change::Created("certificate etcd/etcd-4-peer".into()),
        ]
    );
    assert_eq!(before.etcd_ca, after.etcd_ca);
    assert_eq!(before.etcd_server["etcd-1"], after.etcd_server["etcd-1"]);
}

#[test]
fn changed_sans_are_reissued_from_the_same_ca() {
    let dir = tempfile::tempdir().unwrap();
    let before = ensure_and_save(dir.path(), &example_spec());
    let moved = spec_with("private_ip: 192.168.0.11", "private_ip: 192.168.0.14");
    let after = ensure_and_save(dir.path(), &moved);
    let names: Vec<String> = after.changes().iter().map(ToString::to_string).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    for (name, kind) in names.iter().zip(["server", "peer"]) {
        assert!(
            name.starts_with(&format!(
                "re-issued certificate etcd/etcd-2-{kind}: SANs changed"
            )),
            "{name}"
        );
        assert!(name.contains("192.168.0.14"), "{name}");
    }
    assert_eq!(before.etcd_ca, after.etcd_ca);
    assert_ne!(before.etcd_server["etcd-2"], after.etcd_server["etcd-2"]);
    assert!(signed_by(
        &after.etcd_server["etcd-2"].cert_pem,
        &before.etcd_ca.cert_pem
    )
    .unwrap());
    // The re-issued cert is kept: the next run changes nothing.
    assert!(ensure_and_save(dir.path(), &moved).changes().is_empty());
}

#[test]
fn a_ca_without_its_key_is_never_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let first = ensure_and_save(dir.path(), &example_spec());
    let key = dir.path().join("pki/etcd/ca.key");
    std::fs::remove_file(&key).unwrap();
    let err = Pki::ensure(dir.path(), &example_spec())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("ca.crt exists without") && err.contains("ca.key"),
        "{err}"
    );
    let cert = std::fs::read_to_string(dir.path().join("pki/etcd/ca.crt")).unwrap();
    assert_eq!(cert, first.etcd_ca.cert_pem);
    assert!(!key.exists());
}

#[test]
fn keys_are_0600_and_dirs_0700() {
    let dir = tempfile::tempdir().unwrap();
    ensure_and_save(dir.path(), &example_spec());
    let mut checked = 0;
    let mut stack = vec![dir.path().to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            if p.is_dir() {
                assert_eq!(mode, 0o700, "{}", p.display());
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "key")
                || p.ends_with("bootstrap-token")
                || p.ends_with("encryption-key")
            {
                assert_eq!(mode, 0o600, "{}", p.display());
                checked += 1;
            }
        }
    }
    assert!(checked >= 14, "only {checked} key files");
}

#[test]
fn pki_show_lists_subjects_sans_usages_and_expiry() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cluster.yaml"), spec::EXAMPLE).unwrap();
    let bin = env!("CARGO_BIN_EXE_paasgen");
    let (ok, out) = run(Command::new(bin).current_dir(dir.path()).args(["render"]));
    assert!(ok, "{out}");
    let (ok, out) = run(Command::new(bin)
        .current_dir(dir.path())
        .args(["pki", "show"]));
    assert!(ok, "{out}");
    let block: String = out
        .split("\netcd/etcd-1-peer.crt\n")
        .nth(1)
        .expect("etcd-1 peer cert listed")
        .lines()
        .take(6)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(block.contains("subject:  CN=etcd-1"), "{block}");
    assert!(
        block
            .contains("SANs:     192.168.0.10, etcd-1, etcd-1.demo.internal, 127.0.0.1, localhost"),
        "{block}"
    );
    assert!(
        block.contains("usages:   digitalSignature, keyEncipherment"),
        "{block}"
    );
    assert!(
        block.contains("EKUs:     serverAuth, clientAuth"),
        "{block}"
    );
    assert!(block.contains("expires:"), "{block}");
    if have("openssl") {
        // What we print agrees with openssl's reading of the same file.
        let (ok, text) = run(Command::new("openssl")
            .args(["x509", "-noout", "-enddate", "-in"])
            .arg(dir.path().join(".paasgen/pki/etcd/etcd-1-peer.crt")));
        assert!(ok, "{text}");
        let year = text.trim().rsplit(' ').nth(1).unwrap();
        assert!(block.contains(year), "{block} vs {text}");
    }
}

/// Damaged state: `damage` applied after a first render; render must fail naming
/// `file` (and `what`), and change nothing.
fn refuses_damaged(damage: impl Fn(&std::path::Path), file: &str, what: &str) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cluster.yaml"), spec::EXAMPLE).unwrap();
    let bin = env!("CARGO_BIN_EXE_paasgen");
    let (ok, out) = run(Command::new(bin).current_dir(dir.path()).arg("render"));
    assert!(ok, "{out}");
    damage(&dir.path().join(".paasgen/pki"));
    let before = common::tree(dir.path());
    for verb in ["render", "plan", "diff"] {
        let (ok, out) = run(Command::new(bin)
            .current_dir(dir.path())
            .env_remove("OS_CLOUD")
            .env_remove("OS_AUTH_URL")
            .arg(verb));
        assert!(!ok, "{verb} accepted a damaged state ({file}): {out}");
        assert!(
            out.contains(&format!("pki/{file}")) && out.contains(what),
            "{verb}, {file}: expected `{what}` in: {out}"
        );
        assert!(
            before == common::tree(dir.path()),
            "{verb} changed the state"
        );
    }
}

#[test]
fn a_damaged_encryption_key_is_an_error_never_a_new_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cluster.yaml"), spec::EXAMPLE).unwrap();
    let bin = env!("CARGO_BIN_EXE_paasgen");
    let (ok, out) = run(Command::new(bin).current_dir(dir.path()).arg("render"));
    assert!(ok, "{out}");
    let key = dir.path().join(".paasgen/secrets/encryption-key");
    for bad in ["", "c2hvcnQ=\n", "not base64 at all\n"] {
        std::fs::write(&key, bad).unwrap();
        let before = common::tree(dir.path());
        let (ok, out) = run(Command::new(bin).current_dir(dir.path()).arg("render"));
        assert!(!ok, "{bad:?} accepted: {out}");
        assert!(
            out.contains("secrets/encryption-key") && out.contains("32 bytes in base64"),
            "{out}"
        );
        assert!(
            before == common::tree(dir.path()),
            "render changed the state"
        );
    }
}

fn flip_a_byte(path: &std::path::Path) {
    // The middle of the last full base64 line: inside the signature, never padding.
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut line = lines[lines.len() - 3].to_string().into_bytes();
    let mid = line.len() / 2;
    line[mid] = if line[mid] == b'A' { b'B' } else { b'A' };
    let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    let at = out.len() - 3;
    out[at] = String::from_utf8(line).unwrap();
    std::fs::write(path, out.join("\n") + "\n").unwrap();
}

#[test]
fn damaged_state_is_an_error_naming_the_file_and_changes_nothing() {
    let swap = |a: &str, b: &str| {
        let (a, b) = (a.to_string(), b.to_string());
        move |pki: &std::path::Path| {
            let (x, y) = (pki.join(&a), pki.join(&b));
            let (tx, ty) = (std::fs::read(&x).unwrap(), std::fs::read(&y).unwrap());
            std::fs::write(&x, ty).unwrap();
            std::fs::write(&y, tx).unwrap();
        }
    };
    refuses_damaged(
        swap("etcd/etcd-1-server.key", "etcd/etcd-2-server.key"),
        "etcd/etcd-1-server.key",
        "does not belong to",
    );
    refuses_damaged(
        swap("ca.key", "front-proxy-ca.key"),
        "ca.key",
        "does not belong to",
    );
    refuses_damaged(
        |pki| flip_a_byte(&pki.join("etcd/etcd-3-peer.crt")),
        "etcd/etcd-3-peer.crt",
        "does not verify against",
    );
    refuses_damaged(
        |pki| flip_a_byte(&pki.join("etcd/ca.crt")),
        "etcd/ca.crt",
        "",
    );
    refuses_damaged(
        |pki| std::fs::write(pki.join("admin.key"), "").unwrap(),
        "admin.key",
        "not a usable PEM private key",
    );
    refuses_damaged(
        |pki| std::fs::write(pki.join("apiserver-etcd-client.key"), "hello\n").unwrap(),
        "apiserver-etcd-client.key",
        "not a usable PEM private key",
    );
    refuses_damaged(
        |pki| std::fs::write(pki.join("sa.pub"), "not a key\n").unwrap(),
        "sa.pub",
        "not a PEM public key",
    );
    refuses_damaged(
        |pki| std::fs::remove_file(pki.join("etcd/healthcheck-client.key")).unwrap(),
        "etcd/healthcheck-client.key",
        "exists without",
    );
    refuses_damaged(
        |pki| std::fs::remove_file(pki.join("front-proxy-ca.crt")).unwrap(),
        "front-proxy-ca.crt",
        "exists without",
    );
    // A leaf from another cluster's CA: never silently re-issued.
    refuses_damaged(
        |pki| {
            let other = tempfile::tempdir().unwrap();
            ensure_and_save(other.path(), &example_spec());
            for ext in ["crt", "key"] {
                std::fs::copy(
                    other.path().join(format!("pki/admin.{ext}")),
                    pki.join(format!("admin.{ext}")),
                )
                .unwrap();
            }
        },
        "admin.crt",
        "does not verify against",
    );
}
