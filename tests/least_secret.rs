//! Decodes every node's user-data and checks which private keys (and tokens) it holds.

mod common;

use common::{example_spec, files_of, render_in};
use paasgen::spec::Role;
use std::collections::BTreeSet;

#[test]
fn each_role_holds_only_the_keys_it_needs() {
    let dir = tempfile::tempdir().unwrap();
    let spec = example_spec();
    let (pki, docs) = render_in(dir.path(), &spec);
    // Every private key paasgen has, by name.
    let mut keys: Vec<(String, &str)> = vec![
        ("etcd CA".into(), pki.etcd_ca.key_pem.as_str()),
        ("kubernetes CA".into(), pki.kubernetes_ca.key_pem.as_str()),
        ("front-proxy CA".into(), pki.front_proxy_ca.key_pem.as_str()),
        (
            "service-account".into(),
            pki.service_account.private_pem.as_str(),
        ),
        (
            "apiserver-etcd-client".into(),
            pki.apiserver_etcd_client.key_pem.as_str(),
        ),
        (
            "etcd healthcheck client".into(),
            pki.etcd_healthcheck_client.key_pem.as_str(),
        ),
        ("admin".into(), pki.admin.key_pem.as_str()),
    ];
    for (node, ck) in &pki.etcd_server {
        keys.push((format!("{node} server"), ck.key_pem.as_str()));
    }
    for (node, ck) in &pki.etcd_peer {
        keys.push((format!("{node} peer"), ck.key_pem.as_str()));
    }
    // The key Secrets are encrypted with: the masters' API servers alone need it.
    for doc in &docs {
        let holds = files_of(doc)
            .iter()
            .any(|f| String::from_utf8_lossy(&f.bytes).contains(&pki.encryption_key))
            || doc.user_data.contains(&pki.encryption_key);
        assert_eq!(
            holds,
            doc.role == Role::Master,
            "{}: encryption key",
            doc.name
        );
    }
    for doc in &docs {
        let files = files_of(doc);
        let held: BTreeSet<String> = keys
            .iter()
            .filter(|(_, pem)| files.iter().any(|f| f.bytes == pem.as_bytes()))
            .map(|(name, _)| name.clone())
            .collect();
        let expected: BTreeSet<String> = match doc.role {
            Role::Gateway | Role::Worker => BTreeSet::new(),
            Role::Etcd => [
                format!("{} server", doc.name),
                format!("{} peer", doc.name),
                "etcd healthcheck client".into(),
            ]
            .into(),
            Role::Master => [
                "kubernetes CA",
                "front-proxy CA",
                "service-account",
                "apiserver-etcd-client",
            ]
            .map(String::from)
            .into(),
        };
        assert_eq!(held, expected, "{} ({})", doc.name, doc.role);
        // No private key hides anywhere else in the files.
        let pem_keys = files
            .iter()
            .filter(|f| String::from_utf8_lossy(&f.bytes).contains("PRIVATE KEY-----"))
            .count();
        assert_eq!(
            pem_keys,
            expected.len(),
            "{}: unexpected private key files",
            doc.name
        );
        let key_files_private = files
            .iter()
            .filter(|f| String::from_utf8_lossy(&f.bytes).contains("PRIVATE KEY-----"))
            .all(|f| f.permissions.as_deref() == Some("0600"));
        assert!(key_files_private, "{}: a key file is not 0600", doc.name);
        let has_token = doc.user_data.contains(&pki.bootstrap_token);
        assert_eq!(
            has_token,
            matches!(doc.role, Role::Master | Role::Worker),
            "{}: bootstrap token presence",
            doc.name
        );
    }
}

/// MariaDB's passwords are in the first master's user-data only, in a root-only file.
#[test]
fn only_the_first_master_holds_the_mariadb_passwords() {
    let dir = tempfile::tempdir().unwrap();
    let text = paasgen::spec::EXAMPLE.replacen(
        "  mariadb:\n    enabled: false\n",
        "  mariadb:\n    enabled: true\n",
        1,
    );
    assert_ne!(text, paasgen::spec::EXAMPLE);
    let spec = paasgen::spec::parse("c.yaml", &text).unwrap().0;
    let (pki, docs) = render_in(dir.path(), &spec);
    let passwords = pki.mariadb.clone().expect("addons.mariadb is on");
    assert_ne!(passwords.root, passwords.replication);
    for doc in &docs {
        let files = files_of(doc);
        for password in [&passwords.root, &passwords.replication] {
            let holders: Vec<_> = files
                .iter()
                .filter(|f| String::from_utf8_lossy(&f.bytes).contains(password.as_str()))
                .collect();
            if doc.name == "master-1" {
                assert_eq!(holders.len(), 1, "master-1: one file with each password");
                assert_eq!(holders[0].path, "/etc/kubernetes/addons/mariadb.yaml");
                assert_eq!(holders[0].permissions.as_deref(), Some("0600"));
            } else {
                assert!(holders.is_empty(), "{} holds a MariaDB password", doc.name);
                assert!(!doc.user_data.contains(password.as_str()), "{}", doc.name);
            }
        }
    }
    // The example without MariaDB makes no passwords.
    let (pki, _) = render_in(tempfile::tempdir().unwrap().path(), &example_spec());
    assert!(pki.mariadb.is_none());
}

/// With off-site backups set up, each etcd node holds one Swift signature: PUT, under
/// its own name, in a root-only file; no other node has one, and none holds the key.
#[test]
fn each_etcd_node_holds_only_its_own_upload_signature() {
    use paasgen::render::{self, OffsiteTarget};
    let dir = tempfile::tempdir().unwrap();
    let text = paasgen::spec::EXAMPLE.replacen(
        "  snapshot_keep: 24\n",
        "  snapshot_keep: 24\n  swift_backups: { container: demo-etcd-backups, keep: 3 }\n",
        1,
    );
    let spec = paasgen::spec::parse("c.yaml", &text).unwrap().0;
    let (pki, _) = render_in(dir.path(), &spec);
    let key = "k".repeat(64);
    let container = "/v1/AUTH_p/demo-etcd-backups";
    let opts = render::RenderOptions {
        etcd_upload: Some(OffsiteTarget {
            container_path: container.into(),
            upload_endpoint: "https://swift.example:8080".into(),
            key: key.clone(),
            expires: 2_000_000_000,
        }),
        ..Default::default()
    };
    let docs = render::render(&spec, &pki, &opts).unwrap();
    for doc in &docs {
        assert!(!doc.user_data.contains(&key), "{} holds the key", doc.name);
        let files = files_of(doc);
        let upload = files
            .iter()
            .find(|f| f.path == "/etc/paasgen/etcd-backup-upload");
        if doc.role != Role::Etcd {
            assert!(upload.is_none(), "{} has an upload signature", doc.name);
            continue;
        }
        let upload = upload.unwrap_or_else(|| panic!("{} has no upload signature", doc.name));
        assert_eq!(upload.permissions.as_deref(), Some("0600"));
        let env = String::from_utf8(upload.bytes.clone()).unwrap();
        let signed = paasgen::tempurl::sign_put_prefix(
            key.as_bytes(),
            container,
            &format!("{}/", doc.name),
            2_000_000_000,
        )
        .unwrap();
        assert!(
            env.contains(&format!("UPLOAD_QUERY='{}'", signed.query())),
            "{env}"
        );
        assert!(
            env.contains(&format!(
                "UPLOAD_URL_PREFIX='https://swift.example:8080{container}/{}/'",
                doc.name
            )),
            "{env}"
        );
    }
}
