//! What the VM tests share: a network namespace the test makes (bridges with the
//! platform's gateway addresses, one tap per NIC), a config drive built the way Nova
//! builds one, the choice of accelerator (KVM only if it really boots a stock Debian
//! kernel, else TCG), and QEMU processes that are killed when their guard drops, also
//! on panic. Include it beside `#[path = "common/lab.rs"] mod labkit;`.
#![allow(dead_code)]

use super::labkit::run_ok;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// UEFI firmware of Debian's `ovmf` package (4 MiB flash layout).
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

// ------------------------------------------------------------ namespace ----

/// A network namespace made by the test, deleted on drop. Traffic of the test goes
/// only to addresses inside it.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let name = format!("pimg-{tag}-{}", std::process::id());
        // one left by a killed run of this pid
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        run_ok(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n NS ARGS...`, which must succeed.
    pub fn ip(&self, args: &[&str]) -> String {
        run_ok(Command::new("ip").args(["-n", &self.name]).args(args))
    }

    /// A bridge holding `addr` (CIDR form), up.
    pub fn bridge(&self, name: &str, addr: &str) {
        self.ip(&["link", "add", name, "type", "bridge"]);
        self.ip(&["addr", "add", addr, "dev", name]);
        self.ip(&["link", "set", name, "up"]);
    }

    /// A tap device on `bridge`, up (QEMU opens it by name inside the namespace).
    pub fn tap(&self, name: &str, bridge: &str) {
        self.ip(&["tuntap", "add", name, "mode", "tap"]);
        self.ip(&["link", "set", name, "master", bridge]);
        self.ip(&["link", "set", name, "up"]);
    }

    /// `ip netns exec NS PROGRAM` (a command to add arguments to).
    pub fn exec(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// One ping from the namespace answered within 2 s.
    pub fn ping(&self, addr: &str) -> bool {
        self.exec("ping")
            .args(["-c", "1", "-W", "2", addr])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// A TCP connection from the namespace to `addr:port` is accepted within 3 s.
    pub fn tcp_connects(&self, addr: &str, port: u16) -> bool {
        self.exec("timeout")
            .args([
                "3",
                "bash",
                "-c",
                &format!("exec 3<>/dev/tcp/{addr}/{port}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

// --------------------------------------------------------- config drive ----

/// A NIC as Nova describes it in network_data.json: a port with a fixed address on a
/// subnet without DHCP.
pub struct Nic {
    pub mac: String,
    pub address: String,
    pub prefix: u8,
    /// The subnet's gateway: a default route through it (none: no route, as paasgen's
    /// private subnet).
    pub gateway: Option<String>,
}

fn netmask(prefix: u8) -> String {
    let m: u32 = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    };
    std::net::Ipv4Addr::from(m).to_string()
}

/// network_data.json as Nova writes it for these ports (static IPv4, no DHCP) and the
/// subnets' DNS servers.
pub fn network_data(nics: &[Nic], dns: &[String]) -> serde_json::Value {
    let services: Vec<_> = dns
        .iter()
        .map(|a| serde_json::json!({"type": "dns", "address": a}))
        .collect();
    let links: Vec<_> = nics
        .iter()
        .enumerate()
        .map(|(i, n)| {
            serde_json::json!({
                "id": format!("tap{i}"), "vif_id": format!("port-{i}"), "type": "ovs",
                "mtu": 1500, "ethernet_mac_address": n.mac,
            })
        })
        .collect();
    let networks: Vec<_> = nics
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let routes: Vec<_> = n
                .gateway
                .iter()
                .map(|gw| serde_json::json!({"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": gw}))
                .collect();
            serde_json::json!({
                "id": format!("network{i}"), "type": "ipv4", "link": format!("tap{i}"),
                "ip_address": n.address, "netmask": netmask(n.prefix), "routes": routes,
                "network_id": format!("net-{i}"), "services": services,
            })
        })
        .collect();
    serde_json::json!({"links": links, "networks": networks, "services": services})
}

/// Builds `iso` as Nova's config drive: ISO 9660 labelled `config-2` (genisoimage
/// with Nova's flags) holding `openstack/latest/{meta_data.json,user_data,
/// network_data.json,vendor_data.json,vendor_data2.json}`.
pub struct Instance<'a> {
    pub uuid: &'a str,
    pub name: &'a str,
    pub user_data: &'a [u8],
    pub nics: &'a [Nic],
    pub dns: &'a [String],
}

pub fn config_drive(iso: &Path, inst: &Instance) {
    let Instance {
        uuid,
        name,
        user_data,
        nics,
        dns,
    } = inst;
    let dir = iso.with_extension("d");
    let latest = dir.join("openstack/latest");
    fs::create_dir_all(&latest).unwrap();
    let meta = serde_json::json!({
        "uuid": uuid, "name": name, "hostname": name, "launch_index": 0,
        "availability_zone": "nova", "project_id": "paasgen-test",
        "public_keys": {}, "keys": [], "devices": [], "random_seed": "",
    });
    fs::write(latest.join("meta_data.json"), meta.to_string()).unwrap();
    fs::write(latest.join("user_data"), user_data).unwrap();
    fs::write(
        latest.join("network_data.json"),
        network_data(nics, dns).to_string(),
    )
    .unwrap();
    fs::write(latest.join("vendor_data.json"), "{}").unwrap();
    fs::write(latest.join("vendor_data2.json"), "{}").unwrap();
    // nova/virt/configdrive.py: _make_iso9660
    run_ok(
        Command::new("genisoimage")
            .arg("-o")
            .arg(iso)
            .args(["-ldots", "-allow-lowercase", "-allow-multidot", "-l"])
            .args(["-publisher", "paasgen test", "-quiet", "-J", "-r"])
            .args(["-V", "config-2"])
            .arg(&dir),
    );
}

// ---------------------------------------------------------------- QEMU ----

/// A QEMU process, killed (and reaped) on drop.
pub struct Vm {
    child: Child,
    pub name: String,
    pub serial: PathBuf,
    pub started: Instant,
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Vm {
    /// The serial console so far.
    pub fn console(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.serial).unwrap_or_default()).into_owned()
    }

    /// Polls the console until `pred` holds, the VM exits or `limit` passes.
    pub fn wait_console(&mut self, limit: Duration, pred: impl Fn(&str) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if pred(&self.console()) {
                return true;
            }
            if Instant::now() >= deadline || self.child.try_wait().ok().flatten().is_some() {
                return false;
            }
            thread::sleep(Duration::from_millis(500));
        }
    }
}

/// How the VM's disk, NICs and config drive are laid out: what Nova gives an
/// i440fx guest (virtio disk, virtio NICs at PCI slots 3, 4… so they are ens3,
/// ens4…, the config drive as an IDE CD-ROM).
pub struct VmSpec<'a> {
    pub name: &'a str,
    pub dir: &'a Path,
    /// The image; the VM boots a copy-on-write overlay of it of `disk_gib`.
    pub image: &'a Path,
    pub disk_gib: u32,
    pub config_drive: Option<&'a Path>,
    /// (tap name, MAC) per NIC, in PCI order.
    pub nics: Vec<(String, String)>,
    pub memory_mib: u32,
    pub accel: &'a str,
    pub netns: Option<&'a Netns>,
}

pub fn start_vm(spec: &VmSpec) -> Vm {
    let overlay = spec.dir.join(format!("{}.qcow2", spec.name));
    let vars = spec.dir.join(format!("{}.vars.fd", spec.name));
    let serial = spec.dir.join(format!("{}.serial.log", spec.name));
    let _ = fs::remove_file(&overlay);
    let _ = fs::remove_file(&serial);
    run_ok(
        Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
            .arg(spec.image)
            .arg(&overlay)
            .arg(format!("{}G", spec.disk_gib)),
    );
    fs::copy(OVMF_VARS, &vars).expect("copying the OVMF variable store");
    // setpriv: QEMU is killed when the test's thread goes, even by SIGKILL (no Drop)
    let mut cmd = match spec.netns {
        Some(ns) => ns.exec("setpriv"),
        None => Command::new("setpriv"),
    };
    cmd.args(["--pdeathsig", "KILL", "--", "qemu-system-x86_64"])
        .args(["-name", spec.name, "-machine"])
        .arg(format!("pc,accel={}", spec.accel))
        .args(["-m", &spec.memory_mib.to_string(), "-smp", "1"])
        .args(["-nodefaults", "-no-user-config", "-display", "none"])
        .args(["-monitor", "none", "-no-reboot"])
        .arg("-drive")
        .arg(format!(
            "if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"
        ))
        .arg("-drive")
        .arg(format!(
            "if=pflash,format=raw,unit=1,file={}",
            vars.display()
        ))
        .arg("-drive")
        .arg(format!(
            "if=virtio,format=qcow2,cache=unsafe,file={}",
            overlay.display()
        ))
        .arg("-serial")
        .arg(format!("file:{}", serial.display()));
    if spec.accel == "kvm" {
        cmd.args(["-cpu", "host"]);
    }
    if let Some(iso) = spec.config_drive {
        cmd.arg("-drive").arg(format!(
            "if=ide,media=cdrom,readonly=on,format=raw,file={}",
            iso.display()
        ));
    }
    if spec.nics.is_empty() {
        cmd.args(["-nic", "none"]);
    }
    for (i, (tap, mac)) in spec.nics.iter().enumerate() {
        cmd.arg("-netdev")
            .arg(format!("tap,id=n{i},ifname={tap},script=no,downscript=no"))
            .arg("-device")
            .arg(format!(
                "virtio-net-pci,netdev=n{i},mac={mac},addr={}",
                i + 3
            ));
    }
    let log = fs::File::create(spec.dir.join(format!("{}.qemu.log", spec.name))).unwrap();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("starting qemu-system-x86_64: {e}"));
    Vm {
        child,
        name: spec.name.to_string(),
        serial,
        started: Instant::now(),
    }
}

/// "kvm" when /dev/kvm boots this image's stock Debian kernel (firmware, systemd-boot
/// and the kernel's first lines on the console within 30 s), else "tcg". Some hosts'
/// /dev/kvm (e.g. a PVM flavour inside a VM) opens but cannot run an unmodified guest.
/// Returns the accelerator and why.
pub fn choose_accel(image: &Path, dir: &Path) -> (&'static str, String) {
    if fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        return ("tcg", "/dev/kvm cannot be opened".into());
    }
    let probe_dir = dir.join("kvm-probe");
    fs::create_dir_all(&probe_dir).unwrap();
    let mut vm = start_vm(&VmSpec {
        name: "kvm-probe",
        dir: &probe_dir,
        image,
        disk_gib: 4,
        config_drive: None,
        nics: vec![],
        memory_mib: 512,
        accel: "kvm",
        netns: None,
    });
    let booted = vm.wait_console(Duration::from_secs(30), |c| c.contains("Linux version"));
    drop(vm);
    let qemu_log = fs::read_to_string(probe_dir.join("kvm-probe.qemu.log")).unwrap_or_default();
    let _ = fs::remove_dir_all(&probe_dir);
    if booted {
        ("kvm", "/dev/kvm booted the Debian kernel".into())
    } else {
        let first = qemu_log
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no console output in 30 s");
        (
            "tcg",
            format!("/dev/kvm did not boot the Debian kernel ({first})"),
        )
    }
}
