//! Bad specs: each rule gives its message naming the field (and line where known),
//! the command exits non-zero, and nothing is written.

use std::path::Path;
use std::process::Command;

const EXAMPLE: &str = include_str!("../examples/cluster.yaml");

struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    wrote_anything: bool,
}

fn render(spec_text: &str) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("cluster.yaml");
    std::fs::write(&spec, spec_text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_paasgen"))
        .arg("render")
        .arg("-f")
        .arg(&spec)
        .arg("-o")
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    let written = |p: &str| Path::new(&dir.path().join(p)).exists();
    Outcome {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
        wrote_anything: written("out") || written(".paasgen"),
    }
}

/// The example with `from` replaced by `to` (which must occur).
fn example_with(from: &str, to: &str) -> String {
    assert!(EXAMPLE.contains(from), "the example has no `{from}`");
    EXAMPLE.replacen(from, to, 1)
}

/// `at line N` for the example's first line holding `needle` (the example may grow).
fn at_line_of(needle: &str) -> String {
    let n = EXAMPLE
        .lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("the example has no `{needle}`"));
    format!("at line {}", n + 1)
}

fn rejects(spec_text: &str, expected: &[&str]) -> Outcome {
    let o = render(spec_text);
    assert_eq!(
        o.code,
        Some(2),
        "stdout: {}\nstderr: {}",
        o.stdout,
        o.stderr
    );
    for e in expected {
        assert!(o.stderr.contains(e), "expected `{e}` in:\n{}", o.stderr);
    }
    assert!(!o.wrote_anything, "a rejected spec wrote files");
    o
}

#[test]
fn the_example_renders() {
    let o = render(EXAMPLE);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(o.wrote_anything);
}

#[test]
fn duplicate_node_name() {
    let o = rejects(
        &example_with("name: etcd-2,", "name: etcd-1,"),
        &[
            "nodes[3].name",
            "duplicate node name `etcd-1` (also nodes[2])",
        ],
    );
    let line = at_line_of("name: etcd-2,");
    assert!(o.stderr.contains(&line), "{line}: {}", o.stderr);
}

#[test]
fn duplicate_ip() {
    rejects(
        &example_with("private_ip: 192.168.0.11", "private_ip: 192.168.0.10"),
        &[
            "nodes[3].private_ip",
            "duplicate IP 192.168.0.10 (also used by `etcd-1`)",
        ],
    );
}

#[test]
fn ip_outside_the_private_network() {
    rejects(
        &example_with("private_ip: 192.168.0.31", "private_ip: 10.1.1.1"),
        &[
            "nodes[9].private_ip",
            "10.1.1.1 is outside network.private_cidr 192.168.0.0/24",
            &at_line_of("private_ip: 192.168.0.31"),
        ],
    );
}

#[test]
fn vip_colliding_with_a_node() {
    rejects(
        &example_with("private_ip: 192.168.0.22", "private_ip: 192.168.0.5"),
        &["nodes[7].private_ip", "192.168.0.5 collides with a VIP"],
    );
}

#[test]
fn fewer_than_three_etcd_members() {
    let two = example_with(
        "  - { name: etcd-3,   role: etcd,    private_ip: 192.168.0.12 }\n",
        "",
    );
    rejects(
        &two,
        &[
            "nodes: 2 etcd node(s): at least 3",
            "etcd.allow_fewer_than_three",
        ],
    );
    let allowed = two.replace(
        "  snapshot_keep: 24\n",
        "  snapshot_keep: 24\n  allow_fewer_than_three: true\n",
    );
    let o = render(&allowed);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(
        o.stderr.contains("warning") && o.stderr.contains("even count"),
        "{}",
        o.stderr
    );
}

#[test]
fn even_etcd_count_is_a_warning() {
    let four = example_with(
        "  - { name: master-1,",
        "  - { name: etcd-4,   role: etcd,    private_ip: 192.168.0.13 }\n  - { name: master-1,",
    );
    let o = render(&four);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(
        o.stderr
            .contains("warning: nodes: 4 etcd nodes: an even count"),
        "{}",
        o.stderr
    );
}

#[test]
fn missing_role() {
    let no_workers: String = EXAMPLE
        .lines()
        .filter(|l| !l.contains("role: worker"))
        .map(|l| format!("{l}\n"))
        .collect();
    rejects(
        &no_workers,
        &["missing role: the cluster needs at least one worker node"],
    );
}

#[test]
fn malformed_version() {
    rejects(
        &example_with("version: 1.37.2", "version: 1.37"),
        &["kubernetes.version", "`1.37` is not a version like 1.37.2"],
    );
    rejects(
        &example_with("version: 1.37.2", "version: 1.99.0"),
        &[
            "kubernetes.version",
            "Kubernetes 1.99.0 is not supported; supported minors: 1.34, 1.35, 1.36, 1.37",
        ],
    );
}

#[test]
fn etcd_older_than_what_kubeadm_accepts() {
    // Debian bookworm's etcd: kubeadm's ExternalEtcdVersion preflight check refuses it.
    let spec = example_with("version: 3.6.14", "version: 3.5.17");
    rejects(
        &spec,
        &[
            "etcd.version",
            "etcd 3.5.17 is older than 3.5.24, the oldest external etcd kubeadm 1.37.2 accepts",
        ],
    );
    rejects(
        &example_with("version: 3.6.14", "version: 3.4.23"),
        &["etcd.version", "etcd 3.4.23 is not supported"],
    );
}

#[test]
fn versions_that_reach_scripts_must_be_versions() {
    // A version lands in the root install script: anything but digits and dots is refused.
    rejects(
        &example_with(
            "containerd_version: 2.4.1",
            "containerd_version: \"2.4$(touch /tmp/x)\"",
        ),
        &[
            "kubernetes.containerd_version",
            "is not a containerd release like 2.2.9",
        ],
    );
    rejects(
        &example_with("containerd_version: 2.4.1", "containerd_version: 1.6.20"),
        &[
            "kubernetes.containerd_version",
            "containerd 1.6.20 is end of life",
        ],
    );
    rejects(
        &example_with("version: 3.6.14", "version: \"3.6.14\\nx\""),
        &["etcd.version", "is not a version like 3.6.16"],
    );
}

#[test]
fn spec_checksums_are_validated() {
    rejects(
        &example_with("pod_cidr:", "sha256: { kubeadm: abc }\n  pod_cidr:"),
        &["kubernetes.sha256.kubeadm", "expected 64 hex digits"],
    );
    rejects(
        &example_with("pod_cidr:", "sha256: { kubeadmm: abc }\n  pod_cidr:"),
        &["kubernetes.sha256.kubeadmm", "unknown artifact"],
    );
}

#[test]
fn malformed_cidr() {
    rejects(
        &example_with(
            "private_cidr: 192.168.0.0/24",
            "private_cidr: 192.168.0.0/33",
        ),
        &["at line 17"],
    );
}

#[test]
fn malformed_ssh_key() {
    rejects(
        &example_with("ssh-ed25519 AAAAC3Nza", "ssh-ed25519 AAAA*C3Nza"),
        &[
            "ssh_authorized_keys[0]",
            "malformed SSH public key: the key is not valid base64",
        ],
    );
}

#[test]
fn unknown_field_with_a_suggestion() {
    rejects(
        &example_with("private_cidr:", "privat_cidr:"),
        &[
            "unknown field `privat_cidr`",
            "did you mean `private_cidr`?",
            "at line 17",
        ],
    );
}

#[test]
fn unknown_role_with_a_suggestion() {
    rejects(
        &example_with("role: gateway,", "role: gatway,"),
        &[
            "unknown variant `gatway`",
            "did you mean `gateway`?",
            &at_line_of("role: gateway,"),
        ],
    );
}

#[test]
fn yaml_syntax_error_has_a_line() {
    rejects(
        &example_with("name: demo", "name: [demo"),
        &["error at line"],
    );
}

#[test]
fn gateway_without_public_ip() {
    rejects(
        &example_with(", public_ip: 203.0.113.12", ""),
        &["nodes[1].public_ip", "a gateway needs a public_ip"],
    );
}

#[test]
fn labels_a_kubelet_may_not_set() {
    rejects(
        &example_with(
            r#"labels: { ingress: "true" }"#,
            r#"labels: { node-role.kubernetes.io/ingress: "" }"#,
        ),
        &[
            "nodes[9].labels.node-role.kubernetes.io/ingress",
            "a kubelet may not set",
        ],
    );
    rejects(
        &example_with(
            "private_ip: 192.168.0.12 }",
            r#"private_ip: 192.168.0.12, labels: { a: b } }"#,
        ),
        &[
            "nodes[4].labels",
            "only masters and workers have Kubernetes labels",
        ],
    );
}

/// The example with `n` gateways (192.168.0.100.., 203.0.113.100..).
fn with_gateways(n: usize) -> String {
    let gateways: String = (0..n)
        .map(|i| {
            format!(
                "  - {{ name: gw-{}, role: gateway, private_ip: 192.168.0.{}, public_ip: 203.0.113.{} }}\n",
                i + 1,
                100 + i,
                100 + i
            )
        })
        .collect();
    let rest: String = EXAMPLE
        .lines()
        .filter(|l| !l.contains("role: gateway"))
        .map(|l| format!("{l}\n"))
        .collect();
    rest.replacen("nodes:\n", &format!("nodes:\n{gateways}"), 1)
}

#[test]
fn gateway_count_is_capped_and_never_overflows() {
    for n in [9, 16, 26, 100] {
        rejects(
            &with_gateways(n),
            &["nodes", &format!("{n} gateways: at most 8 share the VIPs")],
        );
    }
    let o = render(&with_gateways(8));
    assert_eq!(o.code, Some(0), "{}", o.stderr);
}

#[test]
fn validate_refuses_what_render_refuses() {
    let dir = tempfile::tempdir().unwrap();
    for (text, ok) in [
        (with_gateways(16), false),
        (with_gateways(8), true),
        (EXAMPLE.to_string(), true),
    ] {
        let spec = dir.path().join("cluster.yaml");
        std::fs::write(&spec, &text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_paasgen"))
            .arg("validate")
            .arg("-f")
            .arg(&spec)
            .output()
            .unwrap();
        assert_eq!(out.status.success(), ok);
        assert_eq!(render(&text).code == Some(0), ok);
    }
}

#[test]
fn type_errors_name_the_field_and_line() {
    rejects(
        &example_with("private_ip: 192.168.0.11", "private_ip: notanip"),
        &[
            &at_line_of("private_ip: 192.168.0.11"),
            "nodes[3].private_ip: invalid IPv4 address syntax",
        ],
    );
    rejects(
        &example_with("vrrp_router_id: 51", "vrrp_router_id: 300"),
        &[
            "at line 29",
            "network.vrrp_router_id: expected a whole number from 0 to 255",
        ],
    );
    rejects(
        &example_with("snapshot_keep: 24", "snapshot_keep: many"),
        &["etcd.snapshot_keep:"],
    );
}

#[test]
fn duplicate_keys_are_named_without_library_internals() {
    let o = rejects(
        &example_with("name: demo\n", "name: demo\nname: again\n"),
        &["at line 8", "duplicate key `name`"],
    );
    assert!(!o.stderr.contains("DuplicateKeyPolicy"), "{}", o.stderr);
    let o = rejects(
        &example_with(
            r#"labels: { ingress: "true" }"#,
            r#"labels: { ingress: "true", ingress: "x" }"#,
        ),
        &["nodes[9].labels: duplicate key `ingress`"],
    );
    assert!(!o.stderr.contains("Options"), "{}", o.stderr);
}

#[test]
fn echoed_values_are_cut_short_and_escaped() {
    let long = "a".repeat(5_000_000);
    let o = rejects(
        &example_with("name: demo", &format!("name: {long}")),
        &["name: `aaaa", "(5000000 bytes in all)"],
    );
    assert!(o.stderr.len() < 2_000, "{} bytes of errors", o.stderr.len());
    let o = rejects(
        &example_with("name: worker-1,", r#"name: "w\u001b[2J\u009b1m","#),
        &["nodes[8].name", r"w\u{1b}[2J\u{9b}1m"],
    );
    assert!(
        !o.stderr.contains('\u{1b}') && !o.stderr.contains('\u{9b}'),
        "{:?}",
        o.stderr
    );
}

#[test]
fn mirrors_are_checked_for_where_they_land() {
    let with_mirrors =
        |block: &str| example_with("\nnodes:\n", &format!("\nmirrors:\n{block}\nnodes:\n"));
    rejects(
        &with_mirrors("  files: ftp://mirror.example/files"),
        &["mirrors.files", "must start with http:// or https://"],
    );
    // A URL lands in a shell script, a TOML file and apt's sources: nothing they read
    // differently gets through.
    rejects(
        &with_mirrors("  files: \"http://mirror.example/x\\\"; touch /tmp/owned; \\\"\""),
        &["mirrors.files", "the path may hold only"],
    );
    rejects(
        &with_mirrors("  debian: { url: \"http://bad host/debian\" }"),
        &["mirrors.debian.url", "the host must be"],
    );
    rejects(
        &with_mirrors("  registry: http://mirror.example:70000"),
        &["mirrors.registry", "the port must be 1-65535"],
    );
    rejects(
        &with_mirrors("  registry: http://mirror.example:5000/v2/registry.k8s.io"),
        &["mirrors.registry", "without a path"],
    );
    rejects(
        &with_mirrors(
            "  debian: { url: \"http://mirror.example/debian\", key: \"ssh-ed25519 AAAA\" }",
        ),
        &["mirrors.debian.key", "ASCII-armoured public key"],
    );
    rejects(
        &with_mirrors("  debian: { uri: \"http://mirror.example/debian\" }"),
        &["uri"],
    );
}

#[test]
fn swift_backups_are_checked() {
    let with = |block: &str| {
        example_with(
            "  snapshot_keep: 24\n",
            &format!("  snapshot_keep: 24\n  swift_backups: {block}\n"),
        )
    };
    rejects(
        &with("{ container: \"backups/../x\" }"),
        &["etcd.swift_backups.container", "is not a container name"],
    );
    rejects(
        &with("{ container: b, keep: 0 }"),
        &["etcd.swift_backups.keep", "expected 1 to 10000 copies"],
    );
    rejects(
        &with("{ container: b, upload_endpoint: \"http://swift.example:8080/v1/AUTH_x\" }"),
        &[
            "etcd.swift_backups.upload_endpoint",
            "scheme, host and port only",
        ],
    );
    rejects(
        &with("{ container: b, upload_endpoint: \"ftp://swift.example\" }"),
        &[
            "etcd.swift_backups.upload_endpoint",
            "must start with http:// or https://",
        ],
    );
    let o = render(&with("{ container: demo-etcd-backups, keep: 7 }"));
    assert_eq!(o.code, Some(0), "{}", o.stderr);
}

const FLOATING: &str = include_str!("../examples/floating.yaml");

/// examples/floating.yaml with `from` replaced by `to` (which must occur).
fn floating_with(from: &str, to: &str) -> String {
    assert!(
        FLOATING.contains(from),
        "the floating example has no `{from}`"
    );
    FLOATING.replacen(from, to, 1)
}

/// `at line N` for the line of `text` holding `needle`.
fn line_in(text: &str, needle: &str) -> String {
    let n = text.lines().position(|l| l.contains(needle)).unwrap();
    format!("at line {}", n + 1)
}

#[test]
fn floating_refuses_the_fixed_designs_public_fields_naming_their_lines() {
    for (field, line) in [
        ("public_vip", "  public_vip: 203.0.113.10\n"),
        ("public_cidr", "  public_cidr: 203.0.113.0/24\n"),
        ("public_gateway", "  public_gateway: 203.0.113.1\n"),
        ("public_interface", "  public_interface: ens4\n"),
    ] {
        let text = floating_with(
            "  public: floating\n",
            &format!("  public: floating\n{line}"),
        );
        rejects(
            &text,
            &[
                &format!(
                    "{}: network.{field}: not used with `network.public: floating`",
                    line_in(&text, line.trim())
                ),
                "remove it",
            ],
        );
    }
}

#[test]
fn floating_gateways_have_no_public_ip() {
    let text = floating_with(
        "private_ip: 192.168.0.3 }",
        "private_ip: 192.168.0.3, public_ip: 203.0.113.12 }",
    );
    rejects(
        &text,
        &[
            &line_in(&text, "public_ip: 203.0.113.12"),
            "nodes[1].public_ip: gateways have no public_ip with `network.public: floating`",
        ],
    );
}

#[test]
fn floating_router_address_must_be_a_free_host_of_the_private_network() {
    let text = floating_with("private_gateway: 192.168.0.1", "private_gateway: 10.0.0.1");
    rejects(
        &text,
        &[
            &line_in(&text, "private_gateway: 10.0.0.1"),
            "network.private_gateway: 10.0.0.1 is not a host address of network.private_cidr 192.168.0.0/24",
        ],
    );
    rejects(
        &floating_with(
            "private_gateway: 192.168.0.1",
            "private_gateway: 192.168.0.5",
        ),
        &["network.private_gateway", "equals network.private_vip"],
    );
    // The default (the first host address) is claimed like a VIP.
    rejects(
        &floating_with("  private_gateway: 192.168.0.1\n", "").replacen(
            "private_ip: 192.168.0.2 }",
            "private_ip: 192.168.0.1 }",
            1,
        ),
        &[
            "nodes[0].private_ip",
            "192.168.0.1 collides with a VIP, the public gateway or the router",
        ],
    );
}

#[test]
fn fixed_mode_needs_its_public_fields_and_has_no_router() {
    rejects(
        &example_with("  public_vip: 203.0.113.10\n", ""),
        &["network.public_vip: required with `network.public: fixed`"],
    );
    let text = example_with(
        "  private_vip: 192.168.0.5\n",
        "  private_vip: 192.168.0.5\n  private_gateway: 192.168.0.1\n",
    );
    rejects(
        &text,
        &[
            &line_in(&text, "private_gateway: 192.168.0.1"),
            "network.private_gateway: only with `network.public: floating`",
        ],
    );
}

#[test]
fn an_unknown_public_mode_gets_a_suggestion() {
    rejects(
        &floating_with("  public: floating\n", "  public: floatin\n"),
        &[
            "network.public: unknown variant `floatin`",
            "did you mean `floating`?",
        ],
    );
}

#[test]
fn a_document_over_novas_limit_is_a_spec_problem_naming_the_field() {
    // 800 keys (each its own comment) in every node's user-data: no compression helps.
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGiug3cgxdqRmML7UZqzadtSetqW+qMl+1k7dEwZhO5j";
    let keys: String = (0..800)
        .map(|i| format!("  - {key} operator-{i}@example\n"))
        .collect();
    let from = format!("  - {key} operator@example\n");
    let text = example_with(&from, &keys);
    let o = render(&text);
    assert_eq!(o.code, Some(2), "{}{}", o.stdout, o.stderr);
    assert!(o.stderr.contains("ssh_authorized_keys"), "{}", o.stderr);
    assert!(o.stderr.contains("over OpenStack's limit"), "{}", o.stderr);
    assert!(!o.wrote_anything, "a refused render wrote something");
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("cluster.yaml");
    std::fs::write(&spec, &text).unwrap();
    let v = Command::new(env!("CARGO_BIN_EXE_paasgen"))
        .args(["validate", "-f"])
        .arg(&spec)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&v.stderr);
    assert_eq!(v.status.code(), Some(2), "{said}");
    assert!(
        said.contains("ssh_authorized_keys") && said.contains("800 keys"),
        "{said}"
    );
}

#[test]
fn join_tokens_expire() {
    let with = |minutes: &str| {
        example_with(
            "  join_token_ttl_minutes: 1440",
            &format!("  join_token_ttl_minutes: {minutes}"),
        )
    };
    for bad in ["0", "4", "43201"] {
        rejects(
            &with(bad),
            &["kubernetes.join_token_ttl_minutes", "outside 5..=43200"],
        );
    }
    let o = render(&with("5"));
    assert_eq!(o.code, Some(0), "{}", o.stderr);
}

/// The example with `addons.manifests` holding `entries` (YAML under `manifests:`).
fn example_with_manifests(entries: &str) -> String {
    example_with(
        "    node_paths: { worker-2: /disks }     # e.g. a worker's data disk\n",
        &format!("    node_paths: {{ worker-2: /disks }}\n  manifests:\n{entries}"),
    )
}

#[test]
fn manifest_addons_are_named_labels_holding_kubernetes_objects() {
    let good = "      manifest: |\n        apiVersion: v1\n        kind: Namespace\n        metadata: {name: apps}\n";
    let o = render(&example_with_manifests(&format!("    apps:\n{good}")));
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    rejects(
        &example_with_manifests(&format!("    Apps_1:\n{good}")),
        &["addons.manifests.Apps_1", "is not a DNS label"],
    );
    rejects(
        &example_with_manifests(&format!("    flannel:\n{good}")),
        &["addons.manifests.flannel", "is one of paasgen's own addons"],
    );
    let spec = example_with_manifests("    apps:\n      manifest: \"just: words\"\n");
    let line = spec
        .lines()
        .position(|l| l.contains("just: words"))
        .unwrap()
        + 1;
    rejects(
        &spec,
        &[
            "addons.manifests.apps.manifest",
            "each document needs apiVersion and kind",
            &format!("at line {line}"),
        ],
    );
    rejects(
        &example_with_manifests("    apps:\n      manifest: \"# nothing\\n\"\n"),
        &[
            "addons.manifests.apps.manifest",
            "holds no Kubernetes object",
        ],
    );
    rejects(
        &example_with_manifests(&format!("    apps:\n      timeout_seconds: 5\n{good}")),
        &[
            "addons.manifests.apps.timeout_seconds",
            "5 is outside 10..=3600",
        ],
    );
}
