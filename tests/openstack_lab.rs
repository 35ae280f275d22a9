//! paasgen launch against a REAL OpenStack (Keystone, Neutron, Nova with the fake virt
//! driver, Placement, Glance) started by scripts/openstack-lab on 127.0.0.1, in fixed
//! mode, as the lab's admin: under OpenStack's default policies (the lab's) only an admin
//! or the network's owner may choose fixed IPs on the shared provider network; a member
//! is refused by `plan` (tests/openstack_floating.rs) and launches in floating mode.
//! Checked through python-openstackclient, not through paasgen's own code.

mod common;
#[path = "common/lab.rs"]
mod labkit;
#[path = "common/nodes.rs"]
mod nodes;
#[path = "common/openstack.rs"]
mod oskit;

use labkit::run_ok;
use nodes::{Fabric, Process};
use oskit::{clouds_yaml, Lab};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::process::Command;

const CLUSTER: &str = "labtest";

/// Compute services stay disabled only inside this guard.
struct Disabled<'a>(&'a Lab, &'a str);
impl Drop for Disabled<'_> {
    fn drop(&mut self) {
        self.0.admin_do(&[
            "compute",
            "service",
            "set",
            "--enable",
            self.1,
            "nova-compute",
        ]);
    }
}

#[test]
fn launch_on_a_real_openstack_is_complete_idempotent_and_destroyable() {
    let Some(clouds) = clouds_yaml() else { return };
    let lab = Lab::new(clouds, paasgen::spec::EXAMPLE, CLUSTER);
    let (ok, out) = lab.paasgen(&["destroy", "--yes", "--os-cloud", "lab-admin"]);
    assert!(ok, "clearing an earlier run: {out}");

    // 1. Anti-affinity is enforced: with two hypervisors, the third etcd and master fail.
    {
        let _guard = Disabled(&lab, "compute-3");
        lab.admin_do(&[
            "compute",
            "service",
            "set",
            "--disable",
            "compute-3",
            "nova-compute",
        ]);
        let (ok, out) = lab.paasgen(&["launch", "--cloud", "openstack", "--os-cloud", "lab-admin"]);
        assert!(!ok, "launch succeeded on two hosts: {out}");
        for node in ["etcd-", "master-"] {
            assert!(
                out.lines().any(|l| l.starts_with(&format!("error: {node}"))
                    && l.contains("is ERROR: No valid host was found")),
                "{node}: {out}"
            );
        }
    }
    // 2. Back to three hosts, --replace-failed recreates the failed servers.
    let nodes = lab.launch_json("lab-admin", &["--replace-failed"]);
    assert_eq!(nodes.as_object().unwrap().len(), 10);
    for (name, n) in nodes.as_object().unwrap() {
        assert_eq!(n["status"], "ACTIVE", "{name}: {n}");
    }

    // 3. What the cloud holds, read as admin through openstackclient.
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(lab.dir.path().join("out/manifest.json")).unwrap(),
    )
    .unwrap();
    let mut hosts = std::collections::BTreeMap::<String, Vec<String>>::new();
    for node in manifest["nodes"].as_array().unwrap() {
        let name = node["name"].as_str().unwrap();
        // The admin's project is another: servers are shown by id.
        let server = lab.admin(&["server", "show", nodes[name]["server_id"].as_str().unwrap()]);
        assert_eq!(server["status"], "ACTIVE", "{name}");
        let user_data = lab.user_data(nodes[name]["server_id"].as_str().unwrap());
        assert_eq!(
            paasgen::pki::hex(&Sha256::digest(&user_data)),
            node["sha256"].as_str().unwrap(),
            "{name}"
        );
        let role = node["role"].as_str().unwrap().to_string();
        hosts
            .entry(role)
            .or_default()
            .push(server["OS-EXT-SRV-ATTR:host"].as_str().unwrap().to_string());
        let port = lab.admin(&["port", "show", &format!("{CLUSTER}-{name}-private")]);
        let fixed = port["fixed_ips"].to_string();
        assert!(
            fixed.contains(node["private_ip"].as_str().unwrap()),
            "{name}: {fixed}"
        );
        assert_eq!(port["status"], "ACTIVE", "{name}");
    }
    for role in ["gateway", "etcd", "master"] {
        let mut h = hosts[role].clone();
        h.sort();
        h.dedup();
        assert_eq!(
            h.len(),
            hosts[role].len(),
            "{role} members share a hypervisor: {:?}",
            hosts[role]
        );
    }
    for gw in ["gw-1", "gw-2"] {
        let private = lab.admin(&["port", "show", &format!("{CLUSTER}-{gw}-private")]);
        assert!(
            private["allowed_address_pairs"]
                .to_string()
                .contains("192.168.0.5"),
            "{private}"
        );
        let public = lab.admin(&["port", "show", &format!("{CLUSTER}-{gw}-public")]);
        assert!(
            public["allowed_address_pairs"]
                .to_string()
                .contains("203.0.113.10"),
            "{public}"
        );
        assert!(
            public["fixed_ips"].to_string().contains("203.0.113.1"),
            "{public}"
        );
    }
    let vip = lab.admin(&["port", "show", &format!("{CLUSTER}-vip-public")]);
    assert!(
        vip["fixed_ips"].to_string().contains("203.0.113.10"),
        "{vip}"
    );
    assert_eq!(lab.names(&["security", "group", "list"]).len(), 4);
    let groups = lab.admin(&["server", "group", "list", "--all-projects", "--long"]);
    let ours: Vec<&Value> = groups
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["Name"].as_str().unwrap_or("").starts_with(CLUSTER))
        .collect();
    assert_eq!(ours.len(), 3);
    for g in ours {
        assert!(g.to_string().contains("anti-affinity"), "{g}");
    }
    let rules = lab.admin(&[
        "security",
        "group",
        "rule",
        "list",
        &format!("{CLUSTER}-etcd"),
    ]);
    assert!(rules.to_string().contains("2379:2380"), "{rules}");

    // 4. A second launch creates nothing.
    let (ok, out) = lab.paasgen(&["launch", "--cloud", "openstack", "--os-cloud", "lab-admin"]);
    assert!(ok, "{out}");
    assert!(out.contains("created 0 resource(s)"), "{out}");
    let (ok, out) = lab.paasgen(&["plan", "--os-cloud", "lab-admin"]);
    assert!(ok && out.contains("Plan: 0 to create"), "{out}");

    // 5. rebuild replaces one server on the same port: a new server, the same port
    //    and fixed address, through the same planner as launch. Nova's fake driver
    //    boots nothing, so the test stands in for the gateways' haproxy: TLS listeners
    //    answering /readyz on the public VIP and each gateway's public address, in a
    //    namespace the host reaches through a veth (and only those addresses). paasgen
    //    checks that gw-2 serves, stops gw-1 through Nova (os-stop, SHUTOFF) before it
    //    deletes it, and waits until the new gw-1 answers on its own address. With
    //    gw-2's listener gone, gw-1 is the last gateway that serves: refused.
    let before = lab.launched()["nodes"]["gw-1"].clone();
    let pid = std::process::id();
    let mut fabric = Fabric::new(&format!("osl{pid}"));
    let ns = fabric.node("public", "10.254.52.2/24");
    fabric.host_link(
        &ns,
        &format!("osl{pid}"),
        "10.254.51.1/30",
        "10.254.51.2/30",
        &["203.0.113.10", "203.0.113.11", "203.0.113.12"],
    );
    let (cert, key) = (
        lab.dir.path().join("standin.crt"),
        lab.dir.path().join("standin.key"),
    );
    run_ok(
        Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=paasgen-standin",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert),
    );
    let listen = |addr: &str| {
        let cert = cert.to_string_lossy();
        let key = key.to_string_lossy();
        Process::in_netns(
            &format!("stand-in haproxy on {addr}"),
            &ns,
            std::path::Path::new("/usr/bin/openssl"),
            &[
                "s_server",
                "-quiet",
                "-www",
                "-accept",
                &format!("{addr}:6443"),
                "-cert",
                &cert,
                "-key",
                &key,
            ],
            lab.dir.path().join(format!("standin-{addr}.log")),
        )
    };
    let _vip = listen("203.0.113.10");
    let _gw1 = listen("203.0.113.11");
    let mut gw2 = listen("203.0.113.12");
    let rebuild_gw1 = || {
        lab.paasgen(&[
            "rebuild",
            "gw-1",
            "--cloud",
            "openstack",
            "--os-cloud",
            "lab-admin",
            "--wait",
            "60",
        ])
    };
    gw2.kill();
    let (ok, out) = rebuild_gw1();
    assert!(
        !ok && out.contains("gw-1 is the last gateway that serves"),
        "{out}"
    );
    assert_eq!(lab.launched()["nodes"]["gw-1"], before, "{out}");
    let server = lab.admin(&["server", "show", before["server_id"].as_str().unwrap()]);
    assert_eq!(
        server["status"], "ACTIVE",
        "refused, yet gw-1 was touched: {server}"
    );
    let _gw2 = listen("203.0.113.12");
    let (ok, out) = rebuild_gw1();
    assert!(ok, "{out}");
    assert!(
        out.contains("gateways: gw-2 serve(s) the API")
            && out.contains("stopping server labtest-gw-1")
            && out.contains("gw-1 stopped; the API answers through 203.0.113.10")
            && out.contains("the new gw-1 serves the API on 203.0.113.11"),
        "{out}"
    );
    let after = lab.launched()["nodes"]["gw-1"].clone();
    assert_ne!(before["server_id"], after["server_id"], "{out}");
    assert_eq!(before["port_ids"], after["port_ids"]);
    assert_eq!(after["status"], "ACTIVE");
    let servers = lab.names(&["server", "list", "--all-projects"]);
    assert_eq!(
        servers
            .iter()
            .filter(|n| *n == &format!("{CLUSTER}-gw-1"))
            .count(),
        1,
        "{servers:?}"
    );
    println!(
        "openstack-lab: rebuilt gw-1: server {} -> {}, ports {}",
        before["server_id"], after["server_id"], after["port_ids"]
    );
    let (ok, out) = lab.paasgen(&["plan", "--os-cloud", "lab-admin"]);
    assert!(
        ok && out.contains("Plan: 0 to create") && out.contains(" 0 differ"),
        "{out}"
    );

    // 6. destroy leaves nothing of the cluster.
    let (ok, out) = lab.paasgen(&["destroy", "--yes", "--os-cloud", "lab-admin"]);
    assert!(ok, "{out}");
    assert_eq!(lab.leftovers(), Vec::<String>::new());
}
