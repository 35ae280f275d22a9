//! Structure checks for what cannot run here (no Kubernetes binaries): the kubeadm
//! configs say what they must, and every rendered shell script parses.

mod common;

use common::{example_spec, file, files_of, have, render_in, run};
use serde_json::Value;
use std::process::Command;

fn yaml_documents(bytes: &[u8]) -> Vec<Value> {
    serde_saphyr::from_str_multiple(std::str::from_utf8(bytes).unwrap()).expect("valid YAML")
}

fn kind<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind}"))
}

#[test]
fn first_master_inits_with_external_etcd_behind_the_vip() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, docs) = render_in(dir.path(), &example_spec());
    let m1 = files_of(docs.iter().find(|d| d.name == "master-1").unwrap());
    let init = yaml_documents(&file(&m1, "/etc/kubernetes/kubeadm-init.yaml").bytes);
    let ic = kind(&init, "InitConfiguration");
    assert_eq!(ic["apiVersion"], "kubeadm.k8s.io/v1beta4");
    assert_eq!(
        ic["bootstrapTokens"][0]["token"],
        pki.bootstrap_token.as_str()
    );
    assert_eq!(ic["localAPIEndpoint"]["advertiseAddress"], "192.168.0.20");
    let cc = kind(&init, "ClusterConfiguration");
    assert_eq!(cc["controlPlaneEndpoint"], "192.168.0.5:6443");
    assert_eq!(cc["kubernetesVersion"], "v1.37.2");
    let sans = cc["apiServer"]["certSANs"].as_array().unwrap();
    for vip in ["192.168.0.5", "203.0.113.10"] {
        assert!(sans.contains(&Value::from(vip)), "{sans:?}");
    }
    let etcd = &cc["etcd"]["external"];
    assert_eq!(
        etcd["endpoints"],
        serde_json::json!([
            "https://192.168.0.10:2379",
            "https://192.168.0.11:2379",
            "https://192.168.0.12:2379"
        ])
    );
    for key in ["caFile", "certFile", "keyFile"] {
        // The file kubeadm is pointed at is written by the user-data, apart from
        // /etc/kubernetes/pki (which `kubeadm reset` empties) and copied there.
        let path = etcd[key].as_str().unwrap();
        let kept = path.replace("/etc/kubernetes/pki/", "/etc/paasgen/kubernetes-pki/");
        file(&m1, &kept);
    }
    assert_eq!(
        kind(&init, "KubeletConfiguration")["cgroupDriver"],
        "systemd"
    );
    assert_eq!(kind(&init, "KubeProxyConfiguration")["mode"], "nftables");
}

#[test]
fn joins_use_the_token_and_the_ca_hash_and_only_masters_join_the_control_plane() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, docs) = render_in(dir.path(), &example_spec());
    for doc in docs
        .iter()
        .filter(|d| d.name.starts_with("master-") || d.name.starts_with("worker-"))
    {
        let files = files_of(doc);
        let join = yaml_documents(&file(&files, "/etc/kubernetes/kubeadm-join.yaml").bytes);
        let jc = kind(&join, "JoinConfiguration");
        let discovery = &jc["discovery"]["bootstrapToken"];
        assert_eq!(
            discovery["apiServerEndpoint"], "192.168.0.5:6443",
            "{}",
            doc.name
        );
        assert_eq!(discovery["token"], pki.bootstrap_token.as_str());
        assert_eq!(discovery["caCertHashes"][0], pki.ca_cert_hash.as_str());
        assert_eq!(jc["nodeRegistration"]["name"], doc.name.as_str());
        assert_eq!(
            jc["controlPlane"].is_object(),
            doc.name.starts_with("master-"),
            "{}",
            doc.name
        );
        let has_init = files
            .iter()
            .any(|f| f.path == "/etc/kubernetes/kubeadm-init.yaml");
        assert_eq!(has_init, doc.name == "master-1", "{}", doc.name);
        // kubeadm join refuses a node that already has the CA cert, unless it joins the control plane.
        let has_ca = files
            .iter()
            .any(|f| f.path.ends_with("/ca.crt") && f.path.contains("kubernetes-pki"));
        assert!(!files
            .iter()
            .any(|f| f.path.starts_with("/etc/kubernetes/pki/")));
        assert_eq!(has_ca, doc.name.starts_with("master-"), "{}", doc.name);
    }
}

#[test]
fn every_rendered_shell_script_parses() {
    if !have("dash") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let spec_text = paasgen::spec::EXAMPLE.replacen("version: 3.6.14", "version: 3.6.16", 1);
    for spec in [
        example_spec(),
        paasgen::spec::parse("c.yaml", &spec_text).unwrap().0,
    ] {
        let (_, docs) = render_in(&dir.path().join(&spec.etcd.version), &spec);
        let mut scripts = 0;
        for doc in &docs {
            for f in files_of(doc)
                .iter()
                .filter(|f| f.bytes.starts_with(b"#!/bin/sh"))
            {
                let path = dir.path().join("script.sh");
                std::fs::write(&path, &f.bytes).unwrap();
                let (ok, out) = run(Command::new("dash").arg("-n").arg(&path));
                assert!(ok, "{} {}: {out}", doc.name, f.path);
                scripts += 1;
            }
        }
        assert!(scripts >= 20, "{scripts}");
    }
}

#[test]
fn etcd_release_install_verifies_its_pinned_checksum() {
    let spec = example_spec();
    let dir = tempfile::tempdir().unwrap();
    let (_, docs) = render_in(dir.path(), &spec);
    let files = files_of(&docs[2]);
    let script = String::from_utf8(
        file(&files, "/usr/local/sbin/paasgen-install-etcd")
            .bytes
            .clone(),
    )
    .unwrap();
    assert!(
        script.contains(
            "fetch \"https://github.com/etcd-io/etcd/releases/download/v3.6.14/etcd-v3.6.14-linux-amd64.tar.gz\" \"ffe840ff9295808e88cce2794a18a5ac87f12a5203c8314d0bf6aa119b41bac5\""
        ),
        "{script}"
    );
    let unit = String::from_utf8(
        file(&files, "/etc/systemd/system/etcd.service")
            .bytes
            .clone(),
    )
    .unwrap();
    assert!(
        unit.contains("ExecStart=/usr/local/bin/etcd --config-file /etc/etcd/etcd.conf.yml"),
        "{unit}"
    );
}

#[test]
fn without_a_known_checksum_a_node_installs_only_from_its_image() {
    // etcd 3.6.16 has no pinned checksum: the script must not download it unchecked.
    let text = paasgen::spec::EXAMPLE.replacen("version: 3.6.14", "version: 3.6.16", 1);
    let spec = paasgen::spec::parse("c.yaml", &text).unwrap().0;
    let dir = tempfile::tempdir().unwrap();
    let (_, docs) = render_in(dir.path(), &spec);
    let etcd = files_of(&docs[2]);
    let script = String::from_utf8(
        file(&etcd, "/usr/local/sbin/paasgen-install-etcd")
            .bytes
            .clone(),
    )
    .unwrap();
    assert!(script.contains("no_checksum etcd"), "{script}");
    assert!(
        !script.contains("curl") && !script.contains("fetch "),
        "{script}"
    );
    // Kubernetes 1.37.2 likewise; its containerd (2.4.1) has a pinned checksum.
    let worker = files_of(docs.iter().find(|d| d.name == "worker-1").unwrap());
    let script = String::from_utf8(
        file(&worker, "/usr/local/sbin/paasgen-install-kubernetes")
            .bytes
            .clone(),
    )
    .unwrap();
    for bin in ["kubeadm", "kubelet", "kubectl"] {
        assert!(
            script.contains(&format!("no_checksum {bin} \"1.37.2\"")),
            "{script}"
        );
        assert!(
            !script.contains(&format!("/bin/linux/amd64/{bin}")),
            "{script}"
        );
    }
    assert!(
        script.contains("d65eda6a188aac1006848d8060099be88ba9c4bcddbfd9a23a961194710d0dd4"),
        "{script}"
    );
}

/// `mirrors`: every download, apt source and image pull of a node goes to the site's
/// mirrors; gateways and etcd get no registry configuration (they run no containers).
#[test]
fn mirrors_reach_every_download_source_and_pull() {
    let text = paasgen::spec::EXAMPLE.to_string().replacen(
        "\nnodes:\n",
        "\nmirrors:\n  files: http://mirror.example:8080/files/\n  registry: https://registry.example\n  debian: { url: http://mirror.example/debian }\nnodes:\n",
        1,
    );
    let spec = paasgen::spec::parse("cluster.yaml", &text)
        .expect("valid")
        .0;
    let dir = tempfile::tempdir().unwrap();
    let (_, docs) = render_in(dir.path(), &spec);
    let of = |name: &str| files_of(docs.iter().find(|d| d.name == name).unwrap());
    let w = of("worker-1");
    let install = String::from_utf8(
        file(&w, "/usr/local/sbin/paasgen-install-kubernetes")
            .bytes
            .clone(),
    )
    .unwrap();
    assert!(!install.contains("https://github.com") && !install.contains("https://dl.k8s.io"));
    assert!(install.contains("\"http://mirror.example:8080/files/github.com/containerd/containerd/releases/download/v2.4.1/containerd-2.4.1-linux-amd64.tar.gz\""), "{install}");
    let hosts = String::from_utf8(
        file(&w, "/etc/containerd/certs.d/registry.k8s.io/hosts.toml")
            .bytes
            .clone(),
    )
    .unwrap();
    assert!(
        hosts.contains("[host.\"https://registry.example/v2/registry.k8s.io\"]"),
        "{hosts}"
    );
    assert!(hosts.contains("override_path = true"));
    let sources =
        String::from_utf8(file(&w, "/etc/paasgen/apt-mirror.sources").bytes.clone()).unwrap();
    assert!(
        sources.contains("URIs: http://mirror.example/debian\n"),
        "{sources}"
    );
    assert!(sources.contains("Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"));
    let e = of("etcd-1");
    let etcd = String::from_utf8(
        file(&e, "/usr/local/sbin/paasgen-install-etcd")
            .bytes
            .clone(),
    )
    .unwrap();
    assert!(
        etcd.contains(
            "http://mirror.example:8080/files/github.com/etcd-io/etcd/releases/download/v3.6.14/"
        ),
        "{etcd}"
    );
    file(&e, "/etc/paasgen/apt-mirror.sources");
    for node in ["etcd-1", "gw-1"] {
        assert!(
            !of(node)
                .iter()
                .any(|f| f.path.starts_with("/etc/containerd/")),
            "{node}"
        );
    }
}
