//! The rendered configs, run through the real programs that will read them on the nodes:
//! cloud-init's schema check, openssl, haproxy, keepalived and nft from Debian.

mod common;

use common::{example_spec, file, files_of, have, is_root, render_in, run};
use std::path::Path;
use std::process::Command;

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn cloud_init_schema_accepts_every_document() {
    if !have("cloud-init") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_, docs) = render_in(&dir.path().join("state"), &example_spec());
    for doc in &docs {
        let path = write(
            dir.path(),
            &format!("{}.yaml", doc.name),
            doc.user_data.as_bytes(),
        );
        let (ok, out) = run(Command::new("cloud-init")
            .args(["schema", "--config-file"])
            .arg(&path));
        assert!(
            ok && out.contains("Valid cloud-config"),
            "{}: {out}",
            doc.name
        );
    }
}

#[test]
fn cloud_init_schema_rejects_a_broken_document() {
    // Shows the check above can fail: a key cloud-init does not know, of the wrong type.
    if !have("cloud-init") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_, docs) = render_in(&dir.path().join("state"), &example_spec());
    let broken = docs[0]
        .user_data
        .replace("ssh_pwauth: false", "ssh_pwauth: [not, a, bool]");
    let path = write(dir.path(), "broken.yaml", broken.as_bytes());
    let (ok, out) = run(Command::new("cloud-init")
        .args(["schema", "--config-file"])
        .arg(&path));
    assert!(!ok, "cloud-init accepted a broken document: {out}");
}

/// `openssl x509 -text` of a certificate: the fields as openssl reads them.
fn x509_text(cert: &Path) -> String {
    let (ok, out) = run(Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(cert));
    assert!(ok, "{out}");
    out
}

fn verify(ca: &Path, cert: &Path) -> (bool, String) {
    run(Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(ca)
        .arg(cert))
}

#[test]
fn etcd_certificates_verify_and_carry_their_usages() {
    if !have("openssl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let spec = example_spec();
    let (_, docs) = render_in(&dir.path().join("state"), &spec);
    for doc in docs.iter().filter(|d| d.name.starts_with("etcd-")) {
        let files = files_of(doc);
        let ca = write(
            dir.path(),
            "ca.crt",
            &file(&files, "/etc/etcd/pki/ca.crt").bytes,
        );
        for (name, ekus) in [
            (
                "server",
                vec![
                    "TLS Web Server Authentication",
                    "TLS Web Client Authentication",
                ],
            ),
            (
                "peer",
                vec![
                    "TLS Web Server Authentication",
                    "TLS Web Client Authentication",
                ],
            ),
            ("healthcheck-client", vec!["TLS Web Client Authentication"]),
        ] {
            let cert = write(
                dir.path(),
                "leaf.crt",
                &file(&files, &format!("/etc/etcd/pki/{name}.crt")).bytes,
            );
            let (ok, out) = verify(&ca, &cert);
            assert!(ok, "{} {name}: {out}", doc.name);
            let text = x509_text(&cert);
            assert!(
                text.contains("Digital Signature, Key Encipherment"),
                "{} {name}: {text}",
                doc.name
            );
            let eku_line = text
                .lines()
                .skip_while(|l| !l.contains("X509v3 Extended Key Usage"))
                .nth(1)
                .unwrap_or_else(|| panic!("{} {name} has no EKU: {text}", doc.name))
                .trim()
                .to_string();
            assert_eq!(eku_line, ekus.join(", "), "{} {name}", doc.name);
            if name != "healthcheck-client" {
                let ip = spec.node(&doc.name).unwrap().private_ip;
                for san in [
                    format!("IP Address:{ip}"),
                    format!("DNS:{}", doc.name),
                    format!("DNS:{}.demo.internal", doc.name),
                    "IP Address:127.0.0.1".into(),
                    "DNS:localhost".into(),
                ] {
                    assert!(
                        text.contains(&san),
                        "{} {name} lacks {san}: {text}",
                        doc.name
                    );
                }
            }
        }
    }
}

#[test]
fn master_material_verifies_and_a_foreign_ca_does_not() {
    if !have("openssl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let spec = example_spec();
    let (_, docs) = render_in(&dir.path().join("state"), &spec);
    let master = files_of(docs.iter().find(|d| d.name == "master-1").unwrap());
    let etcd_ca = write(
        dir.path(),
        "etcd-ca.crt",
        &file(&master, "/etc/paasgen/kubernetes-pki/etcd/ca.crt").bytes,
    );
    let client = write(
        dir.path(),
        "client.crt",
        &file(
            &master,
            "/etc/paasgen/kubernetes-pki/apiserver-etcd-client.crt",
        )
        .bytes,
    );
    let (ok, out) = verify(&etcd_ca, &client);
    assert!(ok, "{out}");
    assert!(x509_text(&client).contains("TLS Web Client Authentication"));
    // The Kubernetes CA did not sign the etcd client: openssl must say so.
    let k8s_ca = write(
        dir.path(),
        "k8s-ca.crt",
        &file(&master, "/etc/paasgen/kubernetes-pki/ca.crt").bytes,
    );
    let (ok, out) = verify(&k8s_ca, &client);
    assert!(!ok, "a foreign CA verified the etcd client: {out}");
    for ca in ["ca.crt", "front-proxy-ca.crt"] {
        let path = write(
            dir.path(),
            ca,
            &file(&master, &format!("/etc/paasgen/kubernetes-pki/{ca}")).bytes,
        );
        let text = x509_text(&path);
        assert!(text.contains("CA:TRUE"), "{ca}: {text}");
        assert!(text.contains("Certificate Sign"), "{ca}: {text}");
    }
    let sa = write(
        dir.path(),
        "sa.key",
        &file(&master, "/etc/paasgen/kubernetes-pki/sa.key").bytes,
    );
    let (ok, out) = run(Command::new("openssl")
        .args(["pkey", "-noout", "-check", "-in"])
        .arg(&sa));
    assert!(ok, "sa.key: {out}");
}

#[test]
fn discovery_hash_matches_openssl() {
    if !have("openssl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (pki, _) = render_in(&dir.path().join("state"), &example_spec());
    let ca = write(dir.path(), "ca.crt", pki.kubernetes_ca.cert_pem.as_bytes());
    // kubeadm's documented way to compute --discovery-token-ca-cert-hash.
    let (ok, out) = run(Command::new("sh").arg("-c").arg(format!(
        "openssl x509 -pubkey -noout -in {} | openssl pkey -pubin -outform der | sha256sum | cut -d' ' -f1",
        ca.display()
    )));
    assert!(ok, "{out}");
    assert_eq!(pki.ca_cert_hash, format!("sha256:{}", out.trim()));
}

fn gateway_file(path: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let (_, docs) = render_in(&dir.path().join("state"), &example_spec());
    let files = files_of(docs.iter().find(|d| d.name == "gw-1").unwrap());
    let name = path.rsplit('/').next().unwrap();
    let out = write(dir.path(), name, &file(&files, path).bytes);
    (dir, out)
}

#[test]
fn haproxy_accepts_the_gateway_config() {
    if !have("haproxy") {
        return;
    }
    let (_dir, cfg) = gateway_file("/etc/haproxy/haproxy.cfg");
    let (ok, out) = run(Command::new("haproxy").arg("-c").arg("-f").arg(&cfg));
    assert!(ok && out.contains("Configuration file is valid"), "{out}");
}

/// Runs `command` in a network namespace holding the gateway's ens3 and ens4, the way
/// the config expects the node; the namespace is removed afterwards.
fn in_gateway_netns(name: &str, command: &[&str]) -> (bool, String) {
    let ns = format!("paasgen-test-{name}-{}", std::process::id());
    let setup = format!(
        "ip netns add {ns} && ip -n {ns} link add ens3 type veth peer name p3 && ip -n {ns} link add ens4 type veth peer name p4"
    );
    let (ok, out) = run(Command::new("sh").arg("-c").arg(&setup));
    let result = if ok {
        run(Command::new("ip")
            .args(["netns", "exec", &ns])
            .args(command))
    } else {
        (false, format!("setting up the namespace: {out}"))
    };
    let _ = Command::new("ip").args(["netns", "del", &ns]).status();
    result
}

#[test]
fn keepalived_accepts_the_gateway_config() {
    if !have("keepalived") || !is_root() {
        assert!(std::env::var_os("CI").is_none(), "CI runs as root");
        return;
    }
    let (_dir, cfg) = gateway_file("/etc/keepalived/keepalived.conf");
    let (ok, out) = in_gateway_netns(
        "ka",
        &[
            "keepalived",
            "--config-test",
            "-l",
            "-f",
            cfg.to_str().unwrap(),
        ],
    );
    assert!(ok, "{out}");
    assert!(!out.contains("WARNING"), "{out}");
}

#[test]
fn nft_accepts_the_nat_rules() {
    if !have("nft") || !is_root() {
        assert!(std::env::var_os("CI").is_none(), "CI runs as root");
        return;
    }
    let (_dir, cfg) = gateway_file("/etc/nftables.conf");
    let (ok, out) = in_gateway_netns("nft", &["nft", "-c", "-f", cfg.to_str().unwrap()]);
    assert!(ok, "{out}");
}

/// The nftables ruleset worker-1's rendered paasgen-leave-load-balancer script loads.
fn leave_rules(dir: &Path) -> String {
    let (_, docs) = render_in(&dir.join("state"), &example_spec());
    let files = files_of(docs.iter().find(|d| d.name == "worker-1").unwrap());
    let script = String::from_utf8(
        file(&files, "/usr/local/sbin/paasgen-leave-load-balancer")
            .bytes
            .clone(),
    )
    .unwrap();
    script
        .split_once("<<NFT\n")
        .and_then(|(_, rest)| rest.split_once("\nNFT\n"))
        .map(|(rules, _)| rules.to_string())
        .expect("the script's ruleset")
}

/// A process killed and reaped when dropped, whatever happens to the test.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Python's HTTP server on `addr:port` in network namespace `ns`, killed on drop.
fn http_server(ns: &str, addr: &str, port: &str) -> Reaped {
    Command::new("ip")
        .args(["netns", "exec", ns, "python3", "-m", "http.server", port])
        .args(["--bind", addr])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map(Reaped)
        .unwrap()
}

/// Network namespaces made by one test, removed (with every process in them) on drop.
struct Namespaces(Vec<String>);

impl Namespaces {
    fn exec(&self, ns: &str, script: &str) -> (bool, String) {
        run(Command::new("ip").args(["netns", "exec", ns, "sh", "-c", script]))
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = Command::new("ip")
                .args(["netns", "pids", ns])
                .output()
                .map(|o| {
                    for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                        let _ = Command::new("kill").arg(pid).status();
                    }
                });
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// The rendered paasgen-leave-load-balancer ruleset, run by nft in a node's namespace
/// between a gateway (haproxy's address) and a pod behind a kube-proxy-like DNAT: new
/// connections from the gateway to the API port and to the NodePort are refused at once
/// (a reset, so haproxy retries elsewhere, not a timeout), a connection opened before
/// is served to its end, and anyone else still gets through.
#[test]
fn leaving_the_load_balancer_refuses_new_connections_only() {
    if !have("nft") || !have("python3") || !is_root() {
        assert!(std::env::var_os("CI").is_none(), "CI runs as root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rules = leave_rules(dir.path());
    let rules_file = write(dir.path(), "leave.nft", rules.as_bytes());

    let tag = std::process::id();
    let (gw, node, pod) = (
        format!("pg-gw-{tag}"),
        format!("pg-node-{tag}"),
        format!("pg-pod-{tag}"),
    );
    let ns = Namespaces(vec![gw.clone(), node.clone(), pod.clone()]);
    // gw-1 (192.168.0.2, a balancer) and a bystander address (192.168.0.40) ---
    // worker-1 (192.168.0.30) --- a pod (10.244.1.2:8080), reached by DNAT of :30080.
    let setup = format!(
        "set -e
        for n in {gw} {node} {pod}; do ip netns add $n; ip -n $n link set lo up; done
        ip link add pgA{tag} netns {gw} type veth peer name pgB{tag} netns {node}
        ip link add pgC{tag} netns {pod} type veth peer name pgD{tag} netns {node}
        ip -n {gw} addr add 192.168.0.2/24 dev pgA{tag}
        ip -n {gw} addr add 192.168.0.40/24 dev pgA{tag}
        ip -n {gw} link set pgA{tag} up
        ip -n {node} addr add 192.168.0.30/24 dev pgB{tag}
        ip -n {node} addr add 10.244.1.1/24 dev pgD{tag}
        ip -n {node} link set pgB{tag} up
        ip -n {node} link set pgD{tag} up
        ip -n {pod} addr add 10.244.1.2/24 dev pgC{tag}
        ip -n {pod} link set pgC{tag} up
        ip -n {pod} route add default via 10.244.1.1
        ip netns exec {node} sysctl -qw net.ipv4.ip_forward=1
        printf 'table ip kubeproxy {{\n chain pre {{\n  type nat hook prerouting priority dstnat;\n  tcp dport 30080 dnat to 10.244.1.2:8080\n }}\n}}\n' | ip netns exec {node} nft -f -"
    );
    let (ok, out) = run(Command::new("sh").arg("-c").arg(&setup));
    assert!(ok, "{out}");
    // An HTTP server where the API server and the pod listen.
    let _api = http_server(&node, "192.168.0.30", "6443");
    let _web = http_server(&pod, "10.244.1.2", "8080");
    let get = |from: &str, port: u16| {
        ns.exec(
            &gw,
            &format!("curl -sS -m 3 --interface {from} -o /dev/null -w '%{{http_code}}' http://192.168.0.30:{port}/"),
        )
    };
    for _ in 0..50 {
        if get("192.168.0.2", 6443).0 && get("192.168.0.2", 30080).0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    for port in [6443, 30080] {
        assert_eq!(
            get("192.168.0.2", port),
            (true, "200".to_string()),
            "before, :{port}"
        );
    }
    // A connection opened before the node leaves, its request sent after.
    let open = Command::new("ip")
        .args(["netns", "exec", &gw, "python3", "-c"])
        .arg(
            "import socket,sys\ns=socket.create_connection(('192.168.0.30',30080),timeout=5)\nsys.stdout.write('open\\n');sys.stdout.flush()\nsys.stdin.readline()\ns.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n')\nprint(s.recv(64).split(b'\\r\\n')[0].decode())",
        )
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut open = open;
    let mut line = String::new();
    use std::io::{BufRead, Write};
    let mut reader = std::io::BufReader::new(open.stdout.take().unwrap());
    reader.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "open");

    let (ok, out) = ns.exec(&node, &format!("nft -f {}", rules_file.display()));
    assert!(ok, "{out}");
    for port in [6443, 30080] {
        let started = std::time::Instant::now();
        let (ok, out) = get("192.168.0.2", port);
        assert!(
            !ok && out.contains("Couldn't connect") && started.elapsed().as_secs_f64() < 1.0,
            "after, :{port} from the gateway: {out} ({:?})",
            started.elapsed()
        );
        assert_eq!(
            get("192.168.0.40", port),
            (true, "200".to_string()),
            "a bystander, :{port}"
        );
    }
    open.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let mut answer = String::new();
    reader.read_line(&mut answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.0 200"),
        "the open connection: {answer}"
    );
    let _ = open.wait();
}

/// A command to haproxy's admin socket `sock`; its answer.
fn haproxy_admin(sock: &Path, command: &str) -> String {
    let (ok, out) = run(Command::new("python3").args([
        "-c",
        "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\ns.sendall(sys.argv[2].encode()+b'\\n')\nprint(s.makefile().read())",
        sock.to_str().unwrap(),
        command,
    ]));
    assert!(ok, "haproxy's admin socket, {command}: {out}");
    out
}

/// `field` of `proxy`/`server`'s row in haproxy's `show stat` CSV.
fn haproxy_stat(stat: &str, proxy: &str, server: &str, field: &str) -> Option<String> {
    let mut lines = stat.lines();
    let header: Vec<&str> = lines.next()?.trim_start_matches("# ").split(',').collect();
    let column = header.iter().position(|h| *h == field)?;
    lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .find(|row| row.first() == Some(&proxy) && row.get(1) == Some(&server))
        .and_then(|row| row.get(column).map(|v| v.to_string()))
}

/// gw-1's rendered haproxy config run by Debian's haproxy in a namespace as gw-1
/// (192.168.0.2), before worker-1 (192.168.0.30) and worker-2 (192.168.0.31), each
/// serving the ingress NodePort. Once both are up, worker-1 stalls between two health
/// checks (its checks paused through the admin socket, then every SYN to its NodePort
/// dropped): each request to :80 is still answered, within 2.5 s, because haproxy
/// passes over worker-1 after its connect timeout (and counts the redispatch) instead
/// of making the client wait out the stall (with the old 5 s it timed out).
#[test]
fn haproxy_passes_over_a_stalled_worker_within_a_second() {
    if !have("haproxy") || !have("nft") || !have("python3") || !is_root() {
        assert!(std::env::var_os("CI").is_none(), "CI runs as root");
        return;
    }
    let (dir, cfg) = gateway_file("/etc/haproxy/haproxy.cfg");
    // The admin socket in the test's directory (a node has /run/haproxy from the unit).
    let sock = dir.path().join("admin.sock");
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(text.contains("/run/haproxy/admin.sock"), "{text}");
    std::fs::write(
        &cfg,
        text.replace("/run/haproxy/admin.sock", sock.to_str().unwrap()),
    )
    .unwrap();

    let tag = std::process::id();
    let (lan, gw, w1, w2) = (
        format!("pg-lan-{tag}"),
        format!("pg-gw-{tag}"),
        format!("pg-w1-{tag}"),
        format!("pg-w2-{tag}"),
    );
    let ns = Namespaces(vec![gw.clone(), w1.clone(), w2.clone(), lan.clone()]);
    let setup = format!(
        "set -e
        for n in {lan} {gw} {w1} {w2}; do ip netns add $n; ip -n $n link set lo up; done
        ip -n {lan} link add br0 type bridge
        ip -n {lan} link set br0 up
        plug() {{
          ip link add pgp$2{tag} netns {lan} type veth peer name ens3 netns $1
          ip -n {lan} link set pgp$2{tag} master br0 up
          ip -n $1 addr add $3/24 dev ens3
          ip -n $1 link set ens3 up
        }}
        plug {gw} g 192.168.0.2
        plug {w1} a 192.168.0.30
        plug {w2} b 192.168.0.31
        ip netns exec {gw} sysctl -qw net.ipv4.ip_nonlocal_bind=1"
    );
    let (ok, out) = run(Command::new("sh").arg("-c").arg(&setup));
    assert!(ok, "{out}");
    let _w1 = http_server(&w1, "192.168.0.30", "30080");
    let _w2 = http_server(&w2, "192.168.0.31", "30080");
    let _haproxy = Command::new("ip")
        .args(["netns", "exec", &gw, "haproxy", "-db", "-f"])
        .arg(&cfg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map(Reaped)
        .unwrap();
    let up = |server: &str| {
        sock.exists()
            && haproxy_stat(
                &haproxy_admin(&sock, "show stat"),
                "workers_http",
                server,
                "status",
            )
            .is_some_and(|s| s == "UP")
    };
    let start = std::time::Instant::now();
    while !(up("worker-1") && up("worker-2")) {
        assert!(
            start.elapsed().as_secs() < 30,
            "the workers never came up in haproxy's checks"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    haproxy_admin(&sock, "disable health workers_http/worker-1");
    let (ok, out) = ns.exec(
        &w1,
        "printf 'table inet stall {\n chain input {\n  type filter hook input priority 0;\n  tcp dport 30080 drop\n }\n}\n' | nft -f -",
    );
    assert!(ok, "{out}");
    let (ok, out) = ns.exec(&gw, "curl -sS -m 1 -o /dev/null http://192.168.0.30:30080/");
    assert!(!ok, "worker-1 does not stall: {out}");

    for i in 0..6 {
        let (ok, out) = ns.exec(
            &gw,
            "curl -sS -m 2.5 -o /dev/null -w '%{http_code} %{time_total}' http://127.0.0.1:80/",
        );
        assert!(
            ok && out.starts_with("200 "),
            "request {i} through :80: {out}"
        );
    }
    let stat = haproxy_admin(&sock, "show stat");
    let redispatched = haproxy_stat(&stat, "workers_http", "BACKEND", "wredis")
        .and_then(|n| n.parse::<u32>().ok())
        .unwrap_or(0);
    assert!(
        redispatched >= 1,
        "haproxy passed over worker-1 for none of the requests:\n{stat}"
    );
    println!("6 requests answered; {redispatched} passed over the stalled worker-1");
}

#[test]
fn nft_accepts_the_leave_load_balancer_rules() {
    if !have("nft") || !is_root() {
        assert!(std::env::var_os("CI").is_none(), "CI runs as root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rules = leave_rules(dir.path());
    assert!(
        rules.contains("tcp dport 6443 ct state new reject"),
        "{rules}"
    );
    assert!(
        rules.contains("ct status dnat ct state new reject"),
        "{rules}"
    );
    let cfg = write(dir.path(), "leave.nft", rules.as_bytes());
    let (ok, out) = in_gateway_netns("leave", &["nft", "-c", "-f", cfg.to_str().unwrap()]);
    assert!(ok, "{out}");
}
