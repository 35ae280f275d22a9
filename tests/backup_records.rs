//! A backup record in the state dir is read, never trusted: `backup list` shows a
//! damaged or hostile one as BAD (escaped, no panic), and `recover` never sends what a
//! record names outside `backups/`, nor a file other than the one `--from` names.

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_paasgen");

fn paasgen(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

fn said(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A spec dir with a rendered state dir and `records` (name, JSON) in backups/.
fn state_with(records: &[(&str, serde_json::Value)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cluster.yaml"), paasgen::spec::EXAMPLE).unwrap();
    let o = paasgen(dir.path(), &["render"]);
    assert!(o.status.success(), "{}", said(&o));
    let backups = dir.path().join(".paasgen/backups");
    std::fs::create_dir_all(&backups).unwrap();
    for (name, record) in records {
        std::fs::write(backups.join(name), record.to_string()).unwrap();
    }
    dir
}

fn record(file: &str, sha256: &str) -> serde_json::Value {
    serde_json::json!({"file": file, "taken_at": "2026-12-01T00:00:00Z", "member": "etcd-1",
        "revision": 5, "bytes": 3, "sha256": sha256})
}

#[test]
fn hostile_records_are_listed_as_bad_without_a_panic_or_raw_escapes() {
    let dir = state_with(&[
        ("a.json", record("demo-a.db", &"é".repeat(40))),
        ("b.json", record("../pki/ca.key", &"0".repeat(64))),
        ("c.json", record("/etc/passwd", &"0".repeat(64))),
        ("d.json", record("\u{1b}[31mred.db", "\u{1b}]0;title\u{7}")),
    ]);
    let o = paasgen(dir.path(), &["backup", "list"]);
    let text = said(&o);
    assert_eq!(o.status.code(), Some(0), "{text}");
    assert!(!text.contains('\u{1b}'), "raw escape: {text:?}");
    assert!(text.contains("\\u{1b}[31mred.db"), "{text}");
    let bad = text.lines().filter(|l| l.contains("BAD: ")).count();
    assert_eq!(bad, 4, "{text}");
    assert!(text.contains("not a snapshot file in backups/"), "{text}");
    assert!(!text.contains(" ok "), "{text}");
}

#[test]
fn recover_sends_nothing_a_record_names_outside_backups() {
    let dir = state_with(&[("b.json", record("../pki/ca.key", &"0".repeat(64)))]);
    // Even a matching sha256 does not make the CA key a snapshot.
    let key = std::fs::read(dir.path().join(".paasgen/pki/ca.key")).unwrap();
    let sha = paasgen::render::sha256_hex(&key);
    std::fs::write(
        dir.path().join(".paasgen/backups/b.json"),
        record("../pki/ca.key", &sha).to_string(),
    )
    .unwrap();
    for extra in [&[][..], &["--from", "../pki/ca.key"]] {
        let mut args = vec!["recover", "--cloud", "lab"];
        args.extend_from_slice(extra);
        let o = paasgen(dir.path(), &args);
        let text = said(&o);
        assert!(!o.status.success(), "{text}");
        assert!(
            text.contains("not a snapshot file in backups/")
                || text.contains("restores only backups in"),
            "{text}"
        );
    }
}

#[test]
fn recover_from_a_path_elsewhere_is_refused_not_swapped() {
    let dir = state_with(&[]);
    let backups = dir.path().join(".paasgen/backups");
    let bytes = b"snapshot bytes";
    let sha = paasgen::render::sha256_hex(bytes);
    std::fs::write(backups.join("demo-x.db"), bytes).unwrap();
    std::fs::write(
        backups.join("demo-x.json"),
        record("demo-x.db", &sha).to_string(),
    )
    .unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let other = elsewhere.path().join("demo-x.db");
    std::fs::write(&other, b"another file").unwrap();
    let o = paasgen(
        dir.path(),
        &[
            "recover",
            "--cloud",
            "lab",
            "--from",
            other.to_str().unwrap(),
        ],
    );
    let text = said(&o);
    assert!(!o.status.success(), "{text}");
    assert!(text.contains("restores only backups in"), "{text}");
    assert!(!text.contains("snapshot demo-x.db"), "{text}");
}
