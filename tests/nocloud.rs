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

/// `key=value` lines of each `.network` file cloud-init wrote under `dir`, by interface.
fn networkd_files(dir: &Path) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut files = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(dir.join("etc/systemd/network")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let lines: Vec<String> = text
            .lines()
            .filter(|l| l.contains('='))
            .map(str::to_string)
            .collect();
        let name = lines
            .iter()
            .find_map(|l| l.strip_prefix("Name="))
            .expect("a [Match] Name=")
            .to_string();
        files.insert(name, lines);
    }
    files
}

/// cloud-init itself (Debian's, the one the image carries) turns each seed into what the
/// image renders it to, systemd-networkd files: the addresses, resolvers and route are
/// the manifest's.
#[test]
fn cloud_init_renders_the_seed_to_the_manifests_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = render(dir.path(), paasgen::spec::EXAMPLE);
    let net = &manifest.network;
    let prefix = |cidr: &str| cidr.split_once('/').unwrap().1.to_string();
    for name in ["gw-1", "etcd-1"] {
        let node = manifest.nodes.iter().find(|n| n.name == name).unwrap();
        let seed = dir.path().join(format!("{name}.network-config"));
        std::fs::write(&seed, nocloud::network_config(net, node).unwrap()).unwrap();
        let out = dir.path().join(format!("{name}.networkd"));
        let result = Command::new("cloud-init")
            .args([
                "devel",
                "net-convert",
                "-k",
                "yaml",
                "-D",
                "debian",
                "-O",
                "networkd",
            ])
            .arg("-p")
            .arg(&seed)
            .arg("-d")
            .arg(&out)
            .output()
            .expect("cloud-init (scripts/setup installs it)");
        assert!(
            result.status.success(),
            "{name}: cloud-init refused its network-config: {}",
            String::from_utf8_lossy(&result.stderr)
        );
        let files = networkd_files(&out);
        let private = &files[&net.private_interface];
        let address = format!("Address={}/{}", node.private_ip, prefix(&net.private_cidr));
        assert!(private.contains(&address), "{name}: {private:?}");
        for dns in &net.dns_servers {
            assert!(
                private.contains(&format!("DNS={dns}")),
                "{name}: {private:?}"
            );
        }
        assert!(
            !private.iter().any(|l| l.starts_with("Gateway=")),
            "{name}: {private:?}"
        );
        let public_interface = net.public_interface.as_ref().unwrap();
        if node.role == paasgen::spec::Role::Gateway {
            let public = &files[public_interface];
            let cidr = net.public_cidr.as_deref().unwrap();
            let address = format!(
                "Address={}/{}",
                node.public_ip.as_ref().unwrap(),
                prefix(cidr)
            );
            assert!(public.contains(&address), "{name}: {public:?}");
            let gateway = format!("Gateway={}", net.public_gateway.as_ref().unwrap());
            assert!(public.contains(&gateway), "{name}: {public:?}");
        } else {
            assert_eq!(files.len(), 1, "{name}: only its private NIC: {files:?}");
        }
    }
}
