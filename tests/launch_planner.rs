//! The planner and launcher without a cloud: the in-memory cloud checks dependencies,
//! and injects failed calls, lost responses, transient errors and servers going ERROR.

mod common;

use common::{example_spec, render_in};
use paasgen::cloud::apply::{Options, Outcome};
use paasgen::cloud::memory::MemoryCloud;
use paasgen::cloud::state::StateFile;
use paasgen::cloud::{desired, plan, Cloud, Kind, NetworkRef, Resource, Spec};
use paasgen::render::NodeDocument;
use std::collections::BTreeMap;
use std::time::Duration;

struct Fixture {
    _dir: tempfile::TempDir,
    state: StateFile,
    docs: Vec<NodeDocument>,
    desired: Vec<Resource>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let spec = example_spec();
    let (_, docs) = render_in(dir.path(), &spec);
    let desired = desired::resources(&spec, &docs).unwrap();
    Fixture {
        state: StateFile::new(dir.path()),
        _dir: dir,
        docs,
        desired,
    }
}

fn fast() -> Options {
    Options {
        backoff: Duration::from_millis(1),
        server_timeout: Duration::from_secs(5),
        ..Options::default()
    }
}

fn launch(cloud: &MemoryCloud, f: &Fixture, opts: &Options) -> anyhow::Result<Outcome> {
    common::launch_in_memory(cloud, &f.state, &f.docs, &f.desired, opts)
}

fn plan_now(cloud: &MemoryCloud, f: &Fixture) -> plan::Plan {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    plan::plan(&f.desired, &rt.block_on(cloud.inventory("demo")).unwrap())
}

fn counts(rs: &[Resource]) -> BTreeMap<Kind, usize> {
    let mut m = BTreeMap::new();
    for r in rs {
        *m.entry(r.kind).or_default() += 1;
    }
    m
}

/// What the resource named `name` must look like.
fn spec_of(desired: &[Resource], name: &str) -> Spec {
    desired
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no resource {name}"))
        .spec
        .clone()
}

/// Every name exists once, and everything desired exists.
fn assert_complete_without_duplicates(cloud: &MemoryCloud, f: &Fixture) {
    let have = cloud.resources();
    for r in &f.desired {
        let n = have
            .iter()
            .filter(|e| e.kind == r.kind && e.name == r.name)
            .count();
        assert_eq!(n, 1, "{} {} exists {n} times", r.kind, r.name);
    }
    assert_eq!(have.len(), f.desired.len());
}

#[test]
fn the_plan_lists_every_resource_of_the_example() {
    let f = fixture();
    let c = counts(&f.desired);
    assert_eq!(c[&Kind::KeyPair], 1);
    assert_eq!(c[&Kind::Network], 1);
    assert_eq!(c[&Kind::Subnet], 1);
    assert_eq!(
        c[&Kind::ServerGroup],
        3,
        "anti-affinity for gateways, etcd, masters"
    );
    assert_eq!(c[&Kind::SecurityGroup], 4, "one per role");
    assert_eq!(
        c[&Kind::Port],
        10 + 2 + 2,
        "a private port per node, public ports of the gateways, two VIPs"
    );
    assert_eq!(c[&Kind::Server], 10);
    let port = |name: &str| match &f
        .desired
        .iter()
        .find(|r| r.kind == Kind::Port && r.name == name)
        .unwrap()
        .spec
    {
        Spec::Port {
            network,
            fixed_ip,
            allowed_address_pairs,
            security_groups,
        } => (
            network.clone(),
            fixed_ip.to_string(),
            allowed_address_pairs.clone(),
            security_groups.clone(),
        ),
        _ => unreachable!(),
    };
    for gw in ["gw-1", "gw-2"] {
        let (net, ip, pairs, sgs) = port(&format!("demo-{gw}-private"));
        assert_eq!(
            net,
            NetworkRef::Own {
                network: "demo-net".into(),
                subnet: "demo-subnet".into()
            }
        );
        assert!(pairs.contains(&"192.168.0.5".to_string()), "{pairs:?}");
        assert_eq!(sgs, vec!["demo-gateway".to_string()]);
        assert!(ip.starts_with("192.168.0."));
        let (net, _, pairs, _) = port(&format!("demo-{gw}-public"));
        assert_eq!(net, NetworkRef::Existing("public".into()));
        assert_eq!(pairs, vec!["203.0.113.10".to_string()]);
    }
    assert_eq!(port("demo-vip-private").1, "192.168.0.5");
    assert_eq!(port("demo-vip-public").1, "203.0.113.10");
    assert_eq!(
        port("demo-etcd-1-private").2,
        Vec::<String>::new(),
        "only gateways get address pairs"
    );
    let rule = |name: &str| spec_of(&f.desired, name);
    assert!(matches!(rule("demo-etcd-etcd-from-master"),
        Spec::SecurityGroupRule { ports: Some((2379, 2380)), remote: paasgen::cloud::Remote::Group(g), .. } if g == "demo-master"));
    assert!(
        matches!(rule("demo-gateway-vrrp"), Spec::SecurityGroupRule { protocol: Some(p), .. } if p == "112")
    );
    assert!(matches!(
        rule("demo-master-api-from-gateway"),
        Spec::SecurityGroupRule {
            ports: Some((6443, 6443)),
            ..
        }
    ));
    assert!(matches!(
        rule("demo-worker-nodeports-from-gateway"),
        Spec::SecurityGroupRule {
            ports: Some((30000, 32767)),
            ..
        }
    ));
    // `paasgen status` asks each gateway's haproxy who it is, from admin_cidrs only.
    assert!(matches!(
        rule("demo-gateway-status-admin-0"),
        Spec::SecurityGroupRule {
            ports: Some((8404, 8404)),
            remote: paasgen::cloud::Remote::Cidr(c),
            ..
        } if c == "0.0.0.0/0"
    ));
    let cloud = MemoryCloud::new();
    let p = plan_now(&cloud, &f);
    assert_eq!(p.to_create().count(), f.desired.len());
}

#[test]
fn a_second_launch_creates_nothing() {
    let f = fixture();
    let cloud = MemoryCloud::new();
    let outcome = launch(&cloud, &f, &fast()).unwrap();
    assert_eq!(outcome.created.len(), f.desired.len());
    assert!(outcome.failed().is_empty());
    assert!(plan_now(&cloud, &f).is_empty());
    let calls = cloud.create_calls();
    let again = launch(&cloud, &f, &fast()).unwrap();
    assert!(again.created.is_empty());
    assert_eq!(cloud.create_calls(), calls);
    assert_complete_without_duplicates(&cloud, &f);
    let state = f.state.load().unwrap().unwrap();
    assert_eq!(state.nodes.len(), 10);
    assert_eq!(
        state.nodes["gw-1"].public_ip.as_deref(),
        Some("203.0.113.11")
    );
    assert_eq!(state.nodes["gw-1"].port_ids.len(), 2);
}

#[test]
fn an_interrupted_launch_resumes_without_duplicates_whatever_the_step() {
    let total = fixture().desired.len();
    for step in 1..=total {
        for lose_response in [false, true] {
            let f = fixture();
            let cloud = MemoryCloud::new();
            if lose_response {
                cloud.lose_create_response(step);
            } else {
                cloud.fail_create_call(step);
            }
            let err = launch(&cloud, &f, &fast()).unwrap_err();
            assert!(format!("{err:#}").contains("injected"), "{err:#}");
            let recorded = f.state.load().unwrap().unwrap().resources.len();
            assert!(
                recorded >= step - 1,
                "step {step}: only {recorded} recorded"
            );
            cloud.clear_faults();
            let outcome = launch(&cloud, &f, &fast()).unwrap();
            assert!(outcome.failed().is_empty());
            assert_complete_without_duplicates(&cloud, &f);
            assert!(plan_now(&cloud, &f).is_empty(), "step {step}");
        }
    }
}

#[test]
fn transient_errors_are_retried() {
    let f = fixture();
    let cloud = MemoryCloud::new();
    cloud.transient_failures(4);
    let outcome = launch(&cloud, &f, &fast()).unwrap();
    assert!(outcome.failed().is_empty());
    assert_complete_without_duplicates(&cloud, &f);
    // With too few attempts the same errors end the launch, naming the call.
    let f = fixture();
    let cloud = MemoryCloud::new();
    cloud.transient_failures(10);
    let err = launch(
        &cloud,
        &f,
        &Options {
            attempts: 2,
            ..fast()
        },
    )
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("503 Service Unavailable"),
        "{err:#}"
    );
}

#[test]
fn a_server_in_error_is_reported_with_its_fault_and_can_be_replaced() {
    let fault = "No valid host was found. There are not enough hosts available.";
    let f = fixture();
    let cloud = MemoryCloud::new();
    cloud.server_fault("demo-etcd-3", fault);
    let outcome = launch(&cloud, &f, &fast()).unwrap();
    let failed = outcome.failed();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].0, "etcd-3");
    assert_eq!(failed[0].1.status, "ERROR");
    assert_eq!(failed[0].1.fault.as_deref(), Some(fault));
    let p = plan_now(&cloud, &f);
    assert!(
        p.to_string().contains("server is in ERROR: No valid host"),
        "{p}"
    );

    let f = fixture();
    let cloud = MemoryCloud::new();
    cloud.server_fault("demo-etcd-3", fault);
    let outcome = launch(
        &cloud,
        &f,
        &Options {
            replace_failed: true,
            ..fast()
        },
    )
    .unwrap();
    assert!(outcome.failed().is_empty(), "{:?}", outcome.failed());
    assert_complete_without_duplicates(&cloud, &f);
}

#[test]
fn bounded_parallelism_still_completes_sequentially() {
    let f = fixture();
    let cloud = MemoryCloud::new();
    launch(
        &cloud,
        &f,
        &Options {
            parallel: 1,
            ..fast()
        },
    )
    .unwrap();
    assert_complete_without_duplicates(&cloud, &f);
}

#[test]
fn calls_in_flight_are_bounded_by_parallel() {
    for (parallel, expected) in [(1, 1), (4, 4), (10, 10)] {
        let f = fixture();
        let cloud = MemoryCloud::new();
        cloud.create_latency(Duration::from_millis(5));
        launch(&cloud, &f, &Options { parallel, ..fast() }).unwrap();
        assert_eq!(cloud.max_in_flight(), expected, "--parallel {parallel}");
        assert_complete_without_duplicates(&cloud, &f);
    }
}

#[test]
fn anti_affinity_members_go_one_at_a_time_and_before_the_workers_ports() {
    let f = fixture();
    let cloud = MemoryCloud::new();
    cloud.create_latency(Duration::from_millis(5));
    launch(&cloud, &f, &fast()).unwrap();
    assert_complete_without_duplicates(&cloud, &f);
    assert_eq!(
        cloud.group_overlaps(),
        0,
        "two members of a group created at once"
    );
    // Resources start once what they need exists, not in waves: the first server-group
    // member (the longest sequential path) is under way before the workers' ports exist.
    let created: Vec<_> = cloud.resources();
    let first_member = created.iter().position(|e| e.kind == Kind::Server).unwrap();
    assert!(
        created[first_member].name.contains("-gw-")
            || created[first_member].name.contains("-etcd-")
            || created[first_member].name.contains("-master-"),
        "{}",
        created[first_member].name
    );
    let last_worker_port = created
        .iter()
        .rposition(|e| e.kind == Kind::Port && e.name.contains("-worker-"))
        .unwrap();
    assert!(
        first_member < last_worker_port,
        "the first server waited for every port: {:?}",
        created.iter().map(|e| &e.name).collect::<Vec<_>>()
    );
}

/// examples/floating.yaml, launched as `paasgen launch` does it: the floating IP first
/// (recorded in launch.json), then the render with its address, then the rest.
struct Floating {
    f: Fixture,
    spec: paasgen::spec::Spec,
    address: std::net::Ipv4Addr,
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn floating_fixture(cloud: &MemoryCloud) -> Floating {
    let dir = tempfile::tempdir().unwrap();
    let spec = paasgen::spec::parse("floating.yaml", paasgen::spec::FLOATING_EXAMPLE)
        .unwrap()
        .0;
    let state = StateFile::new(dir.path());
    let fip = desired::floating_ip(&spec).unwrap().expect("floating mode");
    let record = rt()
        .block_on(paasgen::cloud::apply::floating_ip(
            cloud,
            "demo",
            &fip,
            &state,
            &fast(),
            true,
        ))
        .unwrap()
        .expect("allocated");
    let opts = paasgen::day2::setup::render_options(dir.path()).unwrap();
    assert_eq!(
        opts.floating_ip,
        Some(record.address),
        "read from launch.json"
    );
    let (_, docs) = paasgen::day2::setup::render_in_memory_with(&spec, dir.path(), &opts).unwrap();
    let desired = desired::resources(&spec, &docs).unwrap();
    Floating {
        f: Fixture {
            state,
            _dir: dir,
            docs,
            desired,
        },
        spec,
        address: record.address,
    }
}

fn destroy(cloud: &MemoryCloud, desired: &[Resource]) -> anyhow::Result<usize> {
    let names: Vec<(Kind, String)> = desired.iter().map(|r| (r.kind, r.name.clone())).collect();
    rt().block_on(paasgen::commands::cloud::destroy_with(
        cloud,
        "demo",
        &names,
        &|_| {},
    ))
}

#[test]
fn floating_mode_plans_a_router_its_interface_and_a_floating_ip_on_the_vip() {
    let cloud = MemoryCloud::new();
    let fl = floating_fixture(&cloud);
    let f = &fl.f;
    let c = counts(&f.desired);
    for kind in [
        Kind::Router,
        Kind::RouterInterface,
        Kind::FloatingIp,
        Kind::FloatingIpAssociation,
    ] {
        assert_eq!(c[&kind], 1, "{kind}");
    }
    assert_eq!(
        c[&Kind::Port],
        10 + 1,
        "a private port per node and the private VIP"
    );
    let find = |name: &str| spec_of(&f.desired, name);
    assert_eq!(
        find("demo-router"),
        Spec::Router {
            external_network: "public".into()
        }
    );
    assert_eq!(
        find("demo-router-subnet"),
        Spec::RouterInterface {
            router: "demo-router".into(),
            subnet: "demo-subnet".into()
        }
    );
    assert_eq!(
        find("demo-fip-vip-private"),
        Spec::FloatingIpAssociation {
            floating_ip: "demo-fip".into(),
            port: "demo-vip-private".into(),
            router_interface: "demo-router-subnet".into(),
        }
    );
    assert!(
        matches!(find("demo-subnet"), Spec::Subnet { gateway: Some(g), .. } if g.to_string() == "192.168.0.1")
    );
    assert!(
        matches!(find("demo-gw-1-private"), Spec::Port { allowed_address_pairs, .. } if allowed_address_pairs == vec!["192.168.0.5".to_string()]),
        "the router NATs: no 0.0.0.0/0 pair"
    );
    assert!(f
        .desired
        .iter()
        .all(|r| !r.name.ends_with("-public") && r.name != "demo-gateway-nat"));
    // Allocated before the render: the plan keeps it and creates everything else.
    let p = plan_now(&cloud, f);
    let text = p.to_string();
    assert!(text.contains("keep    floating ip demo-fip\n"), "{text}");
    for line in [
        "+ create  router demo-router\n",
        "+ create  router interface demo-router-subnet\n",
        "+ create  floating ip association demo-fip-vip-private\n",
    ] {
        assert!(text.contains(line), "{line}: {text}");
    }
    assert_eq!(p.to_create().count(), f.desired.len() - 1);
    assert!(fl.spec.network.is_floating());
}

#[test]
fn floating_mode_launches_relaunches_with_nothing_to_create_and_destroys_everything() {
    let cloud = MemoryCloud::new();
    let fl = floating_fixture(&cloud);
    let f = &fl.f;
    let outcome = launch(&cloud, f, &fast()).unwrap();
    assert_eq!(
        outcome.created.len(),
        f.desired.len() - 1,
        "all but the floating IP"
    );
    assert!(outcome.failed().is_empty());
    assert_complete_without_duplicates(&cloud, f);
    let state = f.state.load().unwrap().unwrap();
    assert_eq!(state.floating_ip.as_ref().unwrap().address, fl.address);
    assert_eq!(state.nodes["gw-1"].public_ip, None);
    assert_eq!(state.nodes["gw-1"].port_ids.len(), 1);

    // A relaunch finds the same floating IP (same address, same documents) and creates
    // nothing.
    let calls = cloud.create_calls();
    let again = floating_fixture_again(&cloud, f);
    assert_eq!(again, fl.address);
    assert!(launch(&cloud, f, &fast()).unwrap().created.is_empty());
    assert_eq!(cloud.create_calls(), calls);
    assert!(plan_now(&cloud, f).is_empty());

    // Neutron refuses to delete a subnet that has a router interface, and a router with
    // an interface: destroy's order removes the interface first.
    let id = |kind: Kind| {
        cloud
            .resources()
            .into_iter()
            .find(|e| e.kind == kind)
            .unwrap()
            .id
    };
    let rt = rt();
    for kind in [Kind::Subnet, Kind::Router, Kind::RouterInterface] {
        let err = rt.block_on(cloud.delete(kind, &id(kind))).unwrap_err();
        assert!(err.to_string().contains("409"), "{kind}: {err}");
    }
    let deleted = destroy(&cloud, &f.desired).unwrap();
    assert_eq!(deleted, f.desired.len());
    assert_eq!(cloud.resources(), vec![]);
}

/// The floating IP a second `launch` would render with.
fn floating_fixture_again(cloud: &MemoryCloud, f: &Fixture) -> std::net::Ipv4Addr {
    let spec = paasgen::spec::parse("floating.yaml", paasgen::spec::FLOATING_EXAMPLE)
        .unwrap()
        .0;
    let fip = desired::floating_ip(&spec).unwrap().unwrap();
    rt().block_on(paasgen::cloud::apply::floating_ip(
        cloud,
        "demo",
        &fip,
        &f.state,
        &fast(),
        true,
    ))
    .unwrap()
    .unwrap()
    .address
}

#[test]
fn floating_mode_resumes_without_duplicates_whatever_the_step() {
    let total = floating_fixture(&MemoryCloud::new()).f.desired.len() - 1;
    for step in 1..=total {
        for lose_response in [false, true] {
            let cloud = MemoryCloud::new();
            let fl = floating_fixture(&cloud);
            // The floating IP took create call 1.
            if lose_response {
                cloud.lose_create_response(step + 1);
            } else {
                cloud.fail_create_call(step + 1);
            }
            let err = launch(&cloud, &fl.f, &fast()).unwrap_err();
            assert!(format!("{err:#}").contains("injected"), "{err:#}");
            cloud.clear_faults();
            assert!(launch(&cloud, &fl.f, &fast()).unwrap().failed().is_empty());
            assert_complete_without_duplicates(&cloud, &fl.f);
            assert!(plan_now(&cloud, &fl.f).is_empty(), "step {step}");
        }
    }
}

#[test]
fn a_lost_answer_to_the_floating_ip_allocation_allocates_no_second_one() {
    let cloud = MemoryCloud::new();
    cloud.lose_create_response(1);
    let spec = paasgen::spec::parse("floating.yaml", paasgen::spec::FLOATING_EXAMPLE)
        .unwrap()
        .0;
    let dir = tempfile::tempdir().unwrap();
    let fip = desired::floating_ip(&spec).unwrap().unwrap();
    let state = StateFile::new(dir.path());
    let err = rt()
        .block_on(paasgen::cloud::apply::floating_ip(
            &cloud,
            "demo",
            &fip,
            &state,
            &fast(),
            true,
        ))
        .unwrap_err();
    assert!(format!("{err:#}").contains("injected"), "{err:#}");
    assert_eq!(state.load().unwrap(), None, "nothing recorded yet");
    // The next launch finds the one allocated by name.
    let fl = floating_fixture(&cloud);
    let fips: Vec<_> = cloud
        .resources()
        .into_iter()
        .filter(|e| e.kind == Kind::FloatingIp)
        .collect();
    assert_eq!(fips.len(), 1, "{fips:?}");
    assert_eq!(fips[0].address, Some(fl.address));
}
