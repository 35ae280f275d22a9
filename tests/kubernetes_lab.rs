//! Kubernetes boots for real: the whole example (2 gateways, 3 etcd, 3 masters, 2
//! workers) as systemd-nspawn nodes of the image `images/bake` makes (Kubernetes,
//! etcd, containerd built from their Go modules, control-plane images imported), each
//! fed its rendered user-data. Checks, through the gateways' public VIP from the lab's
//! "internet": every Node Ready, /readyz, a Deployment behind the ingress NodePort,
//! a pod resolving a Service name through CoreDNS, the API surviving master-1 powered
//! off; that a failed first `kubeadm init` is retried with the PKI intact; and that the
//! gateways booting last (after every master and worker) changes nothing.
//! master-3 boots from a stock image (no containerd, Kubernetes binaries, CNI plugins,
//! image archives or runc): its user-data installs all of it from the site mirror the
//! lab serves in its "internet" (`scripts/lab-mirror`: signed apt repository, release
//! files, registry), named by the spec's `mirrors`, and it still joins.
//! The cluster boots at the release before the image's (images/upgrade-versions'
//! KUBERNETES_UPGRADE_FROM: binaries and images from the mirror, which serves what
//! images/gobuild-kubernetes built) and `paasgen upgrade --to` moves it to the image's
//! release by replacement (step 3b): a minor back is refused with the spec untouched;
//! the run is killed once master-1 was replaced and run again; meanwhile a 10 Hz probe
//! of /readyz through the public VIP and one of a 2-replica Deployment with a PDB
//! behind the ingress count failed requests (none allowed); afterwards every kubelet,
//! every control-plane pod, kube-proxy, CoreDNS and kubeadm-config run the new release.
//! Day 2, run as a user would (`--cloud lab`, from the lab's internet): once kubeadm
//! init's join token has expired (a 6-minute TTL here) and been deleted, master-1 and
//! worker-1 are rebuilt from scratch with tokens minted for them (none left after; a PDB
//! allowing no eviction first holds worker-1's drain, which stops at --wait saying why), and
//! gw-1 (the API polled through the VIP meanwhile); then etcd loses its majority and
//! `paasgen recover` brings it back from a backup, after which the API holds what the
//! backup held (Secrets included, stored encrypted), every API server (master-3 started
//! again) gives the same answer, a new Deployment gets Running pods, and the
//! `kubernetes` Service lists only the masters that run.
//!
//! Needs root and what `paasgen lab` needs; without them it prints why and passes,
//! unless `CI` is set (then it fails). Run: `cargo test --test kubernetes_lab -- --nocapture`.

#[path = "common/lab.rs"]
mod labkit;

use labkit::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const LAB_DIR: &str = "/run/paasgen-lab";

/// Polls `f` every `every` until it returns Some, or panics after `limit` with `what`
/// and the diagnostics `diag` gives.
fn wait_for<T>(
    what: &str,
    limit: Duration,
    every: Duration,
    mut f: impl FnMut() -> Option<T>,
    diag: impl Fn() -> String,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > limit {
            panic!("{what}: not within {}s\n{}", limit.as_secs(), diag());
        }
        std::thread::sleep(every);
    }
}

/// `kubectl` as a user on the internet: from the lab's remote host, through the
/// gateways' public VIP (the address admin.kubeconfig names).
fn kubectl(bin: &Path, kubeconfig: &Path, args: &[&str]) -> Command {
    let mut c = exec("remote", &[bin.to_str().unwrap(), "--request-timeout=10s"]);
    c.arg(format!("--kubeconfig={}", kubeconfig.display()));
    c.args(args);
    c
}

fn try_ok(cmd: &mut Command) -> Option<String> {
    let o = cmd.stdin(Stdio::null()).output().ok()?;
    o.status.success().then(|| text(&o.stdout))
}

fn node_diagnostics(node: &str) -> String {
    let o = exec(
        node,
        &[
            "sh",
            "-c",
            "cloud-init status --long 2>&1 | tail -n 5; \
             echo '--- paasgen-kubeadm'; journalctl -u paasgen-kubeadm --no-pager -o cat | tail -n 40; \
             echo '--- kubelet'; journalctl -u kubelet --no-pager -o cat | grep -E 'E[0-9]{4}|rror' | tail -n 15; \
             echo '--- containerd'; journalctl -u containerd --no-pager -o cat | grep -iE 'level=(error|fatal)' | tail -n 8; \
             echo '--- pods'; crictl --runtime-endpoint unix:///run/containerd/containerd.sock ps -a 2>&1 | tail -n 20",
        ],
    )
    .stdin(Stdio::null())
    .output();
    match o {
        Ok(o) => format!("===== {node}\n{}{}", text(&o.stdout), text(&o.stderr)),
        Err(e) => format!("===== {node}: {e}"),
    }
}

fn diagnostics(nodes: &[&str]) -> String {
    nodes.iter().map(|n| node_diagnostics(n)).collect()
}

/// The gobuild output directory (Kubernetes binaries, kubectl among them).
fn gobuild() -> PathBuf {
    let out = run_ok(&mut Command::new(repo("images/gobuild")));
    PathBuf::from(
        out.lines()
            .last()
            .expect("gobuild prints its output dir")
            .trim(),
    )
}

/// A process killed when dropped, whatever happens to the test.
struct KillOnDrop(Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Holds port 6443 on master-1 so that its first `kubeadm init` fails preflight.
fn block_api_port() -> KillOnDrop {
    exec(
        "master-1",
        &[
            "python3",
            "-c",
            "import socket,time # paasgen-test-blocker\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('0.0.0.0',6443))\ns.listen(1)\ntime.sleep(900)",
        ],
    )
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .map(KillOnDrop)
    .expect("blocker")
}

const WORKLOAD: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: hello, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: hello}}
  template:
    metadata: {labels: {app: hello}}
    spec:
      containers:
        - name: web
          image: docker.io/paasgen-lab/busybox:1
          command: [sh, -c, 'mkdir -p /www && echo "hello from $(hostname)" > /www/index.html && exec httpd -f -p 8080 -h /www']
          ports: [{containerPort: 8080}]
          readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
          # Evicted, it serves on until every node stopped sending it new connections.
          lifecycle: {preStop: {exec: {command: [sleep, "5"]}}}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: hello, namespace: default}
spec:
  minAvailable: 1
  selector: {matchLabels: {app: hello}}
---
apiVersion: v1
kind: Service
metadata: {name: hello, namespace: default}
spec:
  type: NodePort
  selector: {app: hello}
  ports: [{port: 80, targetPort: 8080, nodePort: 30080}]
"#;

/// The example spec using the lab's mirror: `scripts/lab-mirror` writes its `mirrors:`
/// section and, under `kubernetes_sha256:`, the checksums of its Go-built files.
fn with_mirror(spec: String, fragment: &str) -> String {
    let (mirrors, sums) = fragment
        .split_once("kubernetes_sha256:\n")
        .expect("fragment has kubernetes_sha256");
    let sums: String = sums.lines().map(|l| format!("  {l}\n")).collect();
    let spec = spec.replacen(
        "\nkubernetes:\n",
        &format!("\nkubernetes:\n  sha256:\n{sums}"),
        1,
    );
    spec.replacen("\nnodes:\n", &format!("\n{mirrors}\nnodes:\n"), 1)
}

/// What master-3 (stock image) shows of its install: every piece came from the mirror.
fn check_stock_master(fragment: &str) {
    let sum = |name: &str| {
        fragment
            .lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no {name} in the mirror's sums"))
            .to_string()
    };
    let kubeadm = exec_ok("master-3", &["sha256sum", "/usr/local/bin/kubeadm"]);
    assert!(kubeadm.starts_with(&sum("kubeadm")), "{kubeadm}");
    // Helm too: the stock image has none, so it is the mirror's tarball, checked.
    let helm_version = pin("images/versions", "HELM_VERSION");
    let helm = exec_ok(
        "master-3",
        &[
            "sh",
            "-c",
            &format!(
                "helm version --short && sha256sum /var/cache/paasgen/helm-{helm_version}.tar.gz"
            ),
        ],
    );
    assert!(
        helm.starts_with(&format!("v{helm_version}\n")) && helm.contains(&sum("helm")),
        "{helm}"
    );
    let sources = exec_ok(
        "master-3",
        &["cat", "/etc/apt/sources.list.d/paasgen-mirror.sources"],
    );
    assert!(sources.contains("http://198.51.100.10/debian"), "{sources}");
    let runc = exec_ok("master-3", &["apt-cache", "policy", "runc"]);
    assert!(runc.contains("198.51.100.10/debian"), "{runc}");
    let images = exec_ok("master-3", &["crictl", "images", "-o", "json"]);
    for want in [
        "registry.k8s.io/kube-apiserver",
        "ghcr.io/flannel-io/flannel",
    ] {
        assert!(
            images.contains(want),
            "master-3 has no {want} image: {images}"
        );
    }
    let log = std::fs::read_to_string(format!("{LAB_DIR}/mirror-registry.log")).unwrap_or_default();
    let pulls = log.matches("/v2/registry.k8s.io/kube-apiserver/").count();
    assert!(
        pulls > 0,
        "the registry mirror saw no kube-apiserver pull:\n{log}"
    );
    println!(
        "k8s-lab: stock master-3 installed from the mirror: runc from {}, kubeadm {}, {pulls} kube-apiserver registry requests",
        runc.lines().find(|l| l.contains("198.51.100.10")).unwrap_or("").trim(),
        &kubeadm[..12]
    );
}

#[test]
fn kubernetes_boots_from_rendered_user_data() {
    if lab_cannot_run("kubernetes lab test") {
        return;
    }
    let tmp = TempDir::new("k8s-lab");
    let t = Instant::now();
    let mirror = run_ok(&mut Command::new(repo("scripts/lab-mirror")));
    let mirror = PathBuf::from(mirror.lines().last().expect("mirror dir").trim());
    println!(
        "k8s-lab: mirror {} ({:.1}s)",
        mirror.display(),
        t.elapsed().as_secs_f64()
    );
    // The cluster boots at the release before the image's (images/upgrade-versions), whose
    // binaries and images only the mirror has, and is upgraded to the image's in step 3b.
    let mirrored = std::fs::read_to_string(mirror.join("spec.yaml")).unwrap();
    let from_release = std::fs::read_to_string(mirror.join("upgrade-from.yaml")).unwrap();
    let (from_version, from_sums) = from_release
        .strip_prefix("kubernetes_version: ")
        .and_then(|r| r.split_once('\n'))
        .expect("upgrade-from.yaml names its version");
    let fragment = format!(
        "{}{from_sums}",
        mirrored.split("kubernetes_sha256:\n").next().unwrap()
    );
    let to_version = pin("images/versions", "KUBERNETES_VERSION");
    // Join tokens live 6 minutes here: kubeadm init's has expired before the rebuilds.
    let out_dir = render_edited_example(env!("CARGO_BIN_EXE_paasgen"), &tmp.0, |spec| {
        assert!(spec.contains("join_token_ttl_minutes: 1440"));
        let version = format!("  version: {to_version} ");
        assert!(spec.contains(&version));
        with_mirror(spec, &fragment)
            .replacen(
                "join_token_ttl_minutes: 1440",
                "join_token_ttl_minutes: 6",
                1,
            )
            .replacen(&version, &format!("  version: {from_version} "), 1)
            // MariaDB (#21): one replica beside the primary, one pod per worker.
            .replacen(
                "  mariadb:\n    enabled: false\n    replicas: 2 ",
                "  mariadb:\n    enabled: true\n    replicas: 1 ",
                1,
            )
            .replacen("    storage: 8Gi ", "    storage: 1Gi ", 1)
    });
    let kubeconfig = tmp.0.join(".paasgen/admin.kubeconfig");
    let ca_pem = std::fs::read_to_string(tmp.0.join(".paasgen/pki/ca.crt")).unwrap();

    let t = Instant::now();
    let bins = gobuild();
    println!(
        "k8s-lab: binaries {} ({:.1}s)",
        bins.display(),
        t.elapsed().as_secs_f64()
    );
    let kubectl_bin = bins.join("bin/kubectl");
    let kubectl_ok = |args: &[&str]| run_ok(&mut kubectl(&kubectl_bin, &kubeconfig, args));
    let t = Instant::now();
    let image = run_ok(&mut Command::new(repo("images/bake")));
    let image = image.lines().last().unwrap().trim().to_string();
    println!("k8s-lab: image {image} ({:.1}s)", t.elapsed().as_secs_f64());

    run_ok(
        lab()
            .env("PAASGEN_LAB_LOCK_WAIT", "3600")
            .args(["up", "--kubernetes", "-d"])
            .arg(&out_dir)
            .args(["--image", &image, "--stock", "master-3", "--mirror"])
            .arg(&mirror),
    );
    let _guard = LabGuard::new();
    let since = Instant::now();
    let all = [
        "gw-1", "gw-2", "etcd-1", "etcd-2", "etcd-3", "master-1", "master-2", "master-3",
        "worker-1", "worker-2",
    ];
    let kube_nodes = ["master-1", "master-2", "master-3", "worker-1", "worker-2"];

    // 0. The gateways come up last: masters and workers boot without the VIP (no API,
    //    no internet: the release they boot at is on the mirror only) and must wait for
    //    it, whatever the boot order.
    for gw in ["gw-1", "gw-2"] {
        run_ok(lab().args(["stop", gw]));
    }
    let blocker = block_api_port();
    wait_for(
        "master-1 waiting for the mirror with the gateways down",
        Duration::from_secs(300),
        Duration::from_secs(2),
        || {
            let log = try_ok(&mut exec(
                "master-1",
                &["cat", "/var/log/cloud-init-output.log"],
            ))?;
            log.contains("failed; retrying").then_some(())
        },
        || diagnostics(&["master-1"]),
    );
    for gw in ["gw-1", "gw-2"] {
        run_ok(lab().args(["start", gw]));
    }
    println!(
        "k8s-lab: gateways started {:.0}s after the other nodes",
        since.elapsed().as_secs_f64()
    );
    // 1. The first init fails (port 6443 taken) and is retried with the PKI intact.
    let failed = wait_for(
        "master-1's first kubeadm init failing",
        Duration::from_secs(600),
        Duration::from_secs(2),
        || {
            let log = try_ok(&mut exec(
                "master-1",
                &[
                    "journalctl",
                    "-u",
                    "paasgen-kubeadm",
                    "--no-pager",
                    "-o",
                    "cat",
                ],
            ))?;
            log.contains("kubeadm init failed").then_some(log)
        },
        || diagnostics(&["master-1", "etcd-1"]),
    );
    assert!(failed.contains("Port-6443"), "{failed}");
    // nsenter forks into the node's PID namespace: the process to end is inside it.
    exec_ok("master-1", &["pkill", "-f", "paasgen-test-blocker"]);
    drop(blocker);
    println!(
        "k8s-lab: first init failed as arranged at {:.0}s",
        since.elapsed().as_secs_f64()
    );

    // 2. Every Node Ready, seen through the public VIP.
    let ready = wait_for(
        "all 5 Nodes Ready",
        Duration::from_secs(1500),
        Duration::from_secs(5),
        || {
            let out = try_ok(&mut kubectl(
                &kubectl_bin,
                &kubeconfig,
                &["get", "nodes", "-o", "jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type==\"Ready\")].status} {end}"],
            ))?;
            let ready = out
                .split_whitespace()
                .filter(|w| w.ends_with("=True"))
                .count();
            (ready == kube_nodes.len()).then_some(out)
        },
        || diagnostics(&kube_nodes),
    );
    let ready_secs = since.elapsed().as_secs_f64();
    println!("k8s-lab: all Nodes Ready {ready_secs:.0}s after lab up: {ready}");
    check_stock_master(&fragment);
    // kubeadm init's join token is there (step 5 waits for it to expire).
    let init_token =
        std::fs::read_to_string(tmp.0.join(".paasgen/secrets/bootstrap-token")).unwrap();
    let init_id = init_token.trim().split('.').next().unwrap().to_string();
    let tokens = run_ok(&mut kubectl(
        &kubectl_bin,
        &kubeconfig,
        &["get", "secrets", "-n", "kube-system", "-o", "name"],
    ));
    assert!(tokens.contains(&init_id), "kubeadm init's token: {tokens}");
    let readyz = run_ok(&mut kubectl(
        &kubectl_bin,
        &kubeconfig,
        &["get", "--raw", "/readyz"],
    ));
    assert_eq!(readyz.trim(), "ok");
    // The reset after the failed init emptied /etc/kubernetes/pki; what is there now is
    // still the CA paasgen keeps, not one kubeadm made up.
    let on_node = exec_ok("master-1", &["cat", "/etc/kubernetes/pki/ca.crt"]);
    assert_eq!(
        on_node.trim(),
        ca_pem.trim(),
        "master-1's CA is not the one paasgen keeps"
    );
    // `pki show --live` meets every master's serving certificate (kubeadm's own, one year)
    // through the public VIP.
    let out = paasgen_from_internet(
        env!("CARGO_BIN_EXE_paasgen"),
        &tmp.0,
        &["pki", "show", "--live"],
    );
    let shown = text(&out.stdout);
    assert!(out.status.success(), "{shown}{}", text(&out.stderr));
    for master in ["master-1", "master-2", "master-3"] {
        let head = format!("{master}: API server (live, kubeadm's)\n  expires:  ");
        let expiry = shown
            .split_once(&head)
            .map(|(_, rest)| rest.lines().next().unwrap_or_default())
            .unwrap_or_else(|| panic!("pki show --live did not meet {master}:\n{shown}"));
        let days: i64 = expiry
            .split_once("(in ")
            .and_then(|(_, rest)| rest.split_once(" days)"))
            .and_then(|(n, _)| n.parse().ok())
            .unwrap_or_else(|| panic!("{master}: no days left in {expiry:?}"));
        assert!((360..=365).contains(&days), "{master}: {expiry}");
        println!("k8s-lab: pki show --live: {master} serves a certificate that expires {expiry}");
    }

    // 3. A Deployment behind the ingress NodePort answers through the public VIP,
    //    and a pod resolves a Service name through CoreDNS.
    let manifest = tmp.0.join("hello.yaml");
    std::fs::write(&manifest, WORKLOAD).unwrap();
    run_ok(&mut kubectl(
        &kubectl_bin,
        &kubeconfig,
        &["apply", "-f", manifest.to_str().unwrap()],
    ));
    let public_vip = "203.0.113.10";
    let page = wait_for(
        "the Deployment answering on http://PUBLIC_VIP/",
        Duration::from_secs(300),
        Duration::from_secs(3),
        || {
            let body = try_ok(&mut exec(
                "remote",
                &[
                    "curl",
                    "-sf",
                    "--max-time",
                    "5",
                    &format!("http://{public_vip}/"),
                ],
            ))?;
            body.starts_with("hello from hello-").then_some(body)
        },
        || {
            let pods = try_ok(&mut kubectl(
                &kubectl_bin,
                &kubeconfig,
                &["get", "pods", "-A", "-o", "wide"],
            ))
            .unwrap_or_default();
            let taints = try_ok(&mut kubectl(
                &kubectl_bin,
                &kubeconfig,
                &[
                    "get",
                    "nodes",
                    "-o",
                    "custom-columns=NAME:.metadata.name,TAINTS:.spec.taints",
                ],
            ))
            .unwrap_or_default();
            let pods = format!("{pods}\n{taints}");
            format!("{pods}\n{}", diagnostics(&["worker-1", "worker-2"]))
        },
    );
    println!("k8s-lab: ingress through the public VIP: {}", page.trim());
    let pod = run_ok(&mut kubectl(
        &kubectl_bin,
        &kubeconfig,
        &[
            "get",
            "pods",
            "-l",
            "app=hello",
            "-o",
            "jsonpath={.items[0].metadata.name}",
        ],
    ));
    let lookup = wait_for(
        "a pod resolving kubernetes.default through CoreDNS",
        Duration::from_secs(180),
        Duration::from_secs(3),
        || {
            let out = try_ok(&mut kubectl(
                &kubectl_bin,
                &kubeconfig,
                &[
                    "exec",
                    pod.trim(),
                    "--",
                    "nslookup",
                    "kubernetes.default.svc.cluster.local",
                ],
            ))?;
            out.contains("10.96.0.1").then_some(out)
        },
        || {
            try_ok(&mut kubectl(
                &kubectl_bin,
                &kubeconfig,
                &["get", "pods", "-A", "-o", "wide"],
            ))
            .unwrap_or_default()
        },
    );
    let answer = lookup
        .lines()
        .rfind(|l| l.contains("10.96.0.1"))
        .unwrap_or_default();
    println!("k8s-lab: DNS: kubernetes.default.svc.cluster.local -> {answer}");

    // 3a. Storage (#21): a claim on the default StorageClass binds where its pod runs and
    //     the data lands under that node's path from the spec: worker-2 keeps volumes
    //     on /disks (addons.local_path.node_paths), worker-1 on the default path.
    //     Deleting the claims removes the directories (the provisioner's helper pod).
    check_local_path_volumes(&tmp.0, &kubectl_bin, &kubeconfig);
    //     Running master-1's addons unit again changes nothing: every addon says ready,
    //     no workload gets a new generation, no pod is replaced or restarted.
    check_addons_rerun_changes_nothing(&kubectl_bin, &kubeconfig);
    //     Helm, baked in the image, reads the cluster from every master.
    for master in ["master-1", "master-2", "master-3"] {
        let releases = exec_ok(
            master,
            &[
                "helm",
                "list",
                "--all-namespaces",
                "--kubeconfig",
                "/etc/kubernetes/admin.conf",
                "--output",
                "json",
            ],
        );
        assert!(
            releases.contains("\"name\":\"mariadb\"")
                && releases.contains("\"status\":\"deployed\""),
            "helm list on {master}: {releases}"
        );
    }
    println!("k8s-lab: helm lists the mariadb release from every master");
    //     `paasgen status` (#21): all green, each etcd member, Node and addon named.
    let (report, said) = status_until(
        &tmp.0,
        "status all green after boot",
        Duration::from_secs(120),
        |ok, report| ok && red(report).is_empty(),
    );
    for name in [
        "203.0.113.10",
        "gw-1",
        "gw-2",
        "etcd-1",
        "etcd-2",
        "etcd-3",
        "kube-apiserver",
        "master-1",
        "master-2",
        "master-3",
        "worker-1",
        "worker-2",
        "flannel",
        "kube-proxy",
        "coredns",
        "local-path",
        "mariadb",
    ] {
        assert_eq!(checked(&report, name), Some(true), "{name}:\n{said}");
    }
    let leaders = said
        .lines()
        .filter(|l| l.contains("healthy, leader"))
        .count();
    assert_eq!(leaders, 1, "one etcd leader:\n{said}");
    println!(
        "k8s-lab: status green after boot:\n{}",
        text_report(&report)
    );

    // 3c. MariaDB (#21), before the upgrade, which then moves it worker by worker.
    let mariadb_rows = check_mariadb(&tmp.0, &kubectl_bin, &kubeconfig);

    // 3b. Kubernetes upgraded by replacement, the API and the application answering
    //     throughout.
    upgrade_kubernetes(&tmp.0, &kubectl_bin, &kubeconfig, from_version, &to_version);
    //     MariaDB came through both workers' replacement (empty disks) by replication.
    check_mariadb_rows(&tmp.0, &kubectl_bin, &kubeconfig, &mariadb_rows);

    // 4. master-1 powered off: the API still answers through the VIP and takes writes.
    run_ok(lab().args(["stop", "master-1"]));
    let t = Instant::now();
    wait_for(
        "the API answering and writing with master-1 off",
        Duration::from_secs(120),
        Duration::from_secs(2),
        || {
            try_ok(&mut kubectl(
                &kubectl_bin,
                &kubeconfig,
                &["get", "--raw", "/readyz"],
            ))?;
            try_ok(&mut kubectl(
                &kubectl_bin,
                &kubeconfig,
                &[
                    "create",
                    "configmap",
                    "written-without-master-1",
                    "--from-literal=k=v",
                ],
            ))
        },
        || diagnostics(&["master-2", "gw-1"]),
    );
    println!(
        "k8s-lab: API wrote with master-1 off after {:.1}s",
        t.elapsed().as_secs_f64()
    );

    // 5. Day 2, the way a user runs it (from the lab's internet, `--cloud lab`):
    //    master-1, powered off, is rebuilt from scratch and joins the live cluster
    //    instead of initialising a new one; worker-1, running, is drained first.
    // master-1 has been off since step 4: once its Node says so, rebuild must see a
    // kubelet that does not answer (and not wait on a drain that cannot finish).
    wait_for(
        "master-1's Node NotReady",
        Duration::from_secs(120),
        Duration::from_secs(3),
        || {
            let ready = try_ok(&mut kubectl(
                &kubectl_bin,
                &kubeconfig,
                &[
                    "get",
                    "node",
                    "master-1",
                    "-o",
                    "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
                ],
            ))?;
            (ready.trim() != "True").then_some(ready)
        },
        || diagnostics(&["master-2"]),
    );
    // `paasgen status` turns red and names master-1; etcd and the API are still well,
    // and so are the DaemonSets that lost only master-1's pod.
    let (_, said) = status_until(
        &tmp.0,
        "status red naming master-1, etcd, the other masters and the DaemonSets well",
        Duration::from_secs(120),
        |ok, report| {
            !ok && checked(report, "master-1") == Some(false)
                && [
                    "etcd-1",
                    "etcd-2",
                    "etcd-3",
                    "kube-apiserver",
                    "master-2",
                    "master-3",
                    "kube-proxy",
                    "flannel",
                ]
                .iter()
                .all(|name| checked(report, name) == Some(true))
        },
    );
    assert!(
        said.contains("unhealthy: ") && said.contains("master-1"),
        "{said}"
    );
    println!(
        "k8s-lab: status with master-1 off: {}",
        said.lines().last().unwrap_or_default()
    );
    // kubeadm init's join token expires (the spec's 6 minutes) and the controller-manager
    // deletes it: the rebuilds below join with tokens minted for each, deleted after.
    let join_tokens = || {
        try_ok(&mut kubectl(
            &kubectl_bin,
            &kubeconfig,
            &[
                "get",
                "secrets",
                "-n",
                "kube-system",
                "--field-selector=type=bootstrap.kubernetes.io/token",
                "-o",
                "name",
            ],
        ))
    };
    let waited = Instant::now();
    wait_for(
        "kubeadm init's join token expired and deleted",
        Duration::from_secs(480),
        Duration::from_secs(5),
        || (!join_tokens()?.contains(&init_id)).then_some(()),
        || diagnostics(&["master-2"]),
    );
    println!(
        "k8s-lab: kubeadm init's join token {init_id} expired and was deleted (waited {:.0}s for it)",
        waited.elapsed().as_secs_f64()
    );
    // 5a. Both hello pods run on worker-1 now (the upgrade drained worker-2 last). A
    //     disruption budget that allows no eviction holds worker-1's drain: the rebuild
    //     says so, stops at --wait saying why, and deleted nothing (the Node is there,
    //     its minted join token gone); once the budget allows one at a time, the drain
    //     waits for the moved pod to be ready before it evicts the other.
    let hello_nodes = kubectl_ok(&[
        "get",
        "pods",
        "-l",
        "app=hello",
        "-o",
        "jsonpath={.items[*].spec.nodeName}",
    ]);
    assert_eq!(
        hello_nodes.trim(),
        "worker-1 worker-1",
        "hello pods on {hello_nodes}"
    );
    kubectl_ok(&[
        "patch",
        "pdb",
        "hello",
        "--type=merge",
        "-p",
        r#"{"spec":{"minAvailable":2}}"#,
    ]);
    let out = paasgen_from_internet(
        env!("CARGO_BIN_EXE_paasgen"),
        &tmp.0,
        &["rebuild", "worker-1", "--cloud", "lab", "--wait", "30"],
    );
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        !out.status.success()
            && said.contains("kubernetes: waiting to evict default/hello-")
            && said.contains("held by their disruption budgets")
            && said.contains("kubernetes: deleted the join token minted for worker-1")
            && !said.contains("deleting server"),
        "{said}"
    );
    kubectl_ok(&["get", "node", "worker-1"]);
    println!(
        "k8s-lab: a PDB allowing no eviction held worker-1's rebuild: {}",
        said.lines()
            .filter(|l| l.contains("evict") || l.contains("held"))
            .collect::<Vec<_>>()
            .join(" / ")
    );
    kubectl_ok(&[
        "patch",
        "pdb",
        "hello",
        "--type=merge",
        "-p",
        r#"{"spec":{"minAvailable":1}}"#,
    ]);
    // master-1 comes back with one more addon, a broken one (#21): its image is one the
    // mirror lacks.
    let spec_file = tmp.0.join("cluster.yaml");
    let spec_text = std::fs::read_to_string(&spec_file).unwrap();
    std::fs::write(&spec_file, with_broken_addon(&spec_text)).unwrap();
    for (node, drained) in [("master-1", false), ("worker-1", true)] {
        let t = Instant::now();
        let out = rebuild(&tmp.0, node);
        let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(
            out.status.success(),
            "rebuild {node}:\n{said}\n{}",
            diagnostics(&[node])
        );
        assert!(
            said.contains(&format!("kubernetes: {node} joined and Ready")),
            "{said}"
        );
        assert_eq!(
            said.contains(&format!("kubernetes: drained {node}")),
            drained,
            "{said}"
        );
        // One hello pod at a time: the second waits until the first runs elsewhere.
        assert_eq!(
            said.contains("kubernetes: waiting to evict default/hello-"),
            drained,
            "{said}"
        );
        assert!(
            said.contains("kubernetes: minted join token")
                && said.contains(&format!("kubernetes: deleted {node}'s join token")),
            "{said}"
        );
        println!(
            "k8s-lab: rebuilt {node} in {:.0}s: {}",
            t.elapsed().as_secs_f64(),
            said.lines()
                .filter(|l| l.starts_with("kubernetes:"))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    let left = join_tokens().expect("listing join tokens");
    assert_eq!(left.trim(), "", "join tokens left after the rebuilds");
    // 5b. The broken addon fails by its name in cloud-init and in `paasgen status`, and
    //     the others are applied all the same.
    check_broken_addon(&tmp.0);
    std::fs::write(&spec_file, &spec_text).unwrap();
    fix_broken_addon(&tmp.0, &kubectl_bin, &kubeconfig);
    let log = exec_ok(
        "master-1",
        &[
            "journalctl",
            "-u",
            "paasgen-kubeadm",
            "--no-pager",
            "-o",
            "cat",
        ],
    );
    assert!(
        log.contains("etcd already holds cluster demo: joining it"),
        "{log}"
    );
    // (kubeadm join's own output mentions `kubeadm init phase ...`: look for init's.)
    assert!(
        !log.contains("[init] Using Kubernetes version"),
        "the rebuilt master-1 ran kubeadm init:\n{log}"
    );
    let ca_after = exec_ok("master-1", &["cat", "/etc/kubernetes/pki/ca.crt"]);
    assert_eq!(ca_after, ca_pem, "the rebuilt master-1 has another CA");
    let hello = wait_for(
        "the Deployment answering through the VIP after worker-1's rebuild",
        Duration::from_secs(180),
        Duration::from_secs(3),
        || {
            try_ok(lab().args([
                "exec",
                "internet",
                "--",
                "curl",
                "-fsS",
                "--max-time",
                "5",
                "http://203.0.113.10/",
            ]))
        },
        || diagnostics(&["worker-1", "worker-2"]),
    );
    println!("k8s-lab: after the rebuilds: {}", hello.trim());

    // 5c. gw-1 rebuilt from scratch while a user asks the API through the public VIP
    //     every half second: gw-2 holds the VIPs meanwhile.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = {
        let (stop, bin, kubeconfig) = (stop.clone(), kubectl_bin.clone(), kubeconfig.clone());
        std::thread::spawn(move || {
            let (mut ok, mut failed, mut gap) = (0usize, 0usize, 0f64);
            let mut last = Instant::now();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let answered = try_ok(&mut kubectl(
                    &bin,
                    &kubeconfig,
                    &["get", "--raw", "/readyz"],
                ))
                .is_some_and(|r| r.trim() == "ok");
                if answered {
                    gap = gap.max(last.elapsed().as_secs_f64());
                    last = Instant::now();
                    ok += 1;
                } else {
                    failed += 1;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
            (ok, failed, gap.max(last.elapsed().as_secs_f64()))
        })
    };
    let t = Instant::now();
    let out = rebuild(&tmp.0, "gw-1");
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success(),
        "rebuild gw-1:\n{said}\n{}",
        diagnostics(&["gw-1", "gw-2"])
    );
    // Polled on until the new gw-1 serves (and may take the VIPs back) and a bit after.
    wait_for(
        "keepalived and haproxy running on the new gw-1",
        Duration::from_secs(180),
        Duration::from_secs(2),
        || {
            let active = try_ok(&mut exec(
                "gw-1",
                &["systemctl", "is-active", "keepalived", "haproxy"],
            ))?;
            (active.split_whitespace().collect::<Vec<_>>() == ["active", "active"]).then_some(())
        },
        || diagnostics(&["gw-1"]),
    );
    std::thread::sleep(Duration::from_secs(10));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed, gap) = poller.join().unwrap();
    println!(
        "k8s-lab: rebuilt gw-1 in {:.0}s; the API through the VIP meanwhile: {ok} answers, {failed} failed, longest gap {gap:.1}s",
        t.elapsed().as_secs_f64()
    );
    assert!(
        ok > 10 && gap < 10.0,
        "{ok} answers, {failed} failed, longest gap {gap:.1}s"
    );

    // 5d. The gateway holding the VIPs powered off (#21): `paasgen status` turns red and
    //     names it, and says the other one holds the VIP; booted again, it is green.
    let (report, _) = status_until(
        &tmp.0,
        "status to name the VIP's holder",
        Duration::from_secs(60),
        |_, report| vip_holder(report).is_some(),
    );
    let holder = vip_holder(&report).unwrap();
    let other = if holder == "gw-1" { "gw-2" } else { "gw-1" };
    run_ok(lab().args(["stop", &holder]));
    let t = Instant::now();
    let (_, said) = status_until(
        &tmp.0,
        &format!("status red naming {holder} alone, the VIP on {other}"),
        Duration::from_secs(90),
        |ok, report| {
            !ok && vip_holder(report).as_deref() == Some(other) && red(report) == [holder.as_str()]
        },
    );
    // What status says of the VIP is what the kernel of that gateway says.
    let addresses = exec_ok(other, &["ip", "-o", "-4", "addr", "show"]);
    assert!(
        addresses.contains("inet 203.0.113.10/"),
        "status says {other} holds the VIP; its addresses:\n{addresses}"
    );
    assert!(
        said.lines()
            .last()
            .unwrap_or_default()
            .ends_with(&format!("unhealthy: {holder}")),
        "only {holder} is named:\n{said}"
    );
    println!(
        "k8s-lab: status with {holder} off ({:.0}s): VIP held by {other}; {}",
        t.elapsed().as_secs_f64(),
        said.lines().last().unwrap_or_default()
    );
    run_ok(lab().args(["start", &holder]));
    status_until(
        &tmp.0,
        "status green with both gateways",
        Duration::from_secs(180),
        |ok, report| ok && red(report).is_empty(),
    );

    // 6. etcd loses its majority and is recovered from a backup: the API works again,
    //    holds what was written before the backup and not what came after, and the
    //    `kubernetes` Service lists only masters that run (master-3, powered off after
    //    the backup, is in the snapshot's leases and endpoints).
    kubectl_ok(&["create", "configmap", "before-backup", "--from-literal=k=v"]);
    // Secrets reach etcd encrypted (secretbox, the state dir's key), so no backup holds
    // their plaintext.
    const CANARY: &str = "paasgen-plaintext-canary-7c1f";
    kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "encrypted",
        &format!("--from-literal=word={CANARY}"),
    ]);
    let raw = etcdctl(
        "etcd-1",
        "get /registry/secrets/default/encrypted --print-value-only",
    );
    assert!(raw.status.success(), "{}", text(&raw.stderr));
    assert!(
        raw.stdout.starts_with(b"k8s:enc:secretbox:v1:paasgen-1:"),
        "{:?}",
        text(&raw.stdout).chars().take(60).collect::<String>()
    );
    let has = |hay: &[u8], needle: &str| hay.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(
        !has(&raw.stdout, CANARY),
        "etcd holds the Secret in plain text"
    );
    let taken = paasgen_from_internet(env!("CARGO_BIN_EXE_paasgen"), &tmp.0, &["backup", "now"]);
    assert!(taken.status.success(), "{}", text(&taken.stderr));
    let path = text(&taken.stdout)
        .strip_prefix("backup ")
        .and_then(|r| r.split(" (").next().map(str::to_string))
        .expect("the backup's path");
    let backup = std::fs::read(&path).unwrap();
    assert!(
        has(&backup, "k8s:enc:secretbox:v1:paasgen-1:"),
        "no encrypted Secret in {path}"
    );
    assert!(
        !has(&backup, CANARY),
        "{path} holds the Secret in plain text"
    );
    // The members' own snapshots (what their timers copy to Swift) neither.
    exec_ok(
        "etcd-2",
        &["systemctl", "start", "paasgen-etcd-snapshot.service"],
    );
    let timer_copy = exec_ok("etcd-2", &["sh", "-c", "cat \"$(ls -1t /var/backups/etcd/*.db | head -n 1)\" | grep -c paasgen-plaintext-canary || true"]);
    assert_eq!(
        timer_copy.trim(),
        "0",
        "etcd-2's snapshot holds the Secret in plain text"
    );
    println!("k8s-lab: the Secret is k8s:enc:secretbox in etcd, in backup now's file and in a member's snapshot");
    kubectl_ok(&["create", "configmap", "after-backup", "--from-literal=k=v"]);
    run_ok(lab().args(["stop", "master-3"]));
    // One member off: `paasgen status` names it alone of etcd; the API still serves.
    run_ok(lab().args(["stop", "etcd-2"]));
    let (_, said) = status_until(
        &tmp.0,
        "status red naming etcd-2 of etcd, the API serving",
        Duration::from_secs(90),
        |ok, report| {
            !ok && [
                ("etcd-1", true),
                ("etcd-2", false),
                ("etcd-3", true),
                ("kube-apiserver", true),
            ]
            .iter()
            .all(|(name, well)| checked(report, name) == Some(*well))
        },
    );
    println!(
        "k8s-lab: status with etcd-2 off: {}",
        said.lines().last().unwrap_or_default()
    );
    run_ok(lab().args(["remove", "etcd-1"]));
    run_ok(lab().args(["stop", "etcd-3"]));
    // `paasgen status` names the etcd members that no longer answer.
    let (_, said) = status_until(
        &tmp.0,
        "status red naming every etcd member",
        Duration::from_secs(90),
        |ok, report| {
            !ok && ["etcd-1", "etcd-2", "etcd-3"]
                .iter()
                .all(|name| checked(report, name) == Some(false))
        },
    );
    println!(
        "k8s-lab: status with etcd's majority lost: {}",
        said.lines().last().unwrap_or_default()
    );
    let t = Instant::now();
    let out = paasgen_from_internet(
        env!("CARGO_BIN_EXE_paasgen"),
        &tmp.0,
        &["recover", "--cloud", "lab", "--wait", "600"],
    );
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success(),
        "recover:\n{said}\n{}",
        diagnostics(&["etcd-1", "master-1"])
    );
    println!(
        "k8s-lab: recovered in {:.0}s:\n{}",
        t.elapsed().as_secs_f64(),
        said.trim()
    );
    kubectl_ok(&["get", "configmap", "before-backup"]);
    let word = kubectl_ok(&["get", "secret", "encrypted", "-o", "jsonpath={.data.word}"]);
    use base64::Engine;
    let word = base64::engine::general_purpose::STANDARD
        .decode(word.trim())
        .unwrap();
    assert_eq!(word, CANARY.as_bytes(), "the Secret after recover");
    let lost = kubectl(
        &kubectl_bin,
        &kubeconfig,
        &["get", "configmap", "after-backup"],
    )
    .output()
    .unwrap();
    assert!(
        !lost.status.success() && text(&lost.stderr).contains("NotFound"),
        "{}",
        text(&lost.stderr)
    );
    let endpoints = kubectl_ok(&[
        "get",
        "endpoints",
        "kubernetes",
        "-o",
        "jsonpath={.subsets[*].addresses[*].ip}",
    ]);
    let mut endpoints: Vec<&str> = endpoints.split_whitespace().collect();
    endpoints.sort();
    assert_eq!(endpoints, ["192.168.0.20", "192.168.0.21"]);
    // Every API server gives the same answer (none serves a stale watch cache): master-3,
    // powered off since before the recover, is started again and asked too.
    run_ok(lab().args(["start", "master-3"]));
    let masters = [
        ("master-1", "192.168.0.20"),
        ("master-2", "192.168.0.21"),
        ("master-3", "192.168.0.22"),
    ];
    let mut answers = Vec::new();
    for (master, ip) in masters {
        let server = format!("--server=https://{ip}:6443");
        let configmaps = wait_for(
            &format!("{master}'s API server answering after recover"),
            Duration::from_secs(300),
            Duration::from_secs(3),
            || {
                try_ok(&mut exec(
                    master,
                    &[
                        "kubectl",
                        "--kubeconfig=/etc/kubernetes/admin.conf",
                        &server,
                        "--request-timeout=5s",
                        "get",
                        "configmaps",
                        "-n",
                        "default",
                        "-o",
                        "name",
                    ],
                ))
            },
            || diagnostics(&[master]),
        );
        let names: Vec<&str> = configmaps.split_whitespace().collect();
        assert!(
            names.contains(&"configmap/before-backup")
                && !names.contains(&"configmap/after-backup"),
            "{master}'s API server after recover: {names:?}"
        );
        println!("k8s-lab: after recover, {master}'s API server lists {names:?}");
        answers.push(configmaps);
    }
    assert!(
        answers.windows(2).all(|w| w[0] == w[1]),
        "the API servers differ after recover: {answers:?}"
    );
    // Controllers and the scheduler follow the restored state: a new Deployment runs.
    kubectl_ok(&[
        "create",
        "deployment",
        "after-recover",
        "--image=docker.io/paasgen-lab/busybox:1",
        "--replicas=2",
        "--",
        "sleep",
        "3600",
    ]);
    let t = Instant::now();
    wait_for(
        "the Deployment created after recover running 2 pods",
        Duration::from_secs(300),
        Duration::from_secs(3),
        || {
            let phases = try_ok(&mut kubectl(
                &kubectl_bin,
                &kubeconfig,
                &[
                    "get",
                    "pods",
                    "-l",
                    "app=after-recover",
                    "-o",
                    "jsonpath={.items[*].status.phase}",
                ],
            ))?;
            (phases.split_whitespace().collect::<Vec<_>>() == ["Running", "Running"]).then_some(())
        },
        || diagnostics(&["worker-1", "worker-2"]),
    );
    println!(
        "k8s-lab: a Deployment created after recover has 2 Running pods after {:.0}s",
        t.elapsed().as_secs_f64()
    );
    kubectl_ok(&["create", "configmap", "after-recover", "--from-literal=k=v"]);
    println!(
        "k8s-lab: summary: Nodes Ready {ready_secs:.0}s after lab up ({} nodes)",
        all.len()
    );
}

/// `paasgen rebuild NODE --cloud lab`, run from the lab's internet.
/// The spec with an addon whose image no registry of the lab serves, given 30 s to roll
/// out.
fn with_broken_addon(spec: &str) -> String {
    const BROKEN: &str = "  manifests:
    broken:
      timeout_seconds: 30
      manifest: |
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: paasgen-broken, namespace: default}
        spec:
          replicas: 1
          selector: {matchLabels: {app: paasgen-broken}}
          template:
            metadata: {labels: {app: paasgen-broken}}
            spec:
              containers:
                - {name: absent, image: \"docker.io/paasgen/absent:0\"}
";
    let (head, tail) = spec
        .split_once("  local_path:\n")
        .expect("addons.local_path in the spec");
    format!("{head}{BROKEN}  local_path:\n{tail}")
}

/// Step 5b: master-1, rebuilt with the broken addon, applied flannel and local-path;
/// `cloud-init status --long` names the broken one's script, `paasgen status` the addon.
fn check_broken_addon(dir: &Path) {
    let long = wait_for(
        "master-1's cloud-init to finish",
        Duration::from_secs(300),
        Duration::from_secs(3),
        || {
            let long =
                text(&output(&mut exec("master-1", &["cloud-init", "status", "--long"])).stdout);
            (long.contains("status: error") || long.contains("status: done")).then_some(long)
        },
        || diagnostics(&["master-1"]),
    );
    let errors: Vec<&str> = long.lines().filter(|l| l.contains("Runparts")).collect();
    assert!(
        errors.len() == 1
            && errors[0].contains("runcmd-addon-broken")
            && !errors[0].contains("runcmd-addon-flannel")
            && !errors[0].contains("runcmd-addon-local-path"),
        "cloud-init status --long on master-1:\n{long}"
    );
    // The paasgen-addons unit applies them again after cloud-init (and keeps retrying
    // the broken one): flannel and local-path stay ready throughout.
    let states = exec_ok("master-1", &["sh", "-c", "grep -H . /run/paasgen/addons/*"]);
    for addon in ["flannel", "local-path"] {
        assert!(
            states.contains(&format!("/run/paasgen/addons/{addon}:ready")),
            "{states}"
        );
    }
    let (report, said) = status_until(
        dir,
        "status red naming the broken addon alone",
        Duration::from_secs(120),
        |ok, report| !ok && red(report) == ["broken"],
    );
    let detail = report["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "broken"))
        .and_then(|c| c["detail"].as_str())
        .unwrap_or_default()
        .to_string();
    assert!(detail.contains("did not roll out"), "{said}");
    println!(
        "k8s-lab: broken addon: cloud-init says {}; status says broken: {detail}",
        errors[0].trim()
    );
}

/// Takes the broken addon off master-1 (as a rebuild from the fixed spec would) and
/// out of the cluster: its state is forgotten and `paasgen status` no longer names it.
fn fix_broken_addon(dir: &Path, kubectl_bin: &Path, kubeconfig: &Path) {
    exec_ok(
        "master-1",
        &[
            "sh",
            "-c",
            "rm -f /etc/kubernetes/addons/broken.yaml && sed -i '/^broken /d' /etc/kubernetes/addons/list && systemctl restart paasgen-addons.service",
        ],
    );
    run_ok(&mut kubectl(
        kubectl_bin,
        kubeconfig,
        &["delete", "deployment", "paasgen-broken", "-n", "default"],
    ));
    let recorded = run_ok(&mut kubectl(
        kubectl_bin,
        kubeconfig,
        &[
            "get",
            "configmap",
            "paasgen-addons",
            "-n",
            "kube-system",
            "-o",
            "jsonpath={.data}",
        ],
    ));
    assert!(
        !recorded.contains("broken") && recorded.contains("local-path"),
        "{recorded}"
    );
    status_until(
        dir,
        "status no longer naming the broken addon",
        Duration::from_secs(60),
        |_, report| checked(report, "broken").is_none(),
    );
}

/// Step 3a: `systemctl restart paasgen-addons` on master-1 (a oneshot: it returns when the
/// unit has run) leaves every workload and pod as it was.
fn check_addons_rerun_changes_nothing(kubectl_bin: &Path, kubeconfig: &Path) {
    let k = |args: &[&str]| kubectl(kubectl_bin, kubeconfig, args);
    let workloads = "jsonpath={range .items[*]}{.kind}/{.metadata.namespace}/{.metadata.name} generation {.metadata.generation}{\"\\n\"}{end}";
    let pods = "jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name} {.metadata.uid} restarts {.status.containerStatuses[*].restartCount}{\"\\n\"}{end}";
    let seen = || {
        (
            run_ok(&mut k(&["get", "deploy,ds,sts", "-A", "-o", workloads])),
            // the provisioner's short-lived helper pods come and go on their own
            run_ok(&mut k(&[
                "get",
                "pods",
                "-A",
                "--field-selector=status.phase=Running",
                "-o",
                pods,
            ]))
            .lines()
            .filter(|l| !l.contains("/helper-pod-"))
            .collect::<Vec<_>>()
            .join("\n"),
            // Helm's releases, each with its revision
            exec_ok(
                "master-1",
                &[
                    "helm",
                    "list",
                    "-A",
                    "--kubeconfig",
                    "/etc/kubernetes/admin.conf",
                    "-o",
                    "json",
                ],
            ),
        )
    };
    // The boot's own run first: MariaDB's pods may still be seeding.
    let all_ready = || {
        let states = try_ok(&mut exec(
            "master-1",
            &["sh", "-c", "grep -H . /run/paasgen/addons/*"],
        ))?;
        ["flannel", "local-path", "mariadb"]
            .iter()
            .all(|addon| states.contains(&format!("/run/paasgen/addons/{addon}:ready")))
            .then_some(())
    };
    wait_for(
        "every addon ready after boot",
        Duration::from_secs(600),
        Duration::from_secs(3),
        all_ready,
        || {
            try_ok(&mut exec(
                "master-1",
                &["sh", "-c", "grep -H . /run/paasgen/addons/*"],
            ))
            .unwrap_or_default()
        },
    );
    let before = seen();
    exec_ok(
        "master-1",
        &["systemctl", "restart", "paasgen-addons.service"],
    );
    let states = exec_ok("master-1", &["sh", "-c", "grep -H . /run/paasgen/addons/*"]);
    for addon in ["flannel", "local-path", "mariadb"] {
        assert!(
            states.contains(&format!("/run/paasgen/addons/{addon}:ready")),
            "addon {addon} not ready after a re-run:\n{states}"
        );
    }
    let after = seen();
    assert_eq!(before.0, after.0, "a workload changed");
    assert_eq!(before.1, after.1, "a pod was replaced or restarted");
    assert_eq!(before.2, after.2, "a Helm release changed");
    println!(
        "k8s-lab: addons re-run: {} workloads and {} pods unchanged; {}",
        after.0.lines().count(),
        after.1.lines().count(),
        states.trim().replace('\n', ", ")
    );
}

/// `paasgen status --output json` from the lab's internet: whether it exited 0, its
/// report, and everything it said.
fn status(dir: &Path) -> (bool, serde_json::Value, String) {
    let out = paasgen_from_internet(
        env!("CARGO_BIN_EXE_paasgen"),
        dir,
        &["status", "--output", "json"],
    );
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("status --output json is not JSON ({e}):\n{said}"));
    (out.status.success(), report, said)
}

/// Polls `paasgen status` until its exit and report are what `want` expects, and gives
/// that report and what status said; panics after `limit` with the last answer. A
/// cluster settles at its own pace after a node goes or comes (a DaemonSet's pod on
/// a rebuilt node, the API's etcd client on a stopped member): the test waits for the
/// state it names instead of reading one instant.
fn status_until(
    dir: &Path,
    what: &str,
    limit: Duration,
    want: impl Fn(bool, &serde_json::Value) -> bool,
) -> (serde_json::Value, String) {
    let last = std::cell::RefCell::new(String::new());
    wait_for(
        what,
        limit,
        Duration::from_secs(2),
        || {
            let (ok, report, said) = status(dir);
            *last.borrow_mut() = said.clone();
            want(ok, &report).then_some((report, said))
        },
        || format!("status said last:\n{}", last.borrow()),
    )
}

/// The names of the checks the report gives as failed, in its order.
fn red(report: &serde_json::Value) -> Vec<String> {
    report["checks"]
        .as_array()
        .map(|checks| {
            checks
                .iter()
                .filter(|c| c["ok"] == false)
                .filter_map(|c| c["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether the report's check of `name` passed (None: not checked).
fn checked(report: &serde_json::Value, name: &str) -> Option<bool> {
    report["checks"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)
        .and_then(|c| c["ok"].as_bool())
}

/// The gateway `paasgen status` saw answering on the public VIP.
fn vip_holder(report: &serde_json::Value) -> Option<String> {
    report["checks"]
        .as_array()?
        .iter()
        .find(|c| c["kind"] == "vip" && c["ok"] == true)?["detail"]
        .as_str()?
        .strip_prefix("held by ")
        .map(str::to_string)
}

fn text_report(report: &serde_json::Value) -> String {
    let checks = report["checks"].as_array().cloned().unwrap_or_default();
    checks
        .iter()
        .map(|c| {
            format!(
                "  {} {}: {}",
                c["kind"].as_str().unwrap_or("?"),
                c["name"].as_str().unwrap_or("?"),
                c["detail"].as_str().unwrap_or("")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A claim and a pod writing into it, pinned to one worker.
fn volume_writer(name: &str, node: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: {name}, namespace: default}}
spec:
  accessModes: [ReadWriteOnce]
  resources: {{requests: {{storage: 64Mi}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: default}}
spec:
  nodeSelector: {{kubernetes.io/hostname: {node}}}
  restartPolicy: Never
  containers:
    - name: write
      image: docker.io/paasgen-lab/busybox:1
      command: [sh, -c, "echo written-by-{name} > /data/proof"]
      volumeMounts: [{{name: data, mountPath: /data}}]
  volumes: [{{name: data, persistentVolumeClaim: {{claimName: {name}}}}}]
"#
    )
}

/// Step 3a: local-path volumes on worker-2's /disks and worker-1's default path.
fn check_local_path_volumes(dir: &Path, kubectl_bin: &Path, kubeconfig: &Path) {
    let cases = [
        ("data-w1", "worker-1", "/opt/local-path-provisioner"),
        ("data-w2", "worker-2", "/disks"),
    ];
    let manifest = dir.join("volumes.yaml");
    let text: Vec<String> = cases.iter().map(|(n, w, _)| volume_writer(n, w)).collect();
    std::fs::write(&manifest, text.join("---\n")).unwrap();
    let manifest = manifest.to_str().unwrap();
    let k = |args: &[&str]| kubectl(kubectl_bin, kubeconfig, args);
    run_ok(&mut k(&["apply", "-f", manifest]));
    let show = || {
        let objects =
            try_ok(&mut k(&["get", "sc,pvc,pv,pods", "-A", "-o", "wide"])).unwrap_or_default();
        let events = try_ok(&mut k(&["get", "events", "-A", "--sort-by=.lastTimestamp"]))
            .unwrap_or_default();
        let logs = try_ok(&mut k(&[
            "logs",
            "-n",
            "local-path-storage",
            "deploy/local-path-provisioner",
            "--tail=40",
        ]))
        .unwrap_or_default();
        format!("{objects}\n{events}\n{logs}")
    };
    for (name, node, path) in cases {
        wait_for(
            &format!("pod {name} writing into its claim on {node}"),
            Duration::from_secs(300),
            Duration::from_secs(3),
            || {
                let phase = try_ok(&mut k(&[
                    "get",
                    "pod",
                    name,
                    "-o",
                    "jsonpath={.status.phase}",
                ]))?;
                assert_ne!(phase, "Failed", "pod {name} failed:\n{}", show());
                (phase == "Succeeded").then_some(())
            },
            show,
        );
        let claim = run_ok(&mut k(&[
            "get",
            "pvc",
            name,
            "-o",
            "jsonpath={.status.phase} {.spec.storageClassName} {.spec.volumeName}",
        ]));
        let fields: Vec<&str> = claim.split_whitespace().collect();
        assert_eq!(
            fields[..2],
            ["Bound", "local-path"],
            "claim {name}: {claim}"
        );
        // local-path names the directory <volume>_<namespace>_<claim>
        let file = format!("{path}/{}_default_{name}/proof", fields[2]);
        let on_disk = exec_ok(node, &["cat", &file]);
        assert_eq!(
            on_disk.trim(),
            format!("written-by-{name}"),
            "{node}:{file}"
        );
        println!("k8s-lab: storage: claim {name} bound on {node}, {file} holds what its pod wrote");
    }
    run_ok(&mut k(&[
        "delete",
        "-f",
        manifest,
        "--wait=true",
        "--timeout=120s",
    ]));
    for (name, node, path) in cases {
        wait_for(
            &format!("the directory of claim {name} removed from {node}:{path}"),
            Duration::from_secs(180),
            Duration::from_secs(3),
            || {
                let listed = try_ok(&mut exec(node, &["ls", "-1", path]))?;
                (!listed.contains(&format!("_default_{name}"))).then_some(())
            },
            show,
        );
    }
}

fn rebuild(dir: &Path, node: &str) -> std::process::Output {
    paasgen_from_internet(
        env!("CARGO_BIN_EXE_paasgen"),
        dir,
        &["rebuild", node, "--cloud", "lab", "--wait", "600"],
    )
}

/// Runs `cmd` (an `upgrade`), adding each node it replaced, with the seconds from its
/// `[i/n] NODE` line to its `rebuilt NODE` line, to `replaced`; kills it right after
/// the line `kill_after`, if given. Its exit status and stdout lines.
fn follow(
    cmd: &mut Command,
    replaced: &mut Vec<(String, f64)>,
    kill_after: Option<&str>,
) -> (std::process::ExitStatus, Vec<String>) {
    use std::io::BufRead;
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting upgrade");
    let mut said = Vec::new();
    let mut started = Instant::now();
    for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if line.starts_with('[') {
            started = Instant::now();
        }
        if let Some(node) = line.strip_prefix("rebuilt ") {
            replaced.push((node.to_string(), started.elapsed().as_secs_f64()));
        }
        // Stamped, to set beside the probes' failures.
        let now = time_of_day();
        said.push(format!("{now} {line}"));
        if Some(line.as_str()) == kill_after {
            child.kill().unwrap();
            break;
        }
    }
    (child.wait().unwrap(), said)
}

/// The time of day, UTC, as the probes print it.
fn time_of_day() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        % 86_400;
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

/// `NAME=VALUE ` pairs a jsonpath range printed, as pairs.
fn pairs(listed: &str) -> Vec<(String, String)> {
    listed
        .split_whitespace()
        .filter_map(|w| w.split_once('='))
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// The notAfter of the certificate served at each `ip:port`, read with openssl from gw-1.
fn served_not_after(targets: &[&str]) -> Vec<String> {
    targets
        .iter()
        .map(|target| {
            let script = format!(
                "openssl s_client -connect {target} </dev/null 2>/dev/null | openssl x509 -noout -enddate"
            );
            let out = exec_ok("gw-1", &["sh", "-c", &script]);
            out.trim()
                .strip_prefix("notAfter=")
                .unwrap_or_else(|| panic!("{target}: {out}"))
                .to_string()
        })
        .collect()
}

const ETCD_SERVERS: [&str; 3] = [
    "192.168.0.10:2379",
    "192.168.0.11:2379",
    "192.168.0.12:2379",
];
const API_SERVERS: [&str; 3] = [
    "192.168.0.20:6443",
    "192.168.0.21:6443",
    "192.168.0.22:6443",
];

/// Step 3b: `paasgen upgrade --to TO --renew-within 900` from FROM (every certificate
/// expires within 900 days: paasgen's leaves are re-issued, the etcd members and masters
/// replaced), killed once master-1 was replaced and run again; a 10 Hz probe of /readyz
/// through the public VIP and one of the ingress (a 2-replica Deployment with a PDB)
/// count failed requests throughout. Then every kubelet, control-plane pod, kube-proxy,
/// CoreDNS and kubeadm-config run TO, and every etcd member and API server serves a
/// certificate with a new notAfter.
fn upgrade_kubernetes(dir: &Path, kubectl_bin: &Path, kubeconfig: &Path, from: &str, to: &str) {
    let kubectl_ok = |args: &[&str]| run_ok(&mut kubectl(kubectl_bin, kubeconfig, args));
    let spec_file = dir.join("cluster.yaml");
    let paasgen = env!("CARGO_BIN_EXE_paasgen");
    let kubelets = || {
        pairs(&kubectl_ok(&[
            "get",
            "nodes",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.status.nodeInfo.kubeletVersion} {end}",
        ]))
    };
    // What launch records of the servers the lab booted is what upgrade compares with.
    let launched = run_ok(
        Command::new(paasgen)
            .args(["launch", "--cloud", "lab", "-f"])
            .arg(&spec_file)
            .env("PAASGEN_HOME", repo("")),
    );
    assert!(
        launched.lines().filter(|l| l.contains("ACTIVE")).count() >= 10,
        "{launched}"
    );
    let spec_before = std::fs::read(&spec_file).unwrap();
    let before = kubelets();
    assert!(
        before.len() == 5 && before.iter().all(|(_, v)| *v == format!("v{from}")),
        "kubelets before the upgrade: {before:?}"
    );

    // Refused before any change: a minor back.
    let minor: u32 = from.split('.').nth(1).unwrap().parse().unwrap();
    let down = format!("1.{}.1", minor - 1);
    let out = paasgen_from_internet(paasgen, dir, &["upgrade", "--cloud", "lab", "--to", &down]);
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        !out.status.success() && said.contains("is a downgrade"),
        "{said}"
    );
    assert_eq!(
        std::fs::read(&spec_file).unwrap(),
        spec_before,
        "the spec changed"
    );
    println!("k8s-lab: upgrade --to {down} refused: {}", said.trim());

    let etcd_before = served_not_after(&ETCD_SERVERS);
    let api_before = served_not_after(&API_SERVERS);
    let api = Probe::start("https://203.0.113.10:6443/readyz");
    let app = Probe::start("http://203.0.113.10/");
    std::thread::sleep(Duration::from_secs(3));
    let t = Instant::now();
    // Killed right after master-1 was replaced.
    let mut first = paasgen_in_internet(
        paasgen,
        dir,
        &[
            "upgrade",
            "--cloud",
            "lab",
            "--to",
            to,
            "--renew-within",
            "900",
            "--wait",
            "600",
        ],
    );
    let mut replaced = Vec::new();
    let (status, said) = follow(&mut first, &mut replaced, Some("rebuilt master-1"));
    assert!(
        said.iter().any(|l| l.ends_with(" rebuilt master-1")) && !status.success(),
        "the first upgrade run ({status}):\n{}",
        said.join("\n")
    );
    println!(
        "k8s-lab: upgrade killed after master-1 was replaced ({:.0}s):\n{}",
        t.elapsed().as_secs_f64(),
        said.join("\n")
    );
    // Run again: it goes on from where it was.
    let mut again = paasgen_in_internet(
        paasgen,
        dir,
        &["upgrade", "--cloud", "lab", "--wait", "600"],
    );
    let (status, said) = follow(&mut again, &mut replaced, None);
    let whole = t.elapsed().as_secs_f64();
    assert!(
        status.success(),
        "the upgrade run again ({status}):\n{}\n{}",
        said.join("\n"),
        diagnostics(&["master-1", "master-2", "worker-1"])
    );
    std::thread::sleep(Duration::from_secs(3));
    let Probed {
        answers: api_ok,
        failures: api_failed,
        gap: api_gap,
        failed: api_failures,
        ..
    } = api.stop();
    let Probed {
        answers: app_ok,
        failures: app_failed,
        gap: app_gap,
        failed: app_failures,
        ..
    } = app.stop();
    println!("k8s-lab: upgrade run again:\n{}", said.join("\n"));
    assert!(
        !said.iter().any(|l| l.contains("master-1")),
        "master-1 was replaced again:\n{}",
        said.join("\n")
    );
    let names: Vec<&str> = replaced.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "etcd-1", "etcd-2", "etcd-3", "master-1", "master-2", "master-3", "worker-1",
            "worker-2"
        ]
    );
    let mut secs: Vec<f64> = replaced.iter().map(|(_, s)| *s).collect();
    secs.sort_by(f64::total_cmp);
    println!(
        "k8s-lab: UPGRADE {from} -> {to}: {whole:.0}s for {} nodes (each {:.0}/{:.0}/{:.0}s min/median/max: {}); /readyz through the VIP: {api_ok} answers, {api_failed} failed, longest gap {api_gap:.2}s; the application through the ingress: {app_ok} answers, {app_failed} failed, longest gap {app_gap:.2}s",
        replaced.len(),
        secs[0],
        secs[secs.len() / 2],
        secs[secs.len() - 1],
        replaced
            .iter()
            .map(|(n, s)| format!("{n} {s:.0}s"))
            .collect::<Vec<_>>()
            .join(", ")
    );

    // Every kubelet, and what the control-plane pods run (their containers' images).
    let after = kubelets();
    assert!(
        after.len() == 5 && after.iter().all(|(_, v)| *v == format!("v{to}")),
        "kubelets after the upgrade: {after:?}"
    );
    let running = pairs(&kubectl_ok(&[
        "get",
        "pods",
        "-n",
        "kube-system",
        "-l",
        "tier=control-plane",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name}={.status.containerStatuses[0].image} {end}",
    ]));
    assert_eq!(running.len(), 9, "{running:?}");
    assert!(
        running
            .iter()
            .all(|(_, image)| image.ends_with(&format!(":v{to}"))),
        "control-plane pods: {running:?}"
    );
    let coredns = format!(
        "registry.k8s.io/coredns/coredns:v{}",
        pin("images/versions", "COREDNS_VERSION")
    );
    for (label, image) in [
        (
            "k8s-app=kube-proxy",
            format!("registry.k8s.io/kube-proxy:v{to}"),
        ),
        ("k8s-app=kube-dns", coredns),
    ] {
        let pods = pairs(&kubectl_ok(&[
            "get",
            "pods",
            "-n",
            "kube-system",
            "-l",
            label,
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.status.containerStatuses[0].image} {end}",
        ]));
        assert!(
            !pods.is_empty() && pods.iter().all(|(_, i)| *i == image),
            "{label}: {pods:?}, want {image}"
        );
    }
    let config = kubectl_ok(&[
        "get",
        "configmap",
        "kubeadm-config",
        "-n",
        "kube-system",
        "-o",
        "jsonpath={.data.ClusterConfiguration}",
    ]);
    assert!(
        config.contains(&format!("kubernetesVersion: v{to}")),
        "{config}"
    );
    println!(
        "k8s-lab: after the upgrade: kubelets {after:?}; control plane {running:?}; kube-proxy and CoreDNS at kubeadm {to}'s images; kubeadm-config says v{to}"
    );
    let etcd_after = served_not_after(&ETCD_SERVERS);
    let api_after = served_not_after(&API_SERVERS);
    for (what, before, after) in [
        ("etcd", &etcd_before, &etcd_after),
        ("API", &api_before, &api_after),
    ] {
        assert!(
            before.iter().zip(after).all(|(b, a)| b != a),
            "{what} server certificates' notAfter before {before:?}, after {after:?}"
        );
    }
    println!(
        "k8s-lab: certificates renewed: etcd servers {etcd_before:?} -> {etcd_after:?}; API servers {api_before:?} -> {api_after:?}"
    );
    assert_eq!(
        (api_failed, app_failed),
        (0, 0),
        "failed requests during the upgrade: /readyz {api_failed} (of {}), application {app_failed} (of {})\n/readyz: {api_failures:?}\napplication: {app_failures:?}",
        api_ok + api_failed,
        app_ok + app_failed
    );
}

/// SQL through `kubectl exec` in `pod`'s mariadb container, to `host` (a Service name,
/// or 127.0.0.1 for the pod itself) as root; the output, or why it failed.
fn mariadb_sql(
    kubectl_bin: &Path,
    kubeconfig: &Path,
    password: &str,
    pod: &str,
    host: &str,
    sql: &str,
) -> Result<String, String> {
    let o = kubectl(
        kubectl_bin,
        kubeconfig,
        &[
            "exec",
            "-n",
            "mariadb",
            pod,
            "-c",
            "mariadb",
            "--",
            "env",
            &format!("MYSQL_PWD={password}"),
            "mariadb",
            "--no-defaults",
            "--connect-timeout=5",
            "-uroot",
            "-h",
            host,
            "-N",
            "-B",
            "-e",
            sql,
        ],
    )
    .stdin(Stdio::null())
    .output()
    .map_err(|e| e.to_string())?;
    if o.status.success() {
        Ok(text(&o.stdout))
    } else {
        Err(format!("{}{}", text(&o.stdout), text(&o.stderr)))
    }
}

/// The pods of the MariaDB release labelled `role` by their electors.
fn mariadb_pods(kubectl_bin: &Path, kubeconfig: &Path, role: &str) -> Vec<String> {
    try_ok(&mut kubectl(
        kubectl_bin,
        kubeconfig,
        &[
            "get",
            "pods",
            "-n",
            "mariadb",
            "-l",
            &format!("paasgen.io/mariadb-role={role}"),
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ],
    ))
    .map(|s| s.split_whitespace().map(String::from).collect())
    .unwrap_or_default()
}

/// Waits until the StatefulSet has `want` ready pods, one of them labelled primary; gives
/// the primary's name.
fn mariadb_settled(kubectl_bin: &Path, kubeconfig: &Path, want: usize, what: &str) -> String {
    wait_for(
        what,
        Duration::from_secs(600),
        Duration::from_secs(3),
        || {
            let ready = try_ok(&mut kubectl(
                kubectl_bin,
                kubeconfig,
                &[
                    "get",
                    "sts",
                    "-n",
                    "mariadb",
                    "mariadb",
                    "-o",
                    "jsonpath={.status.readyReplicas}",
                ],
            ))?;
            let primaries = mariadb_pods(kubectl_bin, kubeconfig, "primary");
            let replicas = mariadb_pods(kubectl_bin, kubeconfig, "replica");
            (ready.trim() == want.to_string() && primaries.len() == 1 && replicas.len() == want - 1)
                .then(|| primaries[0].clone())
        },
        || {
            let k = |args: &[&str]| {
                try_ok(&mut kubectl(kubectl_bin, kubeconfig, args)).unwrap_or_default()
            };
            format!(
                "{}\n{}\n{}",
                k(&[
                    "get",
                    "pods,pvc",
                    "-n",
                    "mariadb",
                    "-o",
                    "wide",
                    "--show-labels"
                ]),
                k(&["get", "events", "-n", "mariadb", "--sort-by=.lastTimestamp"]),
                k(&[
                    "logs",
                    "-n",
                    "mariadb",
                    "-l",
                    "app.kubernetes.io/name=mariadb",
                    "--all-containers",
                    "--tail=20",
                    "--prefix"
                ]),
            )
        },
    )
}

/// The ids in lab.t, as `pod` sees them itself; None while it cannot answer.
fn mariadb_ids(
    kubectl_bin: &Path,
    kubeconfig: &Path,
    password: &str,
    pod: &str,
) -> Option<Vec<u64>> {
    let seen = mariadb_sql(
        kubectl_bin,
        kubeconfig,
        password,
        pod,
        "127.0.0.1",
        "SELECT id FROM lab.t ORDER BY id",
    )
    .ok()?;
    seen.lines().map(|l| l.trim().parse().ok()).collect()
}

/// Step 3c (#21): the MariaDB release the first master installed at boot. A row written
/// through the write Service is read through the read Service from a replica; a deleted
/// replica comes back with every row written meanwhile; a replica added after the
/// primary's binlogs were purged seeds itself from a mariadb-backup stream; the primary
/// lost with its node: a replica takes over within 60 s and no acknowledged write is
/// missing.
fn check_mariadb(dir: &Path, kubectl_bin: &Path, kubeconfig: &Path) -> Vec<u64> {
    let password = mariadb_password(dir);
    let sql = |pod: &str, host: &str, q: &str| {
        mariadb_sql(kubectl_bin, kubeconfig, &password, pod, host, q)
    };
    let ids = |pod: &str| mariadb_ids(kubectl_bin, kubeconfig, &password, pod);
    let k = |args: &[&str]| run_ok(&mut kubectl(kubectl_bin, kubeconfig, args));
    let primary = mariadb_settled(kubectl_bin, kubeconfig, 2, "MariaDB 2/2 ready, one primary");
    let replica = mariadb_pods(kubectl_bin, kubeconfig, "replica").remove(0);
    let release = exec_ok(
        "master-1",
        &[
            "helm",
            "list",
            "-n",
            "mariadb",
            "--kubeconfig",
            "/etc/kubernetes/admin.conf",
            "-o",
            "json",
        ],
    );
    assert!(release.contains("\"status\":\"deployed\""), "{release}");
    println!(
        "k8s-lab: mariadb: {primary} primary, {replica} replica; {}",
        release.trim()
    );

    // Written through the write Service, read through the read Service (a replica).
    sql(&replica, "mariadb", "CREATE DATABASE lab; CREATE TABLE lab.t (id INT PRIMARY KEY, at VARCHAR(32)); INSERT INTO lab.t VALUES (1, NOW(6))")
        .unwrap_or_else(|e| panic!("writing through the write Service: {e}"));
    let last = std::cell::RefCell::new(Err(String::new()));
    let read = wait_for(
        "row 1 through the read Service",
        Duration::from_secs(60),
        Duration::from_secs(1),
        || {
            let answer = sql(
                &primary,
                "mariadb-read",
                // Apart: in a statement that reads a table MariaDB 10.11 shows
                // @@read_only as 0 (seen on a read-only server, also with @@global.).
                "SELECT @@hostname, @@global.read_only; SELECT COUNT(*) FROM lab.t WHERE id = 1",
            );
            let ok = answer
                .as_ref()
                .ok()
                .filter(|r| r.trim().ends_with("\t1\n1"))
                .cloned();
            *last.borrow_mut() = answer;
            ok
        },
        || {
            format!(
                "last answer: {:?}\n{replica}: {:?}",
                last.borrow(),
                sql(&replica, "127.0.0.1", "SHOW SLAVE STATUS\\G")
            )
        },
    );
    assert!(
        read.starts_with(&replica),
        "the read Service answered from {read}"
    );
    println!(
        "k8s-lab: mariadb: row 1 written through `mariadb`, read through `mariadb-read` from {}",
        read.trim()
    );

    // A replica deleted: it comes back with every row written while it was away.
    let uid_of = |pod: &str| {
        try_ok(&mut kubectl(
            kubectl_bin,
            kubeconfig,
            &[
                "get",
                "pod",
                "-n",
                "mariadb",
                pod,
                "-o",
                "jsonpath={.metadata.uid}",
            ],
        ))
    };
    let old_uid = uid_of(&replica);
    k(&["delete", "pod", "-n", "mariadb", &replica, "--wait=false"]);
    let t = Instant::now();
    for id in 2..=5 {
        sql(
            &primary,
            "mariadb",
            &format!("INSERT INTO lab.t VALUES ({id}, NOW(6))"),
        )
        .unwrap_or_else(|e| panic!("writing {id} with the replica away: {e}"));
    }
    println!(
        "k8s-lab: mariadb: rows 2-5 written in {:.1}s with {replica} deleted",
        t.elapsed().as_secs_f64()
    );
    wait_for(
        "the deleted replica's pod replaced",
        Duration::from_secs(120),
        Duration::from_secs(1),
        || uid_of(&replica).filter(|uid| Some(uid) != old_uid.as_ref()),
        String::new,
    );
    mariadb_settled(kubectl_bin, kubeconfig, 2, "the deleted replica back");
    wait_for(
        "rows 1-5 on the returned replica",
        Duration::from_secs(60),
        Duration::from_secs(1),
        || (ids(&replica)? == [1, 2, 3, 4, 5]).then_some(()),
        String::new,
    );
    println!("k8s-lab: mariadb: {replica} came back with rows 1-5");

    // The primary's binlogs purged, then one more replica: it cannot replay from the
    // start, so it seeds from a backup stream of the primary.
    let logs = sql(
        &primary,
        "127.0.0.1",
        "FLUSH BINARY LOGS; SHOW MASTER STATUS",
    )
    .unwrap();
    let current = logs
        .split_whitespace()
        .next()
        .expect("a binlog file")
        .to_string();
    // MariaDB keeps a binlog a replica still reads (it only warns): purge until its
    // dump thread has moved on to the current one.
    let kept = wait_for(
        "binlogs before the current one purged",
        Duration::from_secs(60),
        Duration::from_secs(1),
        || {
            sql(
                &primary,
                "127.0.0.1",
                &format!("PURGE BINARY LOGS TO '{current}'; SHOW BINARY LOGS"),
            )
            .ok()
            .filter(|logs| logs.starts_with(&current))
        },
        || sql(&primary, "127.0.0.1", "SHOW BINARY LOGS").unwrap_or_else(|e| e),
    );
    sql(
        &primary,
        "127.0.0.1",
        "INSERT INTO lab.t VALUES (6, NOW(6))",
    )
    .unwrap();
    k(&["scale", "sts", "-n", "mariadb", "mariadb", "--replicas=3"]);
    mariadb_settled(
        kubectl_bin,
        kubeconfig,
        3,
        "a third MariaDB pod seeded and replicating",
    );
    wait_for(
        "rows 1-6 on mariadb-2",
        Duration::from_secs(60),
        Duration::from_secs(1),
        || (ids("mariadb-2")? == [1, 2, 3, 4, 5, 6]).then_some(()),
        String::new,
    );
    let seed = k(&["logs", "-n", "mariadb", "mariadb-2", "-c", "seed"]);
    assert!(seed.contains("seeded from a backup"), "{seed}");
    println!(
        "k8s-lab: mariadb: binlogs purged to {current} ({} kept); mariadb-2 added: {}",
        kept.lines().count(),
        seed.lines()
            .filter(|l| l.contains("seed"))
            .collect::<Vec<_>>()
            .join("; ")
    );
    // Back to one pod per worker (an upgrade drains them one at a time, and a pod on a
    // drained worker waits for it: its volume is there).
    k(&["scale", "sts", "-n", "mariadb", "mariadb", "--replicas=2"]);
    mariadb_settled(kubectl_bin, kubeconfig, 2, "MariaDB back to 2 pods");
    k(&[
        "delete",
        "pvc",
        "-n",
        "mariadb",
        "data-mariadb-2",
        "--wait=true",
    ]);

    // The primary lost with its node: a writer on the other worker counts the outage.
    let primary = mariadb_pods(kubectl_bin, kubeconfig, "primary").remove(0);
    let node_of = |pod: &str| {
        k(&[
            "get",
            "pod",
            "-n",
            "mariadb",
            pod,
            "-o",
            "jsonpath={.spec.nodeName}",
        ])
        .trim()
        .to_string()
    };
    let (lost, survivor_pod) = (
        node_of(&primary),
        mariadb_pods(kubectl_bin, kubeconfig, "replica").remove(0),
    );
    let survivor = node_of(&survivor_pod);
    assert_ne!(lost, survivor, "both MariaDB pods on {lost}");
    let writer = r#"i=1000; while [ $i -lt 5000 ]; do
        if mariadb --no-defaults --connect-timeout=1 -uroot -h mariadb -e "INSERT INTO lab.t VALUES ($i, NOW(6))" 2>/dev/null;
        then echo "ok $i $(date +%s.%N)"; else echo "fail $i $(date +%s.%N)"; fi
        i=$((i + 1)); sleep 0.1; done"#;
    k(&[
        "run",
        "writer",
        "-n",
        "mariadb",
        "--restart=Never",
        &format!("--image={}", pin("images/addon-versions", "MARIADB_IMAGE")),
        &format!("--env=MYSQL_PWD={password}"),
        &format!("--overrides={{\"spec\":{{\"nodeName\":\"{survivor}\"}}}}"),
        "--command",
        "--",
        "bash",
        "-c",
        writer,
    ]);
    let log = || {
        try_ok(&mut kubectl(
            kubectl_bin,
            kubeconfig,
            &["logs", "-n", "mariadb", "writer"],
        ))
        .unwrap_or_default()
    };
    wait_for(
        "the writer acknowledged",
        Duration::from_secs(120),
        Duration::from_secs(1),
        || (log().matches("ok ").count() >= 20).then_some(()),
        log,
    );
    run_ok(lab().args(["stop", &lost]));
    k(&[
        "delete",
        "pod",
        "-n",
        "mariadb",
        &primary,
        "--force",
        "--grace-period=0",
    ]);
    let after_loss = |l: &str| {
        l.lines()
            .skip_while(|l| !l.starts_with("fail"))
            .any(|l| l.starts_with("ok"))
    };
    wait_for(
        "writes succeeding again after the primary's loss",
        Duration::from_secs(180),
        Duration::from_secs(2),
        || after_loss(&log()).then_some(()),
        log,
    );
    std::thread::sleep(Duration::from_secs(3));
    let written = log();
    // bash as PID 1 ignores TERM: no grace to wait out.
    k(&[
        "delete",
        "pod",
        "-n",
        "mariadb",
        "writer",
        "--grace-period=1",
        "--wait=false",
    ]);
    let (mut acked, mut first_fail, mut back) = (Vec::new(), None, None);
    for line in written.lines() {
        let mut f = line.split_whitespace();
        let (Some(what), Some(id), Some(at)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let (id, at): (u64, f64) = (id.parse().unwrap(), at.parse().unwrap());
        match what {
            "ok" => {
                acked.push(id);
                if first_fail.is_some() && back.is_none() {
                    back = Some(at);
                }
            }
            _ => {
                first_fail.get_or_insert(at);
            }
        }
    }
    let outage = back.unwrap() - first_fail.unwrap();
    let now = mariadb_pods(kubectl_bin, kubeconfig, "primary");
    assert_eq!(
        now,
        std::slice::from_ref(&survivor_pod),
        "the promoted primary"
    );
    let have = ids(&survivor_pod).expect("the new primary answers");
    let missing: Vec<_> = acked.iter().filter(|id| !have.contains(id)).collect();
    println!(
        "k8s-lab: mariadb: primary {primary} lost with {lost}: writes failed for {outage:.1}s, {} acknowledged, {} missing; {survivor_pod} promoted",
        acked.len(),
        missing.len()
    );
    assert!(missing.is_empty(), "acknowledged but missing: {missing:?}");
    assert!(outage < 60.0, "writes failed for {outage:.1}s");

    // The lost node back: the old primary retires its datadir, seeds and replicates.
    run_ok(lab().args(["start", &lost]));
    mariadb_settled(
        kubectl_bin,
        kubeconfig,
        2,
        "the old primary back as a replica",
    );
    assert_eq!(
        mariadb_pods(kubectl_bin, kubeconfig, "replica"),
        std::slice::from_ref(&primary)
    );
    let on_primary = ids(&survivor_pod).expect("the primary answers");
    wait_for(
        "the old primary has every row",
        Duration::from_secs(60),
        Duration::from_secs(1),
        || (ids(&primary)? == on_primary).then_some(()),
        String::new,
    );
    println!(
        "k8s-lab: mariadb: {primary} back on {lost} as a replica with all {} rows",
        on_primary.len()
    );
    on_primary
}

fn mariadb_password(dir: &Path) -> String {
    std::fs::read_to_string(dir.join(".paasgen/secrets/mariadb-root-password"))
        .unwrap()
        .trim()
        .to_string()
}

/// Step 3b's end: both MariaDB pods ready again, each with exactly `rows`.
fn check_mariadb_rows(dir: &Path, kubectl_bin: &Path, kubeconfig: &Path, rows: &[u64]) {
    let password = mariadb_password(dir);
    let primary = mariadb_settled(kubectl_bin, kubeconfig, 2, "MariaDB 2/2 after the upgrade");
    for pod in ["mariadb-0", "mariadb-1"] {
        wait_for(
            &format!("{pod} has every row after the upgrade"),
            Duration::from_secs(60),
            Duration::from_secs(1),
            || {
                let seen = mariadb_sql(
                    kubectl_bin,
                    kubeconfig,
                    &password,
                    pod,
                    "127.0.0.1",
                    "SELECT id FROM lab.t ORDER BY id",
                )
                .ok()?;
                let ids: Vec<u64> = seen.lines().filter_map(|l| l.trim().parse().ok()).collect();
                (ids == rows).then_some(())
            },
            String::new,
        );
    }
    println!(
        "k8s-lab: mariadb after the upgrade: {primary} primary, both pods hold all {} rows",
        rows.len()
    );
}
