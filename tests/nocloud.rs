//! The NoCloud seed the boot lab writes into each node's disk (`meta-data`,
//! `network-config`): rendered by `render::nocloud` from the render's manifest, pinned
//! here as snapshots. The lab tests boot nodes on it (cloud-init reads it there).

use paasgen::render::{nocloud, read_manifest, Manifest};
use std::path::Path;
use std::process::Command;

fn render(dir: &Path, example: &str) -> Manifest {
    let spec = dir.join("cluster.yaml");
    std::fs::write(&spec, example).unwrap();
    let out = dir.join("out");
    let status = Command::new(env!("CARGO_BIN_EXE_paasgen"))
        .args(["render", "-f"])
        .arg(&spec)
        .arg("-o")
        .arg(&out)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "render failed");
    read_manifest(&out).unwrap()
}

#[test]
fn network_config_of_a_gateway_an_etcd_and_a_worker() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = render(dir.path(), paasgen::spec::EXAMPLE);
    for name in ["gw-1", "etcd-1", "worker-1"] {
        let node = manifest.nodes.iter().find(|n| n.name == name).unwrap();
        let text = nocloud::network_config(&manifest.network, node).unwrap();
        insta::assert_snapshot!(format!("network-config-{name}"), text);
    }
    let meta = nocloud::meta_data("etcd-2", "iid-paasgen-etcd-2-17").unwrap();
    insta::assert_snapshot!("meta-data", meta);
}

#[test]
fn a_gateway_without_a_fixed_public_address_has_no_seed() {
    let dir = tempfile::tempdir().unwrap();
    let mut manifest = render(dir.path(), paasgen::spec::EXAMPLE);
    // what a manifest of `network.public: floating` holds
    manifest.network.public = "floating".into();
    manifest.network.public_cidr = None;
    manifest.network.public_gateway = None;
    manifest.network.public_interface = None;
    manifest.network.public_vip = None;
    let gw = manifest.nodes.iter().find(|n| n.name == "gw-1").unwrap();
    let err = nocloud::network_config(&manifest.network, gw).unwrap_err();
    assert!(err.to_string().contains("network.public: fixed"), "{err:#}");
}
