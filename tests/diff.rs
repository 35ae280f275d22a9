//! `paasgen diff`: after a node changes in the spec, only that node's user-data differs.

mod common;

use common::render_in;
use paasgen::cloud::apply::Options;
use paasgen::cloud::desired;
use paasgen::cloud::memory::MemoryCloud;
use paasgen::cloud::state::StateFile;
use paasgen::commands::cloud::diff_documents;
use paasgen::spec;

#[test]
fn changing_one_node_shows_only_that_nodes_diff() {
    let dir = tempfile::tempdir().unwrap();
    let before = spec::parse("c.yaml", spec::EXAMPLE).unwrap().0;
    let (_, docs) = render_in(dir.path(), &before);
    let wanted = desired::resources(&before, &docs).unwrap();
    let state = StateFile::new(dir.path());
    let cloud = MemoryCloud::new();
    common::launch_in_memory(&cloud, &state, &docs, &wanted, &Options::default()).unwrap();
    assert_eq!(
        diff_documents(&state, &docs).unwrap(),
        "",
        "nothing changed yet"
    );

    let text = spec::EXAMPLE.replacen(
        r#"labels: { ingress: "true" }"#,
        r#"labels: { ingress: "true", zone: b }"#,
        1,
    );
    let after = spec::parse("c.yaml", &text).unwrap().0;
    let (_, new_docs) = render_in(dir.path(), &after);
    let diff = diff_documents(&state, &new_docs).unwrap();
    let headers: Vec<&str> = diff.lines().filter(|l| l.starts_with("--- ")).collect();
    assert_eq!(headers, vec!["--- launched/worker-2.yaml"], "{diff}");
    assert!(
        diff.contains("-            value: \"ingress=true\""),
        "{diff}"
    );
    assert!(
        diff.contains("+            value: \"ingress=true,zone=b\""),
        "{diff}"
    );
}

#[test]
fn private_keys_never_appear_in_a_diff() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec::parse("c.yaml", spec::EXAMPLE).unwrap().0;
    let (pki, docs) = render_in(dir.path(), &spec);
    let state = StateFile::new(dir.path());
    // Pretend master-1 was launched with other key material.
    let key_line = pki.kubernetes_ca.key_pem.lines().nth(1).unwrap();
    assert!(docs[5].user_data.contains(key_line));
    let launched = docs[5]
        .user_data
        .replace(key_line, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    state
        .save_launched_user_data("master-1", &launched)
        .unwrap();
    let diff = diff_documents(&state, &docs[5..6]).unwrap();
    assert!(diff.contains("<private key, sha256 "), "{diff}");
    assert!(!diff.contains("PRIVATE KEY-----"), "{diff}");
}

#[test]
fn a_relaunch_does_not_hide_what_running_servers_booted_with() {
    let dir = tempfile::tempdir().unwrap();
    let run_launch = |spec: &spec::Spec, cloud: &MemoryCloud, state: &StateFile| {
        let (_, docs) = render_in(dir.path(), spec);
        let wanted = desired::resources(spec, &docs).unwrap();
        common::launch_in_memory(cloud, state, &docs, &wanted, &Options::default()).unwrap();
        docs
    };
    let state = StateFile::new(dir.path());
    let cloud = MemoryCloud::new();
    run_launch(
        &spec::parse("c.yaml", spec::EXAMPLE).unwrap().0,
        &cloud,
        &state,
    );
    let text = spec::EXAMPLE.replacen(
        r#"labels: { ingress: "true" }"#,
        r#"labels: { ingress: "false" }"#,
        1,
    );
    let changed = spec::parse("c.yaml", &text).unwrap().0;
    // Servers are immutable: launching again creates nothing, worker-2 still runs the old document.
    let docs = run_launch(&changed, &cloud, &state);
    let diff = diff_documents(&state, &docs).unwrap();
    assert!(diff.contains("--- launched/worker-2.yaml"), "{diff}");
    assert!(
        diff.contains("+            value: \"ingress=false\""),
        "{diff}"
    );
}

/// Before any launch: `render --check` and `diff` compare a render now with out/, write
/// nothing, and `render --check` exits 1 on a difference (for CI).
#[test]
fn the_bootstrap_token_never_appears_in_a_diff() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec::parse("c.yaml", spec::EXAMPLE).unwrap().0;
    let (_, docs) = render_in(dir.path(), &spec);
    let token = std::fs::read_to_string(dir.path().join("secrets/bootstrap-token")).unwrap();
    let token = token.trim();
    let worker = docs.iter().find(|d| d.name == "worker-1").unwrap();
    assert!(worker.user_data.contains(token));
    // Launched with another token (each join gets its own): that alone is no change.
    let state = StateFile::new(dir.path());
    let launched = worker.user_data.replace(token, "zzzzzz.zzzzzzzzzzzzzzzz");
    state
        .save_launched_user_data("worker-1", &launched)
        .unwrap();
    let diff = diff_documents(&state, std::slice::from_ref(worker)).unwrap();
    assert_eq!(diff, "");
    // With a change next to it, the token lines show, as hashes.
    assert!(launched.contains("apiServerEndpoint: "));
    let launched = launched.replacen("apiServerEndpoint: ", "apiServerEndpoint:  ", 1);
    state
        .save_launched_user_data("worker-1", &launched)
        .unwrap();
    let diff = diff_documents(&state, std::slice::from_ref(worker)).unwrap();
    assert!(diff.contains("<bootstrap token, sha256 "), "{diff}");
    assert!(!diff.contains(token), "{diff}");
    assert!(!diff.contains("zzzzzz.zzzzzzzzzzzzzzzz"), "{diff}");
}

#[test]
fn before_launch_a_spec_change_is_reviewed_against_the_last_render() {
    let bin = env!("CARGO_BIN_EXE_paasgen");
    let dir = tempfile::tempdir().unwrap();
    let spec_path = dir.path().join("cluster.yaml");
    std::fs::write(&spec_path, spec::EXAMPLE).unwrap();
    let run = |args: &[&str]| {
        let o = std::process::Command::new(bin)
            .current_dir(dir.path())
            .args(args)
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        )
    };
    assert_eq!(run(&["render", "-f", "cluster.yaml"]).0, Some(0));
    let (code, out) = run(&["render", "-f", "cluster.yaml", "--check"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("up to date"), "{out}");

    let changed = spec::EXAMPLE.replacen(
        r#"labels: { ingress: "true" }"#,
        r#"labels: { ingress: "true", zone: b }"#,
        1,
    );
    std::fs::write(&spec_path, changed).unwrap();
    let before = std::fs::read(dir.path().join("out/worker-2.yaml")).unwrap();
    let (code, out) = run(&["render", "-f", "cluster.yaml", "--check"]);
    assert_eq!(code, Some(1), "{out}");
    let headers: Vec<&str> = out.lines().filter(|l| l.starts_with("--- ")).collect();
    assert_eq!(headers, vec!["--- out/worker-2.yaml"], "{out}");
    assert!(
        out.contains("+            value: \"ingress=true,zone=b\""),
        "{out}"
    );
    let (code, out) = run(&["diff", "-f", "cluster.yaml"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("nothing launched yet"), "{out}");
    assert!(out.contains("--- out/worker-2.yaml"), "{out}");
    // Neither wrote anything.
    assert_eq!(
        std::fs::read(dir.path().join("out/worker-2.yaml")).unwrap(),
        before
    );
}

/// A member `rebuild` replaced joined a running etcd: every later render of it says
/// `existing` (the state remembers), so `diff` and `plan` see what it was launched with.
#[test]
fn a_rebuilt_etcd_member_keeps_rendering_as_joining() {
    use paasgen::render::{self, decode_files};
    let dir = tempfile::tempdir().unwrap();
    let spec = spec::parse("c.yaml", spec::EXAMPLE).unwrap().0;
    let (pki, _) = render_in(dir.path(), &spec);
    let state_of = |name: &str| {
        let opts = paasgen::day2::setup::render_options(dir.path()).unwrap();
        let docs = render::render(&spec, &pki, &opts).unwrap();
        let doc = docs.iter().find(|d| d.name == name).unwrap();
        let files = decode_files(&doc.user_data).unwrap();
        let conf = files
            .iter()
            .find(|f| f.path == "/etc/etcd/etcd.conf.yml")
            .unwrap();
        let conf = String::from_utf8(conf.bytes.clone()).unwrap();
        conf.lines()
            .find_map(|l| l.strip_prefix("initial-cluster-state: "))
            .unwrap()
            .to_string()
    };
    assert_eq!(state_of("etcd-2"), "new");
    let state = StateFile::new(dir.path());
    let mut launched = state.load().unwrap().unwrap_or_default();
    launched.etcd_joined.insert("etcd-2".into());
    state.save(&launched).unwrap();
    assert_eq!(state_of("etcd-2"), "existing");
    assert_eq!(state_of("etcd-1"), "new");
}

/// After `recover`: the restoring member founds a cluster of one and carries the
/// receiver of the snapshot (which Python compiles); each member added after it joins
/// the members before it; the new token is everyone's.
#[test]
fn a_recovered_etcd_renders_restore_then_joins() {
    use paasgen::render::{self, decode_files, EtcdRecovery};
    let dir = tempfile::tempdir().unwrap();
    let spec = spec::parse("c.yaml", spec::EXAMPLE).unwrap().0;
    let (pki, _) = render_in(dir.path(), &spec);
    let state = StateFile::new(dir.path());
    let mut launched = state.load().unwrap().unwrap_or_default();
    launched.etcd_recovery = Some(EtcdRecovery {
        token: "demo-etcd-0123456789ab".into(),
        restored_on: Some("etcd-1".into()),
        snapshot_sha256: "ab".repeat(32),
        joined: [(
            "etcd-2".to_string(),
            vec!["etcd-1".to_string(), "etcd-2".to_string()],
        )]
        .into_iter()
        .collect(),
    });
    state.save(&launched).unwrap();
    let opts = paasgen::day2::setup::render_options(dir.path()).unwrap();
    let docs = render::render(&spec, &pki, &opts).unwrap();
    let files_of = |name: &str| {
        let doc = docs.iter().find(|d| d.name == name).unwrap();
        decode_files(&doc.user_data).unwrap()
    };
    let text_of = |name: &str, path: &str| {
        files_of(name)
            .iter()
            .find(|f| f.path == path)
            .map(|f| String::from_utf8(f.bytes.clone()).unwrap())
    };
    let conf = |name| text_of(name, "/etc/etcd/etcd.conf.yml").unwrap();
    let c1 = conf("etcd-1");
    assert!(
        c1.contains("initial-cluster: \"etcd-1=https://192.168.0.10:2380\"\n"),
        "{c1}"
    );
    assert!(c1.contains("initial-cluster-state: new"), "{c1}");
    let c2 = conf("etcd-2");
    assert!(
        c2.contains("initial-cluster: \"etcd-1=https://192.168.0.10:2380,etcd-2=https://192.168.0.11:2380\"\n")
            && c2.contains("initial-cluster-state: existing"),
        "{c2}"
    );
    for c in [&c1, &c2, &conf("etcd-3")] {
        assert!(
            c.contains("initial-cluster-token: \"demo-etcd-0123456789ab\""),
            "{c}"
        );
    }
    let unit = text_of("etcd-1", "/etc/systemd/system/etcd.service").unwrap();
    assert!(
        unit.contains("Requires=paasgen-etcd-restore.service"),
        "{unit}"
    );
    let script = text_of("etcd-1", "/usr/local/sbin/paasgen-etcd-restore").unwrap();
    assert!(
        script.contains(&format!("SHA256 = \"{}\"", "ab".repeat(32))),
        "{script}"
    );
    assert!(
        script.contains("LISTEN = (\"192.168.0.10\", 2379)"),
        "{script}"
    );
    let path = dir.path().join("restore.py");
    std::fs::write(&path, &script).unwrap();
    let compiled = std::process::Command::new("python3")
        .args(["-m", "py_compile"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        compiled.status.success(),
        "{}",
        String::from_utf8_lossy(&compiled.stderr)
    );
    // Only the restoring member carries the receiver.
    for other in ["etcd-2", "etcd-3"] {
        assert!(text_of(other, "/usr/local/sbin/paasgen-etcd-restore").is_none());
        let unit = text_of(other, "/etc/systemd/system/etcd.service").unwrap();
        assert!(!unit.contains("restore"), "{unit}");
    }
}
