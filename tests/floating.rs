//! `network.public: floating` (examples/floating.yaml): what the nodes receive when a
//! Neutron router NATs the private network and a floating IP on the private VIP is the
//! users' entry point. Snapshots of a gateway, a master and a worker, the files that
//! differ from the fixed design, and the real programs on the gateway's configs.

mod common;

use common::{file, files_of, have, is_root, run};
use paasgen::lock::StateLock;
use paasgen::pki::Pki;
use paasgen::render::{self, NodeDocument, RenderOptions};
use paasgen::spec::{self, Spec};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

/// What `launch` would have allocated (the lab's pool is 203.0.113.100-250).
const FLOATING_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 150);

fn floating_spec() -> Spec {
    spec::parse("floating.yaml", spec::FLOATING_EXAMPLE)
        .expect("the floating example is valid")
        .0
}

fn opts() -> RenderOptions {
    RenderOptions {
        floating_ip: Some(FLOATING_IP),
        ..RenderOptions::default()
    }
}

fn render_floating(state_dir: &Path) -> (Pki, Vec<NodeDocument>) {
    let spec = floating_spec();
    let lock = StateLock::acquire(state_dir, "test", true).expect("lock");
    let pki = Pki::ensure(state_dir, &spec).expect("PKI");
    pki.save(&lock).expect("saving the PKI");
    let docs = render::render(&spec, &pki, &opts()).expect("render");
    (pki, docs)
}

fn node_files(docs: &[NodeDocument], name: &str) -> Vec<render::DecodedFile> {
    files_of(docs.iter().find(|d| d.name == name).unwrap())
}

fn text(files: &[render::DecodedFile], path: &str) -> String {
    String::from_utf8(file(files, path).bytes.clone()).unwrap()
}

#[test]
fn snapshots_of_a_gateway_a_master_and_a_worker() {
    let dir = tempfile::tempdir().unwrap();
    let (_, docs) = render_floating(dir.path());
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(
        r"-----BEGIN ([A-Z ]+)-----\n(?:\s*[A-Za-z0-9+/=]+\n)+\s*-----END [A-Z ]+-----",
        "<$1 PEM>",
    );
    settings.add_filter(
        r#"token: "[a-z0-9]{6}\.[a-z0-9]{16}""#,
        r#"token: "<bootstrap-token>""#,
    );
    settings.add_filter(r"sha256:[0-9a-f]{64}", "sha256:<ca-cert-hash>");
    settings.add_filter(
        r#"secret: "[A-Za-z0-9+/]{43}=""#,
        r#"secret: "<encryption-key>""#,
    );
    settings.bind(|| {
        for doc in docs
            .iter()
            .filter(|d| ["gw-1", "master-1", "worker-1"].contains(&d.name.as_str()))
        {
            insta::assert_snapshot!(format!("floating-{}", doc.name), doc.user_data);
        }
    });
}

#[test]
fn gateways_hold_only_the_private_vip_and_route_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_, docs) = render_floating(dir.path());
    let gw = docs.iter().find(|d| d.name == "gw-1").unwrap();
    assert_eq!(gw.public_ip, None);
    let files = node_files(&docs, "gw-1");
    let keepalived = text(&files, "/etc/keepalived/keepalived.conf");
    assert!(
        keepalived.contains("192.168.0.5/24 dev ens3"),
        "{keepalived}"
    );
    assert!(!keepalived.contains("ens4"), "{keepalived}");
    assert!(!keepalived.contains("203.0.113."), "{keepalived}");
    let nft = text(&files, "/etc/nftables.conf");
    assert!(!nft.contains("masquerade"), "{nft}");
    assert!(
        !nft.contains("accept"),
        "the gateway forwards nothing: {nft}"
    );
    let sysctl = text(&files, "/etc/sysctl.d/60-paasgen-gateway.conf");
    assert!(sysctl.contains("net.ipv4.ip_forward = 0"), "{sysctl}");
    let haproxy = text(&files, "/etc/haproxy/haproxy.cfg");
    // The router forwards the floating IP's traffic to the private VIP.
    assert!(haproxy.contains("bind 192.168.0.5:2379"), "{haproxy}");
    for port in [":6443", ":80", ":443"] {
        assert!(haproxy.contains(&format!("bind {port}\n")), "{haproxy}");
    }
}

#[test]
fn nodes_route_through_the_router_and_the_api_answers_on_the_floating_ip() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, docs) = render_floating(dir.path());
    for node in ["etcd-1", "master-2", "worker-1"] {
        let route = text(
            &node_files(&docs, node),
            "/etc/systemd/system/paasgen-default-route.service",
        );
        assert!(
            route.contains("ExecStart=/sbin/ip route replace default via 192.168.0.1 dev ens3"),
            "{node}: {route}"
        );
    }
    let init = text(
        &node_files(&docs, "master-1"),
        "/etc/kubernetes/kubeadm-init.yaml",
    );
    let cluster_config = init
        .split("\n---")
        .find(|d| d.contains("kind: ClusterConfiguration"))
        .unwrap();
    for san in ["192.168.0.5", "203.0.113.150", "api.demo.internal"] {
        assert!(
            cluster_config.contains(&format!("- \"{san}\""))
                || cluster_config.contains(&format!("- {san}")),
            "{san}: {cluster_config}"
        );
    }
    assert!(
        cluster_config.contains("controlPlaneEndpoint: 192.168.0.5:6443"),
        "nodes reach the API on the private VIP: {cluster_config}"
    );
    let kubeconfig = render::admin_kubeconfig(&floating_spec(), &pki, &opts()).unwrap();
    assert!(
        kubeconfig.contains("server: https://203.0.113.150:6443"),
        "{kubeconfig}"
    );
}

#[test]
fn rendering_without_a_recorded_floating_ip_fails_naming_launch() {
    let dir = tempfile::tempdir().unwrap();
    let spec = floating_spec();
    let pki = Pki::ensure(dir.path(), &spec).unwrap();
    let err = render::render(&spec, &pki, &RenderOptions::default()).unwrap_err();
    assert!(format!("{err:#}").contains("paasgen launch"), "{err:#}");
    // `render` says so and writes no document.
    std::fs::write(dir.path().join("floating.yaml"), spec::FLOATING_EXAMPLE).unwrap();
    let (ok, out) = run(Command::new(env!("CARGO_BIN_EXE_paasgen"))
        .current_dir(dir.path())
        .args(["render", "-f", "floating.yaml"]));
    assert!(!ok && out.contains("no floating IP is recorded"), "{out}");
    assert!(!dir.path().join("out").exists());
    // validate checks the sizes with a stand-in address.
    let (ok, out) = run(Command::new(env!("CARGO_BIN_EXE_paasgen"))
        .current_dir(dir.path())
        .args(["validate", "-f", "floating.yaml"]));
    assert!(ok && out.contains("ok"), "{out}");
}

#[test]
fn a_recorded_floating_ip_is_what_render_uses() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("floating.yaml"), spec::FLOATING_EXAMPLE).unwrap();
    let state = paasgen::cloud::state::StateFile::new(&dir.path().join(".paasgen"));
    state
        .save(&paasgen::cloud::state::LaunchState {
            cluster: "demo".into(),
            floating_ip: Some(paasgen::cloud::state::FloatingIpRecord {
                id: "fip-1".into(),
                address: FLOATING_IP,
            }),
            ..Default::default()
        })
        .unwrap();
    let (ok, out) = run(Command::new(env!("CARGO_BIN_EXE_paasgen"))
        .current_dir(dir.path())
        .args(["render", "-f", "floating.yaml"]));
    assert!(ok, "{out}");
    let kubeconfig = std::fs::read_to_string(dir.path().join(".paasgen/admin.kubeconfig")).unwrap();
    assert!(
        kubeconfig.contains("https://203.0.113.150:6443"),
        "{kubeconfig}"
    );
    let manifest = std::fs::read_to_string(dir.path().join("out/manifest.json")).unwrap();
    assert!(manifest.contains("\"public\": \"floating\""), "{manifest}");
    assert!(!manifest.contains("public_vip"), "{manifest}");
}

/// Runs `script` (sh) in a network namespace of its own, where it may add interfaces.
fn in_own_netns(script: &str) -> (bool, String) {
    run(Command::new("unshare").args(["--net", "sh", "-c", script]))
}

#[test]
fn haproxy_keepalived_and_nft_accept_the_gateway_configs() {
    if !have("haproxy") || !have("keepalived") || !have("nft") || !is_root() {
        assert!(std::env::var_os("CI").is_none(), "CI runs as root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_, docs) = render_floating(&dir.path().join("state"));
    let files = node_files(&docs, "gw-1");
    let write = |path: &str| {
        let out = dir.path().join(path.rsplit('/').next().unwrap());
        std::fs::write(&out, &file(&files, path).bytes).unwrap();
        out.display().to_string()
    };
    let haproxy = write("/etc/haproxy/haproxy.cfg");
    let (ok, out) = run(Command::new("haproxy").args(["-c", "-f", &haproxy]));
    assert!(ok && out.contains("Configuration file is valid"), "{out}");
    // Only ens3 exists on a floating-mode gateway.
    let keepalived = write("/etc/keepalived/keepalived.conf");
    let (ok, out) = in_own_netns(&format!(
        "ip link add ens3 type veth peer name p3 && keepalived --config-test -l -f {keepalived}"
    ));
    assert!(ok && !out.contains("WARNING"), "{out}");
    let nft = write("/etc/nftables.conf");
    let (ok, out) = in_own_netns(&format!(
        "ip link add ens3 type veth peer name p3 && nft -c -f {nft}"
    ));
    assert!(ok, "{out}");
}
