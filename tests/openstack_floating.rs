//! `network.public: floating` launched on the REAL OpenStack lab (scripts/openstack-lab;
//! Neutron with the router service plugin and no agents, so routers and floating IPs
//! exist in the API only) as the non-admin member `lab`: the floating IP is allocated
//! first and is what the documents and the admin kubeconfig name, the router has its
//! gateway on `public` and its interface on the private subnet, the floating IP is bound
//! to the private VIP's port; a relaunch creates nothing and keeps the address; destroy
//! leaves nothing, router and floating IP included. Checked as the lab's admin.

mod common;
#[path = "common/openstack.rs"]
mod oskit;

use oskit::{clouds_yaml, Lab};
use serde_json::Value;

const CLUSTER: &str = "labfloat";

fn launch(lab: &Lab) -> String {
    let (ok, out) = lab.paasgen(&["launch", "--cloud", "openstack", "--os-cloud", "lab"]);
    assert!(ok, "{out}");
    out
}

#[test]
fn floating_mode_launches_a_router_and_a_floating_ip_and_destroys_them() {
    let Some(clouds) = clouds_yaml() else { return };
    let lab = Lab::new(clouds, paasgen::spec::FLOATING_EXAMPLE, CLUSTER);
    let (ok, out) = lab.paasgen(&["destroy", "--yes", "--os-cloud", "lab"]);
    assert!(ok, "clearing an earlier run: {out}");

    // 1. Before any launch, plan lists the router, its interface, the floating IP and its
    //    binding, and allocates nothing.
    let (ok, out) = lab.paasgen(&["plan", "--os-cloud", "lab"]);
    assert!(ok, "{out}");
    for line in [
        "+ create  router labfloat-router\n",
        "+ create  router interface labfloat-router-subnet\n",
        "+ create  floating ip labfloat-fip\n",
        "+ create  floating ip association labfloat-fip-vip-private\n",
    ] {
        assert!(out.contains(line), "{line}: {out}");
    }
    assert!(out.contains("stand-in address"), "{out}");
    assert_eq!(
        lab.leftovers(),
        Vec::<String>::new(),
        "plan created something"
    );

    // 2. launch: the floating IP first, recorded, then everything else.
    let out = launch(&lab);
    assert!(!out.contains("created 0 resource(s)"), "{out}");
    let launched = lab.launched();
    let fip = launched["floating_ip"]["address"]
        .as_str()
        .unwrap_or_else(|| panic!("no floating IP in launch.json: {launched}"))
        .to_string();
    let fip_id = launched["floating_ip"]["id"].as_str().unwrap().to_string();
    let last: u8 = fip.rsplit('.').next().unwrap().parse().unwrap();
    assert!(
        fip.starts_with("203.0.113.") && (100..=250).contains(&last),
        "{fip} is not from the lab's pool"
    );
    let nodes = launched["nodes"].as_object().unwrap();
    assert_eq!(nodes.len(), 10);
    for (name, n) in nodes {
        assert_eq!(n["status"], "ACTIVE", "{name}: {n}");
        assert_eq!(n["public_ip"], Value::Null, "{name}");
    }
    // What users and the API server are told: the floating IP.
    let kubeconfig =
        std::fs::read_to_string(lab.dir.path().join(".paasgen/admin.kubeconfig")).unwrap();
    assert!(
        kubeconfig.contains(&format!("server: https://{fip}:6443")),
        "{kubeconfig}"
    );
    let master = std::fs::read_to_string(lab.dir.path().join("out/master-1.yaml")).unwrap();
    assert!(master.contains(&format!("- \"{fip}\"")), "no SAN {fip}");

    // 3. What the cloud holds, read as admin.
    let router = lab.admin(&["router", "show", &format!("{CLUSTER}-router")]);
    let public = lab.admin(&["network", "show", "public"]);
    assert_eq!(
        router["external_gateway_info"]["network_id"], public["id"],
        "{router}"
    );
    let subnet = lab.admin(&["subnet", "show", &format!("{CLUSTER}-subnet")]);
    assert_eq!(subnet["gateway_ip"], "192.168.0.1", "{subnet}");
    let interfaces = lab.admin(&[
        "port",
        "list",
        "--router",
        router["id"].as_str().unwrap(),
        "--device-owner",
        "network:router_interface",
    ]);
    let interfaces = interfaces.to_string();
    assert!(
        interfaces.contains(subnet["id"].as_str().unwrap()) && interfaces.contains("192.168.0.1"),
        "{interfaces}"
    );
    let vip = lab.admin(&["port", "show", &format!("{CLUSTER}-vip-private")]);
    let bound = lab.admin(&["floating", "ip", "show", &fip_id]);
    assert_eq!(bound["floating_ip_address"], fip.as_str(), "{bound}");
    assert_eq!(bound["port_id"], vip["id"], "{bound}");
    assert_eq!(bound["fixed_ip_address"], "192.168.0.5", "{bound}");
    assert_eq!(bound["description"], format!("{CLUSTER}-fip"), "{bound}");
    // The gateways have one port; no public VIP port exists.
    let ports = lab.names(&["port", "list"]);
    assert!(!ports.iter().any(|p| p.ends_with("-public")), "{ports:?}");
    for gw in ["gw-1", "gw-2"] {
        let private = lab.admin(&["port", "show", &format!("{CLUSTER}-{gw}-private")]);
        let pairs = private["allowed_address_pairs"].to_string();
        assert!(
            pairs.contains("192.168.0.5") && !pairs.contains("0.0.0.0/0"),
            "{pairs}"
        );
    }

    // 4. A relaunch creates nothing and keeps the address.
    let out = launch(&lab);
    assert!(out.contains("created 0 resource(s)"), "{out}");
    assert_eq!(lab.launched()["floating_ip"]["address"], fip.as_str());
    let (ok, out) = lab.paasgen(&["plan", "--os-cloud", "lab"]);
    assert!(
        ok && out.contains("Plan: 0 to create") && out.contains(" 0 differ"),
        "{out}"
    );
    println!("openstack-lab: floating mode launched behind {fip}, relaunch created nothing");

    // 5. destroy leaves nothing: servers, ports, the floating IP, the router interface,
    //    the router, the subnet and the network.
    let (ok, out) = lab.paasgen(&["destroy", "--yes", "--os-cloud", "lab"]);
    assert!(ok, "{out}");
    for line in [
        "deleted floating ip association",
        "deleted floating ip labfloat-fip",
        "deleted router interface labfloat-router-subnet",
        "deleted router labfloat-router",
    ] {
        assert!(out.contains(line), "{line}: {out}");
    }
    assert_eq!(lab.leftovers(), Vec::<String>::new());
    let fips = lab.admin(&["floating", "ip", "list"]).to_string();
    assert!(!fips.contains(&fip_id), "{fips}");
    assert_eq!(lab.launched()["floating_ip"], Value::Null);
}

/// Fixed mode as a plain member on the lab's shared provider network (default Neutron
/// policy: choosing addresses there is for its owner or an admin): `plan` and `launch`
/// refuse before anything exists, saying what to use or ask for; nothing is created.
#[test]
fn fixed_mode_as_a_member_on_a_shared_provider_network_is_refused_before_anything_exists() {
    let Some(clouds) = clouds_yaml() else { return };
    let lab = Lab::new(clouds, paasgen::spec::EXAMPLE, "labfixedmember");
    for args in [
        &["plan", "--os-cloud", "lab"][..],
        &["launch", "--cloud", "openstack", "--os-cloud", "lab"],
    ] {
        let (ok, out) = lab.paasgen(args);
        assert!(!ok, "{args:?} went ahead: {out}");
        for said in [
            "network `public` (openstack.public_network), which belongs to another project",
            "project `paasgen` with roles",
            "Use `network.public: floating`",
            "ask the cloud's admin",
            "Nothing was created.",
        ] {
            assert!(out.contains(said), "{args:?}: `{said}` not in: {out}");
        }
    }
    assert_eq!(lab.leftovers(), Vec::<String>::new());
    assert!(
        !lab.dir.path().join(".paasgen/launch.json").exists(),
        "a refused launch wrote state"
    );
    // The policy is real, not paasgen's opinion: Neutron refuses the member such a port.
    let out = std::process::Command::new("openstack")
        .env("OS_CLIENT_CONFIG_FILE", &lab.clouds)
        .args(["--os-cloud", "lab", "port", "create", "--network", "public"])
        .args(["--fixed-ip", "subnet=public-subnet,ip-address=203.0.113.97"])
        .arg("labfixedmember-probe")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "Neutron let the member choose a public address"
    );
    assert!(
        said.contains("403")
            || said.to_lowercase().contains("not authorized")
            || said.contains("disallowed by policy"),
        "{said}"
    );
    println!(
        "openstack-lab: fixed mode as a member refused by plan and launch; Neutron refuses it too"
    );
}
