//! Snapshots of every rendered node of the bundled example: a review aid that shows
//! any change to what nodes receive. Key material, tokens and hashes are replaced by
//! placeholders in the snapshot only.

mod common;

use common::{example_spec, files_of, render_in};
use paasgen::render::{self, RenderOptions};

fn redactions() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            r"-----BEGIN ([A-Z ]+)-----\n(?:\s*[A-Za-z0-9+/=]+\n)+\s*-----END [A-Z ]+-----",
            "<$1 PEM>",
        ),
        (
            r#"token: "[a-z0-9]{6}\.[a-z0-9]{16}""#,
            r#"token: "<bootstrap-token>""#,
        ),
        (r"sha256:[0-9a-f]{64}", "sha256:<ca-cert-hash>"),
        (
            r#"secret: "[A-Za-z0-9+/]{43}=""#,
            r#"secret: "<encryption-key>""#,
        ),
    ]
}

#[test]
fn every_node_of_the_example() {
    let dir = tempfile::tempdir().unwrap();
    let (_, docs) = render_in(dir.path(), &example_spec());
    assert_eq!(docs.len(), 10);
    let mut settings = insta::Settings::clone_current();
    for (pattern, replacement) in redactions() {
        settings.add_filter(pattern, replacement);
    }
    settings.bind(|| {
        for doc in &docs {
            insta::assert_snapshot!(doc.name.clone(), doc.user_data);
            // A file sent gz+b64 (to fit Nova's limit) is shown decoded too.
            for f in files_of(doc) {
                let Some(name) = f.path.rsplit('/').next() else {
                    continue;
                };
                let packed = doc.user_data.split("  - path: ").any(|entry| {
                    entry.starts_with(&format!("{}\n", f.path))
                        && entry.contains("\n    encoding: gz+b64\n")
                });
                if packed {
                    let text = String::from_utf8(f.bytes).expect("a text file");
                    insta::assert_snapshot!(format!("{}-{name}", doc.name), text);
                }
            }
        }
    });
}

#[test]
fn same_spec_and_pki_give_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let spec = example_spec();
    let (pki, first) = render_in(dir.path(), &spec);
    let second = render::render(&spec, &pki, &RenderOptions::default()).unwrap();
    let reloaded = paasgen::pki::Pki::ensure(dir.path(), &spec).unwrap();
    assert!(reloaded.changes().is_empty(), "{:?}", reloaded.changes());
    let third = render::render(&spec, &reloaded, &RenderOptions::default()).unwrap();
    for ((a, b), c) in first.iter().zip(&second).zip(&third) {
        assert_eq!(a.user_data, b.user_data, "{}", a.name);
        assert_eq!(
            a.user_data, c.user_data,
            "{} after reloading the PKI",
            a.name
        );
    }
}

#[test]
fn written_files_decode_to_what_was_rendered() {
    let dir = tempfile::tempdir().unwrap();
    let spec = example_spec();
    let (pki, docs) = render_in(dir.path(), &spec);
    let etcd1 = files_of(&docs[2]);
    let server = etcd1
        .iter()
        .find(|f| f.path == "/etc/etcd/pki/server.crt")
        .unwrap();
    assert_eq!(server.bytes, pki.etcd_server["etcd-1"].cert_pem.as_bytes());
    for doc in &docs {
        for f in files_of(doc) {
            assert!(!f.bytes.is_empty(), "{}: {} is empty", doc.name, f.path);
            if f.path.starts_with("/usr/local/sbin/") {
                assert!(
                    f.bytes.starts_with(b"#!/bin/sh\n"),
                    "{}: {}",
                    doc.name,
                    f.path
                );
                assert_eq!(f.permissions.as_deref(), Some("0755"));
            }
        }
    }
}
