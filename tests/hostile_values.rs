//! Spec values never reach a node's files raw: each string is validated for what it is
//! and quoted for where it lands. Names YAML would read as other types (`null`, `yes`,
//! `0123`) stay strings; a newline in any string field never becomes a line of a file.

mod common;

use common::{files_of, have, run};
use paasgen::render::decode_files;
use paasgen::spec;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_paasgen");

struct Rendered {
    dir: tempfile::TempDir,
    code: Option<i32>,
    stderr: String,
}

fn render(text: &str) -> Rendered {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cluster.yaml"), text).unwrap();
    let out = Command::new(BIN)
        .current_dir(dir.path())
        .arg("render")
        .output()
        .unwrap();
    Rendered {
        code: out.status.code(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
        dir,
    }
}

fn replaced(pairs: &[(&str, &str)]) -> String {
    let mut text = spec::EXAMPLE.to_string();
    for (from, to) in pairs {
        assert!(text.contains(from), "the example has no `{from}`");
        text = text.replacen(from, to, 1);
    }
    text
}

fn yaml(text: &str) -> Vec<Value> {
    serde_saphyr::from_str_multiple(text).expect("valid YAML")
}

/// Every rendered document and every file inside it, plus the admin kubeconfig.
fn everything(dir: &Path) -> Vec<(String, String)> {
    let mut all = vec![(
        "admin.kubeconfig".to_string(),
        std::fs::read_to_string(dir.join(".paasgen/admin.kubeconfig")).unwrap(),
    )];
    for e in std::fs::read_dir(dir.join("out")).unwrap().flatten() {
        let text = std::fs::read_to_string(e.path()).unwrap();
        if e.path().extension().is_some_and(|x| x == "yaml") {
            for f in decode_files(&text).unwrap() {
                all.push((f.path.clone(), String::from_utf8_lossy(&f.bytes).into()));
            }
        }
        all.push((e.file_name().to_string_lossy().into(), text));
    }
    all
}

#[test]
fn yaml_typed_names_stay_strings_everywhere() {
    let names = [
        ("gw-1", "null"),
        ("gw-2", "yes"),
        ("etcd-1", "0123"),
        ("etcd-2", "on"),
        ("etcd-3", "off"),
        ("master-1", "true"),
        ("master-2", "no"),
        ("master-3", "1e3"),
        ("worker-1", "0x1f"),
        ("worker-2", "y"),
    ];
    let mut pairs: Vec<(String, String)> = names
        .iter()
        .map(|(from, to)| (format!("name: {from},"), format!("name: \"{to}\",")))
        .collect();
    pairs.push(("name: demo".into(), "name: \"null\"".into()));
    // the example's per-node volume path names worker-2
    pairs.push(("{ worker-2: /disks }".into(), "{ \"y\": /disks }".into()));
    let pairs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let r = render(&replaced(&pairs));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let out = r.dir.path().join("out");
    for (_, name) in names {
        let text = std::fs::read_to_string(out.join(format!("{name}.yaml"))).unwrap();
        let doc = &yaml(&text)[0];
        assert_eq!(doc["hostname"], Value::String(name.into()), "{name}");
        assert_eq!(doc["fqdn"], Value::String(format!("{name}.demo.internal")));
        let doc = paasgen::render::NodeDocument {
            name: name.into(),
            role: paasgen::spec::Role::Worker,
            private_ip: "0.0.0.0".parse().unwrap(),
            public_ip: None,
            user_data: text.clone(),
        };
        for f in files_of(&doc) {
            let body = String::from_utf8_lossy(&f.bytes).into_owned();
            match f.path.as_str() {
                "/etc/etcd/etcd.conf.yml" => {
                    let c = &yaml(&body)[0];
                    assert_eq!(c["name"], Value::String(name.into()));
                    assert_eq!(c["initial-cluster-token"], "null-etcd");
                }
                "/etc/kubernetes/kubeadm-join.yaml" | "/etc/kubernetes/kubeadm-init.yaml" => {
                    let docs = yaml(&body);
                    assert_eq!(
                        docs[0]["nodeRegistration"]["name"],
                        Value::String(name.into())
                    );
                    if let Some(cc) = docs.iter().find(|d| d["kind"] == "ClusterConfiguration") {
                        assert_eq!(cc["clusterName"], Value::String("null".into()));
                    }
                }
                _ => {}
            }
        }
        if have("cloud-init") {
            let (ok, out) = run(Command::new("cloud-init")
                .args(["schema", "--config-file"])
                .arg(out.join(format!("{name}.yaml"))));
            assert!(ok && out.contains("Valid cloud-config"), "{name}: {out}");
        }
    }
    let kubeconfig =
        std::fs::read_to_string(r.dir.path().join(".paasgen/admin.kubeconfig")).unwrap();
    let k = &yaml(&kubeconfig)[0];
    assert_eq!(k["clusters"][0]["name"], Value::String("null".into()));
    assert_eq!(
        k["contexts"][0]["context"]["cluster"],
        Value::String("null".into())
    );
    // `~` is YAML's null and no host name: refused.
    let r = render(&replaced(&[("name: gw-1,", "name: \"~\",")]));
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("nodes[0].name"), "{}", r.stderr);
}

/// Where each string field of the spec is, as (path in messages, from, to-with-{}).
const FIELDS: &[(&str, &str, &str)] = &[
    ("name", "name: demo", "name: \"demo{}\""),
    ("domain", "domain: demo.internal", "domain: \"demo.internal{}\""),
    (
        "ssh_authorized_keys[0]",
        "  - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGiug3cgxdqRmML7UZqzadtSetqW+qMl+1k7dEwZhO5j operator@example",
        "  - \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGiug3cgxdqRmML7UZqzadtSetqW+qMl+1k7dEwZhO5j operator@example{}\"",
    ),
    ("network.private_interface", "private_interface: ens3", "private_interface: \"ens3{}\""),
    ("network.public_interface", "public_interface: ens4", "public_interface: \"ens4{}\""),
    ("etcd.snapshot_schedule", "snapshot_schedule: hourly", "snapshot_schedule: \"hourly{}\""),
    ("kubernetes.version", "version: 1.37.2", "version: \"1.37.2{}\""),
    ("kubernetes.containerd_version", "containerd_version: 2.4.1", "containerd_version: \"2.4.1{}\""),
    ("etcd.version", "version: 3.6.14", "version: \"3.6.14{}\""),
    ("nodes[8].name", "name: worker-1,", "name: \"worker-1{}\","),
    ("nodes[9].labels", "labels: { ingress: \"true\" }", "labels: { \"ingress{}\": \"true\" }"),
    ("nodes[9].labels.ingress", "labels: { ingress: \"true\" }", "labels: { ingress: \"true{}\" }"),
    ("openstack.image", "image: debian-12", "image: \"debian-12{}\""),
    ("openstack.public_network", "public_network: public", "public_network: \"public{}\""),
    ("openstack.flavors", "gateway: m1.small", "gateway: \"m1.small{}\""),
];

#[test]
fn a_hostile_value_in_any_string_field_is_refused_or_never_lands_raw() {
    // A line break with a line after it, and shell and unit syntax.
    let payloads = [
        ("\\nInjected=reboot.target", "\nInjected=reboot.target"),
        ("$(touch /tmp/paasgen-pwned)", "$(touch /tmp/paasgen-pwned)"),
        ("'; reboot #", "'; reboot #"),
        ("\\u001b[31m", "\u{1b}[31m"),
        // Line breaks to YAML (cloud-init's reader among them), not to JSON.
        ("\\u2028Injected: 1", "\u{2028}Injected: 1"),
        ("\\u2029", "\u{2029}"),
        ("\\u0085", "\u{85}"),
    ];
    for (field, from, to) in FIELDS {
        for (escaped, raw) in payloads {
            let text = replaced(&[(from, &to.replace("{}", escaped))]);
            let r = render(&text);
            if r.code == Some(2) {
                assert!(r.stderr.contains(field), "{field}: {}", r.stderr);
                if raw.contains(char::is_control) {
                    assert!(
                        !r.stderr.contains(raw),
                        "{field}: control characters echoed raw"
                    );
                }
                continue;
            }
            assert_eq!(r.code, Some(0), "{field} {escaped}: {}", r.stderr);
            // The whole value inside one YAML double-quoted scalar is where it belongs.
            let value = to.split('"').nth(1).unwrap().replace("{}", raw);
            let quoted = serde_json::to_string(&value).unwrap();
            for (file, content) in everything(r.dir.path()) {
                assert!(
                    !content.replace(&quoted, "").contains(raw),
                    "{field} = …{escaped}: lands raw in {file}"
                );
                // Inside a YAML scalar too, YAML (cloud-init's PyYAML) breaks the line
                // at these.
                let yaml_file = file.ends_with(".yaml") || file.ends_with(".kubeconfig");
                assert!(
                    !(yaml_file && content.contains(['\u{85}', '\u{2028}', '\u{2029}'])),
                    "{field} = …{escaped}: a YAML line break lands raw in {file}"
                );
            }
        }
    }
}

#[test]
fn accepted_snapshot_schedules_are_ones_systemd_accepts() {
    let candidates = [
        "hourly",
        "weekly",
        "Mon..Fri 22:30",
        "*-*-* 00/2:00:00",
        "*:0/15",
        "*-*-* 03:00 UTC",
        "*-*-* 03:00 Nowhere/Atlantis",
        "daily 10:00",
        "hourly UTC",
        "every hour",
        "hourly\nUnit=reboot.target",
    ];
    let mut accepted = 0;
    for schedule in candidates {
        let escaped = schedule.replace('\n', "\\n");
        let r = render(&replaced(&[(
            "snapshot_schedule: hourly",
            &format!("snapshot_schedule: \"{escaped}\""),
        )]));
        if r.code != Some(0) {
            assert!(r.stderr.contains("etcd.snapshot_schedule"), "{}", r.stderr);
            continue;
        }
        accepted += 1;
        let timer = everything(r.dir.path())
            .into_iter()
            .find(|(f, _)| f == "/etc/systemd/system/paasgen-etcd-snapshot.timer")
            .unwrap()
            .1;
        let lines: Vec<&str> = timer.lines().filter(|l| !l.starts_with('#')).collect();
        assert!(
            lines.contains(&format!("OnCalendar={schedule}").as_str()),
            "{timer}"
        );
        assert_eq!(
            lines.iter().filter(|l| l.contains('=')).count(),
            5,
            "{timer}"
        );
        if have("systemd-analyze") {
            let (ok, out) = run(Command::new("systemd-analyze").args(["calendar", schedule]));
            assert!(ok, "paasgen accepts `{schedule}`, systemd does not: {out}");
        }
    }
    assert_eq!(accepted, 6);
}
