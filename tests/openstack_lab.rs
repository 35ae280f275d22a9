//! paasgen launch against a REAL OpenStack (Keystone, Neutron, Nova with the fake virt
//! driver, Placement, Glance) started by scripts/openstack-lab on 127.0.0.1, as a
//! non-admin project member. Checked through python-openstackclient as the lab admin,
//! not through paasgen's own code.

mod common;

use common::run;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

const CLUSTER: &str = "labtest";

fn clouds_yaml() -> Option<PathBuf> {
    let dir =
        std::env::var("OSLAB_DIR").unwrap_or_else(|_| "/var/tmp/paasgen-openstack-lab".into());
    let path = Path::new(&dir).join("clouds.yaml");
    let up = path.exists()
        && Command::new("curl")
            .args(["-sf", "-o", "/dev/null", "http://127.0.0.1:5000/v3"])
            .status()
            .is_ok_and(|s| s.success());
    if !up {
        assert!(
            std::env::var_os("CI").is_none(),
            "the OpenStack lab is not running: .ci/run starts it"
        );
        eprintln!("SKIPPED: no OpenStack lab (scripts/openstack-lab start)");
        return None;
    }
    Some(path)
}

struct Lab {
    clouds: PathBuf,
    dir: tempfile::TempDir,
}

impl Lab {
    fn paasgen(&self, args: &[&str]) -> (bool, String) {
        run(Command::new(env!("CARGO_BIN_EXE_paasgen"))
            .current_dir(self.dir.path())
            .env("OS_CLIENT_CONFIG_FILE", &self.clouds)
            .args(args))
    }

    /// `openstack` as the lab's admin, JSON out.
    fn admin(&self, args: &[&str]) -> Value {
        let out = Command::new("openstack")
            .env("OS_CLIENT_CONFIG_FILE", &self.clouds)
            .args([
                "--os-cloud",
                "lab-admin",
                "--os-compute-api-version",
                "2.74",
            ])
            .args(args)
            .args(["-f", "json"])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "openstack {args:?}: {stdout}{stderr}");
        // The first JSON document of stdout: warnings go to stderr.
        let mut docs = serde_json::Deserializer::from_str(&stdout).into_iter::<Value>();
        match docs.next() {
            Some(Ok(v)) => v,
            other => panic!("openstack {args:?}: {other:?}: {stdout}"),
        }
    }

    fn admin_do(&self, args: &[&str]) {
        let (ok, out) = run(Command::new("openstack")
            .env("OS_CLIENT_CONFIG_FILE", &self.clouds)
            .args(["--os-cloud", "lab-admin"])
            .args(args));
        assert!(ok, "openstack {args:?}: {out}");
    }

    fn names(&self, list: &[&str]) -> Vec<String> {
        let v = self.admin(list);
        v.as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["Name"].as_str().map(str::to_string))
            .filter(|n| n.starts_with(&format!("{CLUSTER}-")))
            .collect()
    }

    fn leftovers(&self) -> Vec<String> {
        let mut all = Vec::new();
        for list in [
            &["server", "list", "--all-projects"][..],
            &["port", "list"],
            &["network", "list"],
            &["subnet", "list"],
            &["security", "group", "list"],
            &["server", "group", "list", "--all-projects"],
        ] {
            all.extend(self.names(list));
        }
        all
    }
}

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
    let lab = Lab {
        clouds,
        dir: tempfile::tempdir().unwrap(),
    };
    let spec = paasgen::spec::EXAMPLE.replacen("name: demo", &format!("name: {CLUSTER}"), 1);
    std::fs::write(lab.dir.path().join("cluster.yaml"), spec).unwrap();
    let (ok, out) = lab.paasgen(&["destroy", "--yes", "--os-cloud", "lab"]);
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
        let (ok, out) = lab.paasgen(&["launch", "--cloud", "openstack", "--os-cloud", "lab"]);
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
    let (ok, out) = lab.paasgen(&[
        "launch",
        "--cloud",
        "openstack",
        "--os-cloud",
        "lab",
        "--replace-failed",
        "--output",
        "json",
    ]);
    assert!(ok, "{out}");
    let json_start = out.find('{').unwrap();
    // The JSON document is stdout; spec warnings (stderr) may follow it.
    let nodes: Value = serde_json::Deserializer::from_str(&out[json_start..])
        .into_iter()
        .next()
        .expect("a JSON document")
        .unwrap();
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
        let b64 = server["OS-EXT-SRV-ATTR:user_data"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no user_data: {server}"));
        use base64::Engine;
        let user_data = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
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
    let (ok, out) = lab.paasgen(&["launch", "--cloud", "openstack", "--os-cloud", "lab"]);
    assert!(ok, "{out}");
    assert!(out.contains("created 0 resource(s)"), "{out}");
    let (ok, out) = lab.paasgen(&["plan", "--os-cloud", "lab"]);
    assert!(ok && out.contains("Plan: 0 to create"), "{out}");

    // 5. rebuild replaces one server on the same port: a new server, the same port
    //    and fixed address, through the same planner as launch (a gateway: no etcd or
    //    Kubernetes API to talk to here, the lab's servers do not boot).
    let launched = |dir: &std::path::Path| -> Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join(".paasgen/launch.json")).unwrap())
            .unwrap()
    };
    let before = launched(lab.dir.path())["nodes"]["gw-1"].clone();
    let (ok, out) = lab.paasgen(&[
        "rebuild",
        "gw-1",
        "--cloud",
        "openstack",
        "--os-cloud",
        "lab",
    ]);
    assert!(ok, "{out}");
    let after = launched(lab.dir.path())["nodes"]["gw-1"].clone();
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
    let (ok, out) = lab.paasgen(&["plan", "--os-cloud", "lab"]);
    assert!(
        ok && out.contains("Plan: 0 to create") && out.contains(" 0 differ"),
        "{out}"
    );

    // 6. destroy leaves nothing of the cluster.
    let (ok, out) = lab.paasgen(&["destroy", "--yes", "--os-cloud", "lab"]);
    assert!(ok, "{out}");
    assert_eq!(lab.leftovers(), Vec::<String>::new());
}
