//! The bootable disk image (`paasgen image build --format qcow2`, images/qcow2) boots
//! under QEMU (UEFI, OVMF) as OpenStack instances would: etcd-1..3 and gw-1 of the
//! bundled example, each with a config drive built as Nova builds one (ISO 9660
//! `config-2`, openstack/latest/{meta_data.json, network_data.json with the fixed
//! addresses and no DHCP, user_data = its document as `paasgen render` writes it}),
//! NICs at PCI slots 3 and 4 (ens3 private, ens4 public) on bridges in a network
//! namespace the test makes. Checks, from the serial console (the image's boot report)
//! and from the namespace: cloud-init done without errors from the ConfigDrive
//! datasource, the fixed addresses, the roles' services, the root filesystem grown to
//! the larger disk, the etcd TLS cluster, keepalived holding both VIPs and haproxy
//! answering on VIP:6443. Prints the bench figures.
//! Also: `paasgen image upload` into the OpenStack lab's Glance (scripts/openstack-lab).
//!
//! KVM is used when /dev/kvm boots the stock Debian kernel, else TCG (it says which).
//! Needs root, qemu-system-x86_64, OVMF, genisoimage; without them it prints why and
//! passes, unless `CI` is set. Run: `cargo nextest run --test image_vm --no-capture`.

mod common;
#[path = "common/lab.rs"]
mod labkit;
#[path = "common/openstack.rs"]
mod oskit;
#[path = "common/vm.rs"]
mod vm;

use labkit::{missing_prerequisite, render_example, repo, run_ok, TempDir};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use vm::*;

/// From a VM's start to its boot report under TCG (1 vCPU each; measured 3-5 min on
/// the shared 2-core machine, one VM or four at once); KVM is far below.
const BOOT_LIMIT: Duration = Duration::from_secs(600);
/// A disk larger than the image's virtual size: growpart must grow into it.
const DISK_GIB: u32 = 4;

fn cannot_run() -> Option<String> {
    if let Some(why) = missing_prerequisite() {
        return Some(why);
    }
    for t in [
        "qemu-system-x86_64",
        "qemu-img",
        "genisoimage",
        "ping",
        "setpriv",
    ] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Some(format!("missing `{t}` (scripts/setup installs it)"));
        }
    }
    if !Path::new(OVMF_CODE).exists() {
        return Some(format!("missing {OVMF_CODE} (package ovmf)"));
    }
    None
}

/// True when the test cannot run here and should pass without running (it says why);
/// under `CI` that is a failure instead.
fn skip() -> bool {
    let Some(why) = cannot_run() else {
        return false;
    };
    assert!(
        std::env::var_os("CI").is_none(),
        "image_vm cannot run in CI: {why}"
    );
    eprintln!("image_vm skipped: {why}");
    true
}

/// `images/qcow2`: the image path and how long it took.
fn build_image() -> (PathBuf, Duration) {
    let t = Instant::now();
    let out = run_ok(&mut Command::new(repo("images/qcow2")));
    let path = PathBuf::from(
        out.lines()
            .last()
            .expect("images/qcow2 printed a path")
            .trim(),
    );
    assert!(path.exists(), "{} does not exist", path.display());
    (path, t.elapsed())
}

/// The lines of the image's boot report (prefix removed).
fn boot_report(console: &str) -> Vec<String> {
    const P: &str = "paasgen-boot-report: ";
    let lines: Vec<String> = console
        .lines()
        .filter_map(|l| l.find(P).map(|i| l[i + P.len()..].trim_end().to_string()))
        .collect();
    let begin = lines.iter().rposition(|l| l == "begin").unwrap_or(0);
    lines[begin..].to_vec()
}

fn report_value<'a>(report: &'a [String], key: &str) -> Option<&'a str> {
    report
        .iter()
        .find_map(|l| l.strip_prefix(key).map(str::trim))
}

/// The namespace of a test: the example's private network (bridge `brpriv`, host side
/// 192.168.0.1, no router: the gateways are the nodes' way out) and public network
/// (bridge `brpub` holding its router address 203.0.113.1).
fn platform_netns(tag: &str) -> Netns {
    let ns = Netns::new(tag);
    ns.bridge("brpriv", "192.168.0.1/24");
    ns.bridge("brpub", "203.0.113.1/24");
    ns
}

/// Boots `node` of the render output `out_dir` as Nova would: its ports (fixed
/// addresses from the manifest, MACs fa:16:3e:0N:..), a config drive with its
/// user-data as rendered, the image as its disk (grown to `DISK_GIB`).
fn boot_node(
    ns: &Netns,
    dir: &Path,
    image: &Path,
    accel: &str,
    out_dir: &Path,
    node: &str,
    memory_mib: u32,
) -> Vm {
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("manifest.json")).unwrap()).unwrap();
    let entry = manifest["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == node)
        .unwrap_or_else(|| panic!("{node} is not in the render's manifest"));
    let public_gateway = manifest["network"]["public_gateway"]
        .as_str()
        .map(str::to_string);
    let last = |ip: &str| ip.rsplit('.').next().unwrap().parse::<u8>().unwrap();
    let mut nics = Vec::new();
    let mut taps = Vec::new();
    for (i, (key, bridge, gateway)) in [
        ("private_ip", "brpriv", None),
        ("public_ip", "brpub", public_gateway),
    ]
    .into_iter()
    .enumerate()
    {
        let Some(ip) = entry[key].as_str() else {
            continue;
        };
        let tap = format!("t{i}-{node}");
        ns.tap(&tap, bridge);
        let mac = format!("fa:16:3e:00:0{i}:{:02x}", last(ip));
        taps.push((tap, mac.clone()));
        nics.push(Nic {
            mac,
            address: ip.to_string(),
            prefix: 24,
            gateway,
        });
    }
    let iso = dir.join(format!("{node}.config-2.iso"));
    let user_data = std::fs::read(out_dir.join(format!("{node}.yaml"))).unwrap();
    let uuid = format!(
        "0b6c2a3e-9d4e-4f2a-8c1a-6a7e2d1f00{:02x}",
        last(entry["private_ip"].as_str().unwrap())
    );
    let dns: Vec<String> = manifest["network"]["dns_servers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|d| d.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    config_drive(
        &iso,
        &Instance {
            uuid: &uuid,
            name: node,
            user_data: &user_data,
            nics: &nics,
            dns: &dns,
        },
    );
    start_vm(&VmSpec {
        name: node,
        dir,
        image,
        disk_gib: DISK_GIB,
        config_drive: Some(&iso),
        nics: taps,
        memory_mib,
        accel,
        netns: Some(ns),
    })
}

/// Waits for the VM's boot report; returns the console and the report's lines.
fn wait_report(vm: &mut Vm, accel: &str) -> (String, Vec<String>) {
    let done = vm.wait_console(BOOT_LIMIT, |c| {
        boot_report(c).last().is_some_and(|l| l == "end")
    });
    let console = vm.console();
    let lines: Vec<&str> = console.lines().collect();
    let tail = lines[lines.len().saturating_sub(80)..].join("\n");
    assert!(
        done,
        "{}: no boot report within {}s ({accel}); console tail:\n{tail}",
        vm.name,
        BOOT_LIMIT.as_secs()
    );
    let report = boot_report(&console);
    (console, report)
}

/// cloud-init done from the config drive without errors, no failed unit, nothing
/// failed on the console.
fn check_report(node: &str, console: &str, report: &[String]) {
    let report_text = report.join("\n");
    assert!(
        report.iter().any(|l| l == "status: done"),
        "{node}: {report_text}"
    );
    let result: serde_json::Value = serde_json::from_str(
        report_value(report, "result.json:").expect("result.json in the report"),
    )
    .expect("result.json is JSON");
    assert_eq!(
        result["v1"]["errors"],
        serde_json::json!([]),
        "{node}: {report_text}"
    );
    let ds = result["v1"]["datasource"].as_str().unwrap_or_default();
    assert!(ds.contains("ConfigDrive"), "{node}: datasource {ds}");
    for bad in ["Traceback", "[FAILED]"] {
        assert!(
            !console.contains(bad),
            "{node}: the console shows {bad}:\n{console}"
        );
    }
    assert_eq!(
        report_value(report, "failed units:"),
        Some(""),
        "{node}: {report_text}"
    );
}

/// The TLS etcd cluster, seen from the namespace with the healthcheck client cert of
/// the state dir: every member healthy, three started. Returns when it is.
fn check_etcd(ns: &Netns, state_dir: &Path) {
    let pki = state_dir.join("pki/etcd");
    let endpoints = "https://192.168.0.10:2379,https://192.168.0.11:2379,https://192.168.0.12:2379";
    let etcdctl = |args: &[&str]| {
        let out = ns
            .exec("env")
            .args([
                "ETCDCTL_API=3",
                "etcdctl",
                "--dial-timeout=3s",
                "--command-timeout=5s",
            ])
            .arg(format!("--endpoints={endpoints}"))
            .arg(format!("--cacert={}", pki.join("ca.crt").display()))
            .arg(format!(
                "--cert={}",
                pki.join("healthcheck-client.crt").display()
            ))
            .arg(format!(
                "--key={}",
                pki.join("healthcheck-client.key").display()
            ))
            .args(args)
            .output()
            .expect("running etcdctl");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let (ok, text) = etcdctl(&["endpoint", "health"]);
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "etcd is not healthy: {text}");
        std::thread::sleep(Duration::from_secs(2));
    }
    let (ok, list) = etcdctl(&["member", "list"]);
    assert!(ok, "etcdctl member list: {list}");
    assert_eq!(
        list.lines().filter(|l| l.contains(", started, ")).count(),
        3,
        "{list}"
    );
}

/// etcd-1..3 and gw-1 of the example, each from its own config drive, on the bridges
/// of one namespace (`PAASGEN_IMAGE_VM_NODES=gw-1` boots the gateway alone: the lean
/// run scripts/bench-image times). Every node: cloud-init done without errors from
/// the ConfigDrive datasource, its fixed address, its role's services active, the
/// root filesystem grown to the larger disk. The etcd members form their TLS cluster;
/// gw-1 holds both VIPs and haproxy accepts on VIP:6443.
#[test]
fn qcow2_boots_platform_from_config_drives() {
    if skip() {
        return;
    }
    let nodes: Vec<String> = match std::env::var("PAASGEN_IMAGE_VM_NODES") {
        Ok(list) => list.split(',').map(str::to_string).collect(),
        Err(_) => ["etcd-1", "etcd-2", "etcd-3", "gw-1"]
            .map(String::from)
            .to_vec(),
    };
    let tmp = TempDir::new("image-vm");
    let out_dir = render_example(env!("CARGO_BIN_EXE_paasgen"), &tmp.0);

    let (image, build_time) = build_image();
    let mtime = |p: &Path| std::fs::metadata(p).unwrap().modified().unwrap();
    let built = mtime(&image);
    let (again, cached_time) = build_image();
    assert_eq!(image, again, "an unchanged recipe gives the same image");
    assert_eq!(
        built,
        mtime(&again),
        "an unchanged recipe rewrote the image"
    );
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(format!("{}.json", image.display()))
            .expect("the manifest next to the qcow2"),
    )
    .expect("the manifest is JSON");
    let qcow2_size = std::fs::metadata(&image).unwrap().len();
    assert_eq!(manifest["size"].as_u64(), Some(qcow2_size), "{manifest}");
    let recipe = manifest["recipe_sha256"].as_str().unwrap().to_string();
    assert!(image.display().to_string().contains(&recipe[..12]));
    for k in [
        "kernel_version",
        "etcd_version",
        "kubernetes_version",
        "recipe_sha256",
    ] {
        assert!(
            manifest["image"][k].is_string(),
            "manifest lacks image.{k}: {manifest}"
        );
    }
    let virtual_size = manifest["virtual_size"].as_u64().unwrap();

    let (accel, why) = choose_accel(&image, &tmp.0);
    eprintln!("image_vm: accelerator {accel}: {why}");

    let ns = platform_netns("vm");
    let render: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("manifest.json")).unwrap()).unwrap();
    let started = Instant::now();
    let mut vms: Vec<Vm> = nodes
        .iter()
        .map(|n| boot_node(&ns, &tmp.0, &image, accel, &out_dir, n, 640))
        .collect();
    let mut boot_time = Duration::ZERO;
    for vm in &mut vms {
        let (console, report) = wait_report(vm, accel);
        boot_time = boot_time.max(vm.started.elapsed());
        let report_text = report.join("\n");
        eprintln!(
            "image_vm: {} boot report after {:.0}s:\n{report_text}",
            vm.name,
            vm.started.elapsed().as_secs_f64()
        );
        check_report(&vm.name, &console, &report);
        let node = render["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == vm.name.as_str())
            .unwrap();
        // fixed addresses from network_data.json
        let addrs = |dev: &str| {
            report
                .iter()
                .find(|l| l.starts_with(&format!("{dev} ")))
                .cloned()
                .unwrap_or_default()
        };
        for (dev, key) in [("ens3", "private_ip"), ("ens4", "public_ip")] {
            if let Some(ip) = node[key].as_str() {
                assert!(
                    addrs(dev).contains(&format!("{ip}/24")),
                    "{}: {dev} lacks {ip}:\n{report_text}",
                    vm.name
                );
                assert!(ns.ping(ip), "{}: {ip} does not answer", vm.name);
            }
        }
        let units: &[&str] = match node["role"].as_str() {
            Some("gateway") => &["keepalived", "haproxy", "nftables"],
            Some("etcd") => &["etcd"],
            _ => &[],
        };
        for unit in units {
            assert_eq!(
                report_value(&report, &format!("unit {unit}:")),
                Some("active"),
                "{}: {report_text}",
                vm.name
            );
        }
        // growpart + resizefs: the root filesystem fills the larger disk
        let root_size: u64 = report_value(&report, "root size:")
            .and_then(|s| s.parse().ok())
            .expect("root size in the report");
        assert!(
            root_size > virtual_size,
            "{}: root filesystem {root_size} B not grown past the image's {virtual_size} B",
            vm.name
        );
    }
    let all_done = started.elapsed();

    if nodes.iter().any(|n| n == "gw-1") {
        // keepalived (alone: gw-2 is not booted) takes both VIPs, haproxy listens
        let deadline = Instant::now() + Duration::from_secs(60);
        while !(ns.ping("192.168.0.5") && ns.ping("203.0.113.10")) {
            assert!(
                Instant::now() < deadline,
                "the VIPs 192.168.0.5 / 203.0.113.10 do not answer"
            );
            std::thread::sleep(Duration::from_secs(1));
        }
        for vip in ["192.168.0.5", "203.0.113.10"] {
            assert!(
                ns.tcp_connects(vip, 6443),
                "haproxy does not accept on {vip}:6443"
            );
        }
    }
    let etcd_nodes = nodes.iter().filter(|n| n.starts_with("etcd-")).count();
    if etcd_nodes == 3 {
        check_etcd(&ns, &tmp.0.join(".paasgen"));
    }
    let etcd_healthy = started.elapsed();
    drop(vms);

    eprintln!(
        "bench image_vm: accel={accel} vms={} build={:.1}s cached={:.2}s boot_to_cloud_init_done={:.1}s all_done={:.1}s{} qcow2={} MiB (virtual {} MiB)",
        nodes.len(),
        build_time.as_secs_f64(),
        cached_time.as_secs_f64(),
        boot_time.as_secs_f64(),
        all_done.as_secs_f64(),
        if etcd_nodes == 3 {
            format!(" etcd_healthy={:.1}s", etcd_healthy.as_secs_f64())
        } else {
            String::new()
        },
        qcow2_size / 1_048_576,
        virtual_size / 1_048_576
    );
}

/// Deletes the uploaded image from the lab's Glance on drop (as the lab's admin).
struct GlanceImage<'a>(&'a oskit::Lab, Option<String>);
impl Drop for GlanceImage<'_> {
    fn drop(&mut self) {
        if let Some(id) = &self.1 {
            let _ = Command::new("openstack")
                .env("OS_CLIENT_CONFIG_FILE", &self.0.clouds)
                .args(["--os-cloud", "lab-admin", "image", "delete", id])
                .status();
        }
    }
}

/// Destroys the cluster launched in `Lab` on drop (as the member who launched it).
struct Destroy<'a>(&'a oskit::Lab);
impl Drop for Destroy<'_> {
    fn drop(&mut self) {
        let _ = self.0.paasgen(&["destroy", "--yes", "--os-cloud", "lab"]);
    }
}

/// The image id in paasgen's "uploaded image ID ..." / "reused image ID ..." line.
fn image_id(out: &str, verb: &str) -> Option<String> {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{verb} image ")))
        .and_then(|r| r.split_whitespace().next())
        .map(str::to_string)
}

#[test]
fn qcow2_upload_to_glance_carries_recipe_and_is_reused() {
    if skip() {
        return;
    }
    let Some(clouds) = oskit::clouds_yaml() else {
        return;
    };
    let lab = oskit::Lab::new(clouds, paasgen::spec::EXAMPLE, "imgup");
    let (image, _) = build_image();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(format!("{}.json", image.display())).unwrap())
            .unwrap();
    let recipe = manifest["recipe_sha256"].as_str().unwrap().to_string();
    // an image of this recipe left by an earlier run would be reused: start clean
    for img in lab
        .admin(&[
            "image",
            "list",
            "--property",
            &format!("paasgen_recipe_sha256={recipe}"),
        ])
        .as_array()
        .unwrap()
    {
        lab.admin_do(&["image", "delete", img["ID"].as_str().unwrap()]);
    }

    let t = Instant::now();
    let (ok, out) = lab.paasgen(&["image", "upload", "--os-cloud", "lab"]);
    let upload_time = t.elapsed();
    assert!(ok, "image upload: {out}");
    let id = image_id(&out, "uploaded").unwrap_or_else(|| panic!("no image id in: {out}"));
    let _cleanup = GlanceImage(&lab, Some(id.clone()));

    // read back through python-openstackclient, not paasgen
    let shown = lab.admin(&["image", "show", &id]);
    assert_eq!(shown["status"], "active", "{shown}");
    assert_eq!(shown["disk_format"], "qcow2", "{shown}");
    let md5 = run_ok(Command::new("md5sum").arg(&image));
    assert_eq!(
        shown["checksum"].as_str(),
        md5.split_whitespace().next(),
        "{shown}"
    );
    let props = &shown["properties"];
    for (k, v) in [
        ("hw_disk_bus", "virtio"),
        ("hw_vif_model", "virtio"),
        ("hw_firmware_type", "uefi"),
        ("os_distro", "debian"),
        ("paasgen_recipe_sha256", recipe.as_str()),
    ] {
        assert_eq!(props[k].as_str(), Some(v), "property {k}: {shown}");
    }

    // the same recipe again: reused, nothing uploaded
    let t = Instant::now();
    let (ok, again) = lab.paasgen(&["image", "upload", "--os-cloud", "lab"]);
    let reuse_time = t.elapsed();
    assert!(ok, "second image upload: {again}");
    assert_eq!(
        image_id(&again, "reused").as_deref(),
        Some(id.as_str()),
        "{again}"
    );
    let same = lab.admin(&[
        "image",
        "list",
        "--property",
        &format!("paasgen_recipe_sha256={recipe}"),
    ]);
    assert_eq!(same.as_array().unwrap().len(), 1, "{same}");

    // launch takes it by id: every server Nova holds boots this image
    let cluster = oskit::Lab::new(
        lab.clouds.clone(),
        paasgen::spec::FLOATING_EXAMPLE,
        "imglaunch",
    );
    let spec_path = cluster.dir.path().join("cluster.yaml");
    let spec = std::fs::read_to_string(&spec_path).unwrap();
    assert!(spec.contains("image: debian-12"), "{spec}");
    std::fs::write(
        &spec_path,
        spec.replacen("image: debian-12", &format!("image: {id}"), 1),
    )
    .unwrap();
    let (ok, out) = cluster.paasgen(&["destroy", "--yes", "--os-cloud", "lab"]);
    assert!(ok, "clearing an earlier run: {out}");
    let _destroy = Destroy(&cluster);
    let report = cluster.launch_json("lab", &[]);
    let nodes = report.as_object().unwrap_or_else(|| panic!("{report}"));
    assert_eq!(nodes.len(), 10, "{report}");
    for (node, n) in nodes {
        let server = lab.admin(&["server", "show", n["server_id"].as_str().unwrap()]);
        assert_eq!(server["status"], "ACTIVE", "{node}: {}", server["status"]);
        // openstackclient shows the image as "name (id)"
        let image = server["image"].as_str().unwrap_or_default();
        assert!(
            image.ends_with(&format!("({id})")),
            "{node} boots {image}, not {id}"
        );
    }
    eprintln!(
        "bench image_vm: glance upload={:.1}s reuse={:.2}s",
        upload_time.as_secs_f64(),
        reuse_time.as_secs_f64()
    );
}
