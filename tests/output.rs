//! The output dir: render deletes only documents it wrote there itself, never follows an
//! old manifest outside out/, never replaces another cluster's documents without
//! --force, and never changes the mode of a dir it did not create.

mod common;

use common::run;
use paasgen::spec;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

fn render(dir: &Path, args: &[&str]) -> (bool, String) {
    run(Command::new(env!("CARGO_BIN_EXE_paasgen"))
        .current_dir(dir)
        .arg("render")
        .args(args))
}

fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cluster.yaml"), spec::EXAMPLE).unwrap();
    dir
}

fn set_manifest_entries(out: &Path, names: &[&str]) {
    let path = out.join("manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let template = m["nodes"][0].clone();
    for name in names {
        let mut n = template.clone();
        n["name"] = (*name).into();
        n["user_data"] = (*name).into();
        m["nodes"].as_array_mut().unwrap().push(n);
    }
    std::fs::write(&path, serde_json::to_string(&m).unwrap()).unwrap();
}

#[test]
fn an_old_manifest_cannot_delete_outside_out() {
    let dir = project();
    let (ok, out) = render(dir.path(), &[]);
    assert!(ok, "{out}");
    let victim = dir.path().join("victim.yaml");
    std::fs::write(&victim, "keep me").unwrap();
    let abs = dir.path().join("absolute.yaml");
    std::fs::write(&abs, "keep me").unwrap();
    std::fs::write(dir.path().join("out/.hidden.yaml"), "keep me").unwrap();
    set_manifest_entries(
        &dir.path().join("out"),
        &[
            "../victim.yaml",
            abs.to_str().unwrap(),
            ".hidden.yaml",
            "cluster.yaml/../../victim.yaml",
        ],
    );
    let (ok, out) = render(dir.path(), &[]);
    assert!(ok, "{out}");
    assert!(victim.exists() && abs.exists(), "{out}");
    assert!(dir.path().join("out/.hidden.yaml").exists());
    assert!(
        out.contains("names `../victim.yaml`, which is not a document in it: left alone"),
        "{out}"
    );
}

#[test]
fn a_node_that_left_the_spec_loses_its_document() {
    let dir = project();
    assert!(render(dir.path(), &[]).0);
    let fewer: String = spec::EXAMPLE
        .lines()
        .filter(|l| !l.contains("name: worker-1,"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(dir.path().join("cluster.yaml"), fewer).unwrap();
    let (ok, out) = render(dir.path(), &[]);
    assert!(ok, "{out}");
    assert!(!dir.path().join("out/worker-1.yaml").exists());
    assert!(dir.path().join("out/worker-2.yaml").exists());
}

#[test]
fn another_clusters_documents_are_replaced_only_with_force() {
    let dir = project();
    assert!(render(dir.path(), &[]).0);
    let before = common::tree(&dir.path().join("out"));
    // Another cluster (its own state dir) rendered into the same out/.
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let text = spec::EXAMPLE
        .replacen("name: demo", "name: other", 1)
        .replace("name: worker-", "name: w-")
        .replace("worker-2: /disks", "w-2: /disks");
    std::fs::write(other.join("cluster.yaml"), text).unwrap();
    let (ok, out) = render(&other, &["-o", "../out"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("holds the documents of cluster `demo`, not `other`")
            && out.contains("--force"),
        "{out}"
    );
    assert!(
        before == common::tree(&dir.path().join("out")),
        "out/ changed"
    );
    assert!(
        !other.join(".paasgen/pki").exists(),
        "the refused render wrote its PKI"
    );
    let (ok, out) = render(&other, &["-o", "../out", "--force"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("replacing the documents of cluster `demo`"),
        "{out}"
    );
    assert!(!dir.path().join("out/worker-1.yaml").exists());
    assert!(dir.path().join("out/w-1.yaml").exists());
}

#[test]
fn an_existing_output_dir_keeps_its_mode() {
    let dir = project();
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let (ok, out) = render(dir.path(), &["-o", "shared"]);
    assert!(ok, "{out}");
    let mode = std::fs::metadata(&shared).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o1777, "render changed the mode of an existing dir");
    // A dir render creates is private.
    let (ok, out) = render(dir.path(), &["-o", "new/out", "--force"]);
    assert!(ok, "{out}");
    for d in ["new", "new/out"] {
        let mode = std::fs::metadata(dir.path().join(d))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o700, "{d}");
    }
}
