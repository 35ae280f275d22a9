//! `plan`, `diff`, `validate` and `pki show` write nothing, also when they fail; a
//! `launch` that cannot authenticate writes nothing either. And a cloud that does not
//! answer is reported within the timeout, naming the endpoint.

mod common;

use common::{run, tree};
use paasgen::spec;
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// paasgen in `dir` with no cloud credentials from the environment of the test run.
fn paasgen(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_paasgen"));
    cmd.current_dir(dir).args(args).env("HOME", dir);
    for (k, _) in std::env::vars() {
        if k.starts_with("OS_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

fn project(rendered: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cluster.yaml"), spec::EXAMPLE).unwrap();
    std::fs::write(
        dir.path().join("clouds.yaml"),
        "clouds:\n  lab:\n    auth:\n      auth_url: http://127.0.0.1:9/v3\n",
    )
    .unwrap();
    if rendered {
        let (ok, out) = run(&mut paasgen(dir.path(), &["render"]));
        assert!(ok, "{out}");
    }
    dir
}

#[test]
fn read_only_verbs_write_nothing_even_when_they_fail() {
    for rendered in [true, false] {
        let dir = project(rendered);
        if rendered {
            // A spec change render would act on: a node added, one moved.
            let text = spec::EXAMPLE
                .replacen("private_ip: 192.168.0.11", "private_ip: 192.168.0.14", 1)
                .replacen(
                    "  - { name: master-1,",
                    "  - { name: etcd-4,   role: etcd,    private_ip: 192.168.0.13 }\n  - { name: master-1,",
                    1,
                );
            std::fs::write(dir.path().join("cluster.yaml"), text).unwrap();
        }
        let before = tree(dir.path());
        for (args, should_pass) in [
            (&["validate"][..], true),
            (&["diff"][..], true),
            (&["pki", "show"][..], rendered),
            (&["plan"][..], false),
            (&["plan", "--os-cloud", "nosuch"][..], false),
            (&["launch", "--dry-run", "--os-cloud", "nosuch"][..], false),
            (&["launch", "--os-cloud", "nosuch"][..], false),
        ] {
            let (ok, out) = run(&mut paasgen(dir.path(), args));
            assert_eq!(ok, should_pass, "{args:?}: {out}");
            assert!(
                before == tree(dir.path()),
                "{args:?} (rendered first: {rendered}) changed the tree: {out}"
            );
        }
        let (_, out) = run(&mut paasgen(dir.path(), &["plan", "--os-cloud", "nosuch"]));
        assert!(
            out.contains("cloud `nosuch` is not in clouds.yaml"),
            "{out}"
        );
        let (_, out) = run(&mut paasgen(dir.path(), &["plan"]));
        assert!(out.contains("no cloud credentials"), "{out}");
    }
}

/// Accepts connections and never answers, for as long as the test runs.
fn silent_listener() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming() {
            held.push(s);
        }
    });
    port
}

fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn plan_against(dir: &Path, port: u16) -> (bool, String, Duration) {
    let url = format!("http://127.0.0.1:{port}/v3");
    let start = Instant::now();
    let (ok, out) = run(paasgen(dir, &["plan", "--timeout", "2"])
        .env("OS_AUTH_URL", &url)
        .env("OS_USERNAME", "u")
        .env("OS_PASSWORD", "p")
        .env("OS_PROJECT_NAME", "x"));
    (ok, out, start.elapsed())
}

#[test]
fn a_keystone_that_never_answers_fails_within_the_timeout() {
    let dir = project(true);
    let before = tree(dir.path());
    let port = silent_listener();
    let (ok, out, took) = plan_against(dir.path(), port);
    assert!(!ok, "{out}");
    assert!(took < Duration::from_secs(15), "took {took:?}: {out}");
    assert!(
        out.contains(&format!("Keystone at http://127.0.0.1:{port}/v3"))
            && out.contains("no answer within 2s"),
        "{out}"
    );
    assert!(before == tree(dir.path()), "plan changed the state");
}

#[test]
fn a_closed_port_is_reported_as_connection_refused() {
    let dir = project(true);
    let port = closed_port();
    let (ok, out, took) = plan_against(dir.path(), port);
    assert!(!ok, "{out}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(
        out.contains(&format!(
            "Keystone at http://127.0.0.1:{port}/v3: connection refused"
        )),
        "{out}"
    );
}
