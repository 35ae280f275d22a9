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
    assert_eq!(cc["kubernetesVersion"], "v1.34.4");
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
        let path = etcd[key].as_str().unwrap();
        file(&m1, path); // the file kubeadm is pointed at is written by the user-data
    }
    assert_eq!(
        kind(&init, "KubeletConfiguration")["cgroupDriver"],
        "systemd"
    );
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
        let has_ca = files.iter().any(|f| f.path == "/etc/kubernetes/pki/ca.crt");
        assert_eq!(has_ca, doc.name.starts_with("master-"), "{}", doc.name);
    }
}

#[test]
fn every_rendered_shell_script_parses() {
    if !have("dash") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut spec_text = paasgen::spec::EXAMPLE.replacen("source: debian", "source: release", 1);
    spec_text = spec_text.replacen("version: 3.4.23", "version: 3.5.27", 1);
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
    let text = paasgen::spec::EXAMPLE
        .replacen("source: debian", "source: release", 1)
        .replacen("version: 3.4.23", "version: 3.5.27", 1);
    let spec = paasgen::spec::parse("c.yaml", &text).unwrap().0;
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
        script.contains("etcd-v3.5.27-linux-amd64.tar.gz"),
        "{script}"
    );
    assert!(script.contains("0aad9a9e4e0817a021e933f9806a2b2960a62f949ad5a3d6436d8886945cb1bc  $tarball.part\" | sha256sum -c"), "{script}");
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
