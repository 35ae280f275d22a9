//! Large clusters: documents stay under OpenStack's user-data limit by compressing their
//! largest files, and a document that cannot fit is refused with its node and size.

mod common;

use common::{files_of, render_in, run};
use paasgen::render::{base64_len, NOVA_USER_DATA_LIMIT};
use paasgen::spec;
use std::process::Command;

#[test]
fn a_thousand_workers_fit_by_compressing_large_files() {
    let text = spec::example_with_workers(1000);
    let spec = spec::parse("big.yaml", &text).unwrap().0;
    let dir = tempfile::tempdir().unwrap();
    let (_, docs) = render_in(dir.path(), &spec);
    assert_eq!(docs.len(), 1008);
    for d in &docs {
        assert!(
            base64_len(d.user_data.len()) <= NOVA_USER_DATA_LIMIT,
            "{}: {}",
            d.name,
            d.user_data.len()
        );
    }
    let gw = &docs[0];
    assert!(
        gw.user_data.contains("encoding: gz+b64"),
        "large files of gw-1 are not compressed"
    );
    let files = files_of(gw);
    let haproxy = String::from_utf8(
        common::file(&files, "/etc/haproxy/haproxy.cfg")
            .bytes
            .clone(),
    )
    .unwrap();
    assert_eq!(haproxy.matches(":30080 check").count(), 1000);
    let hosts = String::from_utf8(common::file(&files, "/etc/hosts").bytes.clone()).unwrap();
    assert!(
        hosts.contains("192.168.4.250 worker-1000.demo.internal worker-1000"),
        "{hosts}"
    );
}

#[test]
fn an_oversized_document_is_refused_by_validate_and_render_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("cluster.yaml"),
        spec::example_with_workers(20_000),
    )
    .unwrap();
    for verb in ["validate", "render"] {
        let (ok, out) = run(Command::new(env!("CARGO_BIN_EXE_paasgen"))
            .current_dir(dir.path())
            .arg(verb));
        assert!(!ok, "{verb}: {out}");
        assert!(
            out.contains("the user-data of node gw-1 is")
                && out.contains("over OpenStack's limit of 65535"),
            "{verb}: {out}"
        );
    }
    assert!(!dir.path().join("out").exists());
    // Render held the state dir's lock while it tried: the lock file is all there is.
    let state: Vec<_> = std::fs::read_dir(dir.path().join(".paasgen"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(state.iter().all(|n| n == "lock"), "{state:?}");
}

#[test]
fn init_refuses_worker_counts_that_validate_would_refuse() {
    let dir = tempfile::tempdir().unwrap();
    let init = |workers: &str| {
        run(Command::new(env!("CARGO_BIN_EXE_paasgen"))
            .current_dir(dir.path())
            .args(["init", "--force", "--workers", workers]))
    };
    for (workers, expected) in [
        ("0", "at least one worker"),
        ("20000", "over OpenStack's limit"),
        ("64000", "--workers 64000"),
    ] {
        let (ok, out) = init(workers);
        assert!(!ok, "--workers {workers}: {out}");
        assert!(out.contains(expected), "--workers {workers}: {out}");
        assert!(
            !dir.path().join("cluster.yaml").exists(),
            "--workers {workers}"
        );
    }
    let (ok, out) = init("1000");
    assert!(ok, "{out}");
    let (ok, out) = run(Command::new(env!("CARGO_BIN_EXE_paasgen"))
        .current_dir(dir.path())
        .arg("validate"));
    assert!(ok && out.contains("ok"), "{out}");
}
