//! `paasgen upgrade --to` refuses a Kubernetes version the cluster may not move to
//! before it asks the cloud anything, and leaves the spec file as it was: a minor back,
//! and two minors at once (kubeadm upgrades one minor at a time).

use std::process::Command;

fn upgrade(from: &str, to: &str) -> (bool, String, bool) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cluster.yaml");
    let spec =
        paasgen::spec::EXAMPLE.replacen("  version: 1.37.2 ", &format!("  version: {from} "), 1);
    assert!(spec.contains(&format!("  version: {from} ")));
    std::fs::write(&file, &spec).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_paasgen"))
        .args(["upgrade", "--cloud", "lab", "--to", to, "-f"])
        .arg(&file)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let unchanged =
        std::fs::read_to_string(&file).unwrap() == spec && !dir.path().join(".paasgen").exists();
    (out.status.success(), said, unchanged)
}

#[test]
fn a_minor_back_is_refused_before_anything() {
    let (ok, said, unchanged) = upgrade("1.35.1", "1.34.4");
    assert!(
        !ok && said.contains("1.35.1 -> 1.34.4 is a downgrade"),
        "{said}"
    );
    assert!(unchanged, "{said}");
}

#[test]
fn two_minors_at_once_are_refused_before_anything() {
    let (ok, said, unchanged) = upgrade("1.35.1", "1.37.2");
    assert!(
        !ok && said.contains("skips a minor version") && said.contains("upgrade to 1.36.x first"),
        "{said}"
    );
    assert!(unchanged, "{said}");
}
