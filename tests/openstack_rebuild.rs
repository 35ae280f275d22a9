//! `paasgen rebuild etcd-2 --cloud openstack` on the REAL OpenStack lab (Keystone,
//! Neutron, Nova with the fake virt driver, scripts/openstack-lab on 127.0.0.1), with
//! the etcd it talks to really running.
//!
//! Nova's fake driver boots nothing, so the test plays the hypervisor for the nodes that
//! matter: it reads each etcd server's and gw-1's user-data from Nova (as the lab's
//! admin) and runs the real programs on the files of it: etcd (built by images/gobuild)
//! for etcd-1..3 and Debian's haproxy for gw-1, each in a network namespace holding the
//! node's fixed IP, all on one bridge (tests/common/nodes.rs). paasgen reaches the
//! members as a user does, by their FQDNs through gw-1's haproxy on the public VIP,
//! which the host reaches through a veth into gw-1's namespace (`--etcd-via VIP:2379`).
//!
//! 1. launch (fixed mode, so as the lab's admin: default policies), the three members form their cluster from the
//!    user-data Nova holds, keys are written, and etcd-2's process is killed;
//! 2. `rebuild etcd-2`: while it waits for the new member, the test waits for the new
//!    server to be ACTIVE and starts etcd from ITS user-data on an empty disk, in
//!    etcd-2's namespace (same port, same fixed IP), as the booting server would;
//! 3. the server has a new id on the same Neutron port and 192.168.0.11; its user-data
//!    says `initial-cluster-state: existing` with the member list as it is; etcd has 3
//!    members, no stale one, all healthy, and the new member holds the keys.
//!
//! Network traffic goes only to 127.0.0.1 and into namespaces the test makes.

mod common;
#[path = "common/lab.rs"]
mod labkit;
#[path = "common/nodes.rs"]
mod nodes;
#[path = "common/openstack.rs"]
mod oskit;
#[path = "common/swift.rs"]
mod swiftkit;

use labkit::{repo, run_ok};
use nodes::{file_text, start_etcd, start_haproxy, Fabric, Process};
use oskit::Lab;
use paasgen::render::DecodedFile;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const CLUSTER: &str = "osrebuild";
/// Public addresses of our own on the shared `public` network (tests/openstack_lab.rs
/// takes the example's .10-.12, tests/app_credential.rs .40-.42).
const VIP: &str = "203.0.113.50";
const ETCD: [(&str, &str); 3] = [
    ("etcd-1", "192.168.0.10"),
    ("etcd-2", "192.168.0.11"),
    ("etcd-3", "192.168.0.12"),
];

/// The example with public addresses of its own (Lab::new renames it).
fn spec() -> String {
    let mut spec = paasgen::spec::EXAMPLE.to_string();
    for (from, to) in [
        ("public_vip: 203.0.113.10", &*format!("public_vip: {VIP}")),
        ("public_ip: 203.0.113.11", "public_ip: 203.0.113.51"),
        ("public_ip: 203.0.113.12", "public_ip: 203.0.113.52"),
    ] {
        assert!(spec.contains(from), "the example lacks {from}");
        spec = spec.replacen(from, to, 1);
    }
    spec
}

fn cannot_run() -> bool {
    if !common::is_root() {
        assert!(
            std::env::var_os("CI").is_none(),
            "openstack_rebuild needs root in CI"
        );
        eprintln!("SKIPPED: not root (network namespaces)");
        return true;
    }
    !["ip", "curl", "openstack", "haproxy"]
        .iter()
        .all(|p| common::have(p))
}

/// The server named `<cluster>-<node>` as Nova lists it (id, status), if there is one.
fn server(lab: &Lab, node: &str) -> Option<(String, String)> {
    let list = lab.admin(&[
        "server",
        "list",
        "--all-projects",
        "--name",
        &format!("^{CLUSTER}-{node}$"),
    ]);
    let servers = list.as_array().unwrap();
    assert!(servers.len() <= 1, "{list}");
    servers.first().map(|s| {
        (
            s["ID"].as_str().unwrap().to_string(),
            s["Status"].as_str().unwrap().to_string(),
        )
    })
}

/// The user-data Nova holds for server `id`: its text and its write_files.
fn user_data(lab: &Lab, id: &str) -> (String, Vec<DecodedFile>) {
    let bytes = lab.user_data(id);
    let doc = String::from_utf8(bytes).unwrap();
    assert!(doc.starts_with("#cloud-config\n"), "{id}: {doc}");
    let files = paasgen::render::decode_files(&doc).unwrap();
    (doc, files)
}

/// `etcdctl` in `ns` against `endpoints`, with paasgen's own client certificate.
struct Etcdctl {
    bin: PathBuf,
    pki: PathBuf,
}
impl Etcdctl {
    fn run(&self, ns: &str, endpoints: &str, args: &[&str]) -> (bool, String) {
        let p = |f: &str| self.pki.join(f).display().to_string();
        common::run(
            Command::new("ip")
                .args(["netns", "exec", ns])
                .arg(&self.bin)
                .args([
                    &format!("--endpoints={endpoints}"),
                    &format!("--cacert={}", p("ca.crt")),
                    &format!("--cert={}", p("paasgen-admin-client.crt")),
                    &format!("--key={}", p("paasgen-admin-client.key")),
                    "--dial-timeout=3s",
                    "--command-timeout=5s",
                ])
                .args(args),
        )
    }

    fn json(&self, ns: &str, endpoints: &str, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.extend(["-w", "json"]);
        let (ok, out) = self.run(ns, endpoints, &args);
        assert!(ok, "etcdctl {args:?}: {out}");
        serde_json::Deserializer::from_str(&out)
            .into_iter::<Value>()
            .next()
            .and_then(Result::ok)
            .unwrap_or_else(|| panic!("etcdctl {args:?}: {out}"))
    }

    /// Waits until every member of the cluster says it is healthy; returns how many.
    fn wait_all_healthy(
        &self,
        ns: &str,
        endpoint: &str,
        limit: Duration,
        procs: &mut [&mut Process],
    ) -> usize {
        let start = Instant::now();
        loop {
            let (ok, out) = self.run(
                ns,
                endpoint,
                &["endpoint", "health", "--cluster", "-w", "json"],
            );
            if ok {
                let health: Value =
                    serde_json::from_str(out.lines().next().unwrap_or("")).unwrap_or(Value::Null);
                if let Some(all) = health.as_array() {
                    if all.iter().all(|h| h["health"] == true) {
                        return all.len();
                    }
                }
            }
            for p in procs.iter_mut() {
                p.assert_running();
            }
            assert!(
                start.elapsed() < limit,
                "etcd not healthy within {limit:?}: {out}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

#[derive(Debug)]
struct Member {
    name: String,
    peer_urls: Vec<String>,
    id: u64,
    learner: bool,
}

/// Every member, as `endpoint` lists them.
fn members(ctl: &Etcdctl, ns: &str, endpoint: &str) -> Vec<Member> {
    let list = ctl.json(ns, endpoint, &["member", "list"]);
    list["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| Member {
            name: m["name"].as_str().unwrap_or("").to_string(),
            peer_urls: m["peerURLs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u.as_str().unwrap().to_string())
                .collect(),
            id: m["ID"].as_u64().unwrap(),
            learner: m["isLearner"].as_bool().unwrap_or(false),
        })
        .collect()
}

/// Destroys the cluster on drop, unless the test did.
struct Cluster<'a> {
    lab: &'a Lab,
    destroyed: bool,
}
impl Drop for Cluster<'_> {
    fn drop(&mut self) {
        if !self.destroyed {
            let (ok, out) = self
                .lab
                .paasgen(&["destroy", "--yes", "--os-cloud", "lab-admin"]);
            eprintln!("cleanup: paasgen destroy: ok={ok}\n{out}");
        }
    }
}

#[test]
fn rebuild_etcd_2_on_openstack_replaces_the_server_and_its_user_data_rejoins() {
    if cannot_run() {
        return;
    }
    let _openstack = swiftkit::OpenStackLab::ensure();
    let t_all = Instant::now();
    let gout = run_ok(&mut Command::new(repo("images/gobuild")));
    let bin = PathBuf::from(gout.lines().last().expect("gobuild's output dir").trim()).join("bin");
    assert!(bin.join("etcd").exists(), "no etcd in {}", bin.display());
    let clouds = swiftkit::oslab_dir().join("clouds.yaml");
    let lab = Lab::new(clouds.clone(), &spec(), CLUSTER);
    let dir = lab.dir.path();

    // 1. Launch, as the project member (an earlier run's leftovers destroyed first).
    let (ok, out) = lab.paasgen(&["destroy", "--yes", "--os-cloud", "lab-admin"]);
    assert!(ok, "clearing an earlier run: {out}");
    let mut cluster = Cluster {
        lab: &lab,
        destroyed: false,
    };
    let t = Instant::now();
    let launched = lab.launch_json("lab-admin", &[]);
    eprintln!(
        "openstack-rebuild: launch {:.1}s",
        t.elapsed().as_secs_f64()
    );

    // The nodes, played with the user-data Nova holds.
    let t = Instant::now();
    let id_of = |node: &str| launched[node]["server_id"].as_str().unwrap().to_string();
    let mut fabric = Fabric::new(&format!("osrb{}", std::process::id()));
    let mut etcd = Vec::new();
    for (node, ip) in ETCD {
        let (_, files) = user_data(&lab, &id_of(node));
        let conf = file_text(&files, "/etc/etcd/etcd.conf.yml");
        assert!(
            conf.contains("initial-cluster-state: new\n"),
            "{node}: {conf}"
        );
        let ns = fabric.node(node, &format!("{ip}/24"));
        etcd.push(start_etcd(
            &bin.join("etcd"),
            &ns,
            &files,
            &dir.join(format!("node-{node}")),
        ));
    }
    let (_, gw_files) = user_data(&lab, &id_of("gw-1"));
    let gw_ns = fabric.node("gw-1", "192.168.0.2/24");
    let host_link = format!("osrb{}", std::process::id());
    fabric.host_link(
        &gw_ns,
        &host_link,
        "10.254.50.1/30",
        "10.254.50.2/30",
        &[VIP],
    );
    let mut haproxy = start_haproxy(&gw_ns, &gw_files, &dir.join("node-gw-1"));
    let ctl = Etcdctl {
        bin: bin.join("etcdctl"),
        pki: dir.join(".paasgen/pki/etcd"),
    };
    let ns1 = fabric.ns("etcd-1");
    let ep1 = "https://192.168.0.10:2379";
    {
        let mut procs: Vec<&mut Process> = etcd.iter_mut().collect();
        let n = ctl.wait_all_healthy(&ns1, ep1, Duration::from_secs(120), &mut procs);
        assert_eq!(n, 3);
    }
    haproxy.assert_running();
    eprintln!(
        "openstack-rebuild: etcd-1..3 healthy from Nova's user-data {:.1}s",
        t.elapsed().as_secs_f64()
    );
    for i in 0..20 {
        let (ok, out) = ctl.run(
            &ns1,
            ep1,
            &["put", &format!("osrebuild/key-{i}"), &format!("value-{i}")],
        );
        assert!(ok, "{out}");
    }
    let before = members(&ctl, &ns1, ep1);
    let old_member = before
        .iter()
        .find(|m| m.name == "etcd-2")
        .expect("etcd-2 is a member")
        .id;

    // The failed node: etcd-2's etcd dies, its server and port stay as they were.
    etcd[1].kill();
    let old_server = id_of("etcd-2");
    let port_name = format!("{CLUSTER}-etcd-2-private");
    let port = lab.admin(&["port", "show", &port_name]);
    assert_eq!(port["device_id"], old_server.as_str(), "{port}");
    let (old_doc, _) = user_data(&lab, &old_server);

    // 2. rebuild, while the test boots the new server as a hypervisor would.
    let t = Instant::now();
    // A process of its own, killed if the test fails before it ends.
    let mut rebuild = Process::spawn(
        "paasgen rebuild",
        Command::new(env!("CARGO_BIN_EXE_paasgen"))
            .current_dir(dir)
            .env("OS_CLIENT_CONFIG_FILE", &clouds)
            .args([
                "rebuild",
                "etcd-2",
                "--cloud",
                "openstack",
                "--os-cloud",
                "lab-admin",
                "--etcd-via",
                &format!("{VIP}:2379"),
                "--wait",
                "300",
            ]),
        dir.join("rebuild.log"),
    );
    let new_server = loop {
        if let Some(status) = rebuild.ended() {
            panic!(
                "rebuild ended ({status}) before a new server was ACTIVE:\n{}",
                rebuild.output()
            );
        }
        match server(&lab, "etcd-2") {
            Some((id, status)) if id != old_server && status == "ACTIVE" => break id,
            Some((_, status)) if status == "ERROR" => panic!("the new etcd-2 is ERROR"),
            _ => std::thread::sleep(Duration::from_secs(1)),
        }
        assert!(
            t.elapsed() < Duration::from_secs(300),
            "no new etcd-2 server within 300s"
        );
    };
    let t_active = t.elapsed();
    let (new_doc, new_files) = user_data(&lab, &new_server);
    let new_etcd = start_etcd(
        &bin.join("etcd"),
        &fabric.ns("etcd-2"),
        &new_files,
        &dir.join("node-etcd-2-new"),
    );
    etcd[1] = new_etcd;
    let status = loop {
        if let Some(status) = rebuild.ended() {
            break status;
        }
        assert!(
            t.elapsed() < Duration::from_secs(400),
            "rebuild still runs after 400s:\n{}",
            rebuild.output()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let out = rebuild.output();
    assert!(
        status.success() && out.contains("rebuilt etcd-2"),
        "{out}\n--- new etcd-2:\n{}",
        etcd[1].tail()
    );
    eprintln!(
        "openstack-rebuild: rebuild etcd-2 {:.1}s (new server ACTIVE after {:.1}s)",
        t.elapsed().as_secs_f64(),
        t_active.as_secs_f64()
    );
    print!("{out}");

    // 3. The new server: same port, same fixed IP, new user-data that joins.
    assert_ne!(new_server, old_server);
    let port_after = lab.admin(&["port", "show", &port_name]);
    assert_eq!(port_after["id"], port["id"]);
    assert_eq!(port_after["device_id"], new_server.as_str(), "{port_after}");
    assert_eq!(port_after["fixed_ips"], port["fixed_ips"]);
    assert!(
        port_after["fixed_ips"]
            .to_string()
            .contains("\"192.168.0.11\""),
        "{port_after}"
    );
    assert_eq!(
        lab.launched()["nodes"]["etcd-2"]["server_id"],
        new_server.as_str()
    );
    assert_ne!(new_doc, old_doc);
    let conf = file_text(&new_files, "/etc/etcd/etcd.conf.yml");
    assert!(conf.contains("initial-cluster-state: existing\n"), "{conf}");

    // etcd: three members, the old one gone, all healthy, the keys on the new member.
    {
        let mut procs: Vec<&mut Process> = etcd.iter_mut().collect();
        assert_eq!(
            ctl.wait_all_healthy(&ns1, ep1, Duration::from_secs(60), &mut procs),
            3
        );
    }
    let after = members(&ctl, &ns1, ep1);
    assert_eq!(after.len(), 3, "{after:?}");
    assert!(
        after.iter().all(|m| m.id != old_member && !m.learner),
        "{after:?}"
    );
    let names: BTreeSet<&str> = after.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, BTreeSet::from(["etcd-1", "etcd-2", "etcd-3"]));
    let listed: BTreeSet<String> = after
        .iter()
        .map(|m| format!("{}={}", m.name, m.peer_urls.join(",")))
        .collect();
    let initial = conf
        .lines()
        .find_map(|l| l.strip_prefix("initial-cluster: "))
        .expect("initial-cluster")
        .trim_matches('"');
    let initial: BTreeSet<String> = initial.split(',').map(str::to_string).collect();
    assert_eq!(initial, listed, "{conf}");
    let ns2 = fabric.ns("etcd-2");
    let got = ctl.json(
        &ns2,
        "https://192.168.0.11:2379",
        &["get", "--prefix", "osrebuild/", "--consistency=s"],
    );
    assert_eq!(got["count"], 20, "{got}");
    haproxy.assert_running();
    eprintln!("openstack-rebuild: members after: {after:?}");

    // 4. Everything ended: processes, namespaces, the cluster.
    drop(etcd);
    drop(haproxy);
    drop(fabric);
    let t = Instant::now();
    let (ok, out) = lab.paasgen(&["destroy", "--yes", "--os-cloud", "lab-admin"]);
    assert!(ok, "{out}");
    cluster.destroyed = true;
    assert_eq!(lab.leftovers(), Vec::<String>::new());
    eprintln!(
        "openstack-rebuild: destroy {:.1}s; whole test {:.1}s",
        t.elapsed().as_secs_f64(),
        t_all.elapsed().as_secs_f64()
    );
}
