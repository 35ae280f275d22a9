//! Shared by the integration tests: the bundled example rendered into a temp dir, and
//! access to the real programs the tests run.
#![allow(dead_code)]

pub mod mariadb;

use paasgen::lock::StateLock;
use paasgen::pki::Pki;
use paasgen::render::{self, DecodedFile, NodeDocument, RenderOptions};
use paasgen::spec::{self, Spec};
use std::path::Path;
use std::process::Command;

pub fn example_spec() -> Spec {
    spec::parse("cluster.yaml", spec::EXAMPLE)
        .expect("the example is valid")
        .0
}

/// Renders `spec` with a PKI kept in `state_dir` (created there on first use).
pub fn render_in(state_dir: &Path, spec: &Spec) -> (Pki, Vec<NodeDocument>) {
    let lock = StateLock::acquire(state_dir, "test", true).expect("lock");
    let pki = Pki::ensure(state_dir, spec).expect("PKI");
    pki.save(&lock).expect("saving the PKI");
    let docs = render::render(spec, &pki, &RenderOptions::default()).expect("render");
    (pki, docs)
}

pub fn files_of(doc: &NodeDocument) -> Vec<DecodedFile> {
    render::decode_files(&doc.user_data).expect("user-data decodes")
}

pub fn file<'a>(files: &'a [DecodedFile], path: &str) -> &'a DecodedFile {
    files
        .iter()
        .find(|f| f.path == path)
        .unwrap_or_else(|| panic!("{path} is not in the user-data"))
}

/// Whether `program` can be run. Missing in CI is a failure, not a skip: CI installs it.
pub fn have(program: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{program} is missing in CI: .ci/run must install it"
        );
        eprintln!("SKIPPED: {program} is not installed (run .ci/run's install step)");
    }
    found
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Runs a command, returning (success, stdout + stderr).
pub fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Launches `docs` of cluster "demo" on the in-memory cloud, quietly.
pub fn launch_in_memory(
    cloud: &paasgen::cloud::memory::MemoryCloud,
    state: &paasgen::cloud::state::StateFile,
    docs: &[NodeDocument],
    desired: &[paasgen::cloud::Resource],
    opts: &paasgen::cloud::apply::Options,
) -> anyhow::Result<paasgen::cloud::apply::Outcome> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let report = |_: paasgen::cloud::apply::Event| {};
    let launch = paasgen::cloud::apply::Launch {
        cloud,
        cluster: "demo",
        desired,
        opts,
        state,
        docs,
        report: &report,
    };
    rt.block_on(launch.run())
}

/// Every path under `dir` with its content and mode, to show a command changed nothing.
/// `lock` (the writers' lock file, rewritten by whoever takes it) is left out.
pub fn tree(dir: &Path) -> std::collections::BTreeMap<String, (u32, Vec<u8>)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let mode = meta.permissions().mode();
            if meta.is_dir() {
                stack.push(p);
                out.insert(rel, (mode, Vec::new()));
            } else if rel != ".paasgen/lock" {
                out.insert(rel, (mode, std::fs::read(&p).unwrap()));
            }
        }
    }
    out
}
