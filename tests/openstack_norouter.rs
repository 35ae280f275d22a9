//! A cloud whose Neutron runs without the L3 router service plugin (provider networks
//! only): the OpenStack lab's second Neutron API on :9697 (same database, `service_plugins`
//! empty), reached through the clouds `lab-admin-norouter` / `lab-norouter`. Fixed mode
//! needs no router and works there; floating mode is refused by `plan` in words.
//! What the cloud holds is read as the lab's admin through python-openstackclient.

mod common;
#[path = "common/openstack.rs"]
mod oskit;

use oskit::{clouds_yaml, Lab};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// `plan --output json`'s document (stdout holds only it).
fn plan_json(lab: &Lab, cloud: &str) -> (bool, Value) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_paasgen"))
        .current_dir(lab.dir.path())
        .env("OS_CLIENT_CONFIG_FILE", &lab.clouds)
        .args(["plan", "--os-cloud", cloud, "--output", "json"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let doc = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "plan --output json: {e}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), doc)
}

fn extensions(doc: &Value) -> Vec<&str> {
    doc["capabilities"]["network_extensions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect()
}

#[test]
fn fixed_mode_launches_and_destroys_on_a_cloud_without_routers() {
    let Some(clouds) = clouds_yaml() else { return };
    const CLUSTER: &str = "norouter";
    // Public addresses of its own: other lab tests hold .10-.12 and .50-.52.
    let mut spec = paasgen::spec::EXAMPLE.to_string();
    for (from, to) in [
        ("public_vip: 203.0.113.10", "public_vip: 203.0.113.30"),
        ("public_ip: 203.0.113.11", "public_ip: 203.0.113.31"),
        ("public_ip: 203.0.113.12", "public_ip: 203.0.113.32"),
    ] {
        assert!(spec.contains(from), "{from}");
        spec = spec.replacen(from, to, 1);
    }
    let lab = Lab::new(clouds, &spec, CLUSTER);
    let cloud = "lab-admin-norouter";
    let (ok, out) = lab.paasgen(&["destroy", "--yes", "--os-cloud", cloud]);
    assert!(ok, "clearing an earlier run: {out}");

    // The cloud really has no routers: openstackclient is refused there too.
    let (ok, out) = common::run(
        std::process::Command::new("openstack")
            .env("OS_CLIENT_CONFIG_FILE", &lab.clouds)
            .args(["--os-cloud", cloud, "router", "list"]),
    );
    assert!(!ok && out.contains("404"), "router list: {out}");

    // 1. plan: what the cloud offers, printed; nothing refused in fixed mode.
    let (ok, doc) = plan_json(&lab, cloud);
    assert!(ok, "{doc}");
    let ext = extensions(&doc);
    assert!(!ext.contains(&"router"), "{ext:?}");
    assert!(ext.contains(&"allowed-address-pairs"), "{ext:?}");
    assert_eq!(doc["refusals"], serde_json::json!([]), "{doc}");
    let steps = doc["plan"]["steps"].as_array().unwrap();
    assert!(
        steps
            .iter()
            .all(|s| s["action"] == "create" && s["kind"] != "router"),
        "{doc}"
    );
    let (ok, out) = lab.paasgen(&["plan", "--os-cloud", cloud, "-v"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("routers and floating IPs: no (no `router` extension)"),
        "{out}"
    );

    // 2. launch: every server ACTIVE with the user-data its node renders.
    let nodes = lab.launch_json(cloud, &[]);
    assert_eq!(nodes.as_object().unwrap().len(), 10, "{nodes}");
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(lab.dir.path().join("out/manifest.json")).unwrap(),
    )
    .unwrap();
    for node in manifest["nodes"].as_array().unwrap() {
        let name = node["name"].as_str().unwrap();
        let id = nodes[name]["server_id"].as_str().unwrap();
        assert_eq!(
            lab.admin(&["server", "show", id])["status"],
            "ACTIVE",
            "{name}"
        );
        assert_eq!(
            paasgen::pki::hex(&Sha256::digest(lab.user_data(id))),
            node["sha256"].as_str().unwrap(),
            "{name}"
        );
    }
    for gw in ["gw-1", "gw-2"] {
        let public = lab.admin(&["port", "show", &format!("{CLUSTER}-{gw}-public")]);
        let pairs = public["allowed_address_pairs"].to_string();
        assert!(pairs.contains("203.0.113.30"), "{gw}: {pairs}");
    }
    // Tags: in the create request of ports (tag-ports-during-bulk-creation), by a
    // second call for the rest (standard-attr-tag).
    let tagged = |what: &[&str]| lab.admin(what)["tags"].to_string();
    let want = format!("paasgen-cluster={CLUSTER}");
    assert!(
        tagged(&["port", "show", &format!("{CLUSTER}-master-1-private")]).contains(&want),
        "port"
    );
    assert!(
        tagged(&["network", "show", &format!("{CLUSTER}-net")]).contains(&want),
        "network"
    );

    // 3. A second launch creates nothing; plan agrees.
    let (ok, out) = lab.paasgen(&["launch", "--cloud", "openstack", "--os-cloud", cloud]);
    assert!(ok && out.contains("created 0 resource(s)"), "{out}");
    let (ok, out) = lab.paasgen(&["plan", "--os-cloud", cloud]);
    assert!(ok && out.contains("Plan: 0 to create"), "{out}");

    // 4. destroy leaves nothing of the cluster (read through the full Neutron too).
    let (ok, out) = lab.paasgen(&["destroy", "--yes", "--os-cloud", cloud]);
    assert!(ok, "{out}");
    assert_eq!(lab.leftovers(), Vec::<String>::new());
}

#[test]
fn floating_mode_is_refused_in_words_on_a_cloud_without_routers() {
    let Some(clouds) = clouds_yaml() else { return };
    let lab = Lab::new(clouds, paasgen::spec::FLOATING_EXAMPLE, "norouterfip");
    // As the member, the way floating mode is used.
    let cloud = "lab-norouter";
    let (ok, doc) = plan_json(&lab, cloud);
    assert!(!ok, "plan passed: {doc}");
    assert!(!extensions(&doc).contains(&"router"), "{doc}");
    assert_eq!(doc["plan"], Value::Null, "{doc}");
    let refusals = doc["refusals"].to_string();
    assert!(
        refusals.contains("this cloud's network service has no routers: use `network.public: fixed`, or ask the operator for the L3 router plugin"),
        "{refusals}"
    );
    let (ok, out) = lab.paasgen(&["plan", "--os-cloud", cloud]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("has no routers") && out.contains("Nothing was created"),
        "{out}"
    );
    let (ok, out) = lab.paasgen(&["launch", "--cloud", "openstack", "--os-cloud", cloud]);
    assert!(!ok && out.contains("has no routers"), "{out}");
    assert!(
        !lab.dir.path().join("out").exists(),
        "launch wrote documents"
    );
    assert_eq!(lab.leftovers(), Vec::<String>::new());
}
