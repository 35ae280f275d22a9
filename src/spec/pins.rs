//! The one pins table: `images/versions` (what the node image is built with),
//! `images/upgrade-versions` (what the labs upgrade to) and `images/addon-versions` (the
//! addons' images), compiled in. The spec's defaults
//! and the platform's own images come from here, so the binary and the image build
//! cannot name different releases; `disagreements` checks the tables that only the
//! binary has (checksums per release, kubeadm's CoreDNS per release) against it.

use std::collections::BTreeMap;
use std::sync::LazyLock;

const IMAGE_VERSIONS: &str = include_str!("../../images/versions");
const UPGRADE_VERSIONS: &str = include_str!("../../images/upgrade-versions");
const ADDON_VERSIONS: &str = include_str!("../../images/addon-versions");

/// KEY -> value, `${KEY}` of earlier lines expanded as the shell does when it sources them.
pub type Pins = BTreeMap<String, String>;

static PINS: LazyLock<Pins> = LazyLock::new(|| {
    let mut pins = parse(IMAGE_VERSIONS).expect("images/versions parses (tested)");
    pins.extend(parse(UPGRADE_VERSIONS).expect("images/upgrade-versions parses (tested)"));
    pins.extend(parse(ADDON_VERSIONS).expect("images/addon-versions parses (tested)"));
    pins
});

/// The value of `key` in the pins table; the keys used are fixed in the code, and a
/// test reads each of them.
pub fn pin(key: &str) -> &'static str {
    PINS.get(key)
        .unwrap_or_else(|| panic!("images/versions has no {key}"))
}

/// Reads the shell-sourceable KEY=VALUE format (comments, blank lines, `${KEY}`).
pub fn parse(text: &str) -> Result<Pins, String> {
    let mut pins = Pins::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("line {}: not KEY=VALUE", n + 1));
        };
        if key.is_empty()
            || !key
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(format!("line {}: {key:?} is not a KEY", n + 1));
        }
        let value = expand(value, &pins).map_err(|e| format!("line {}: {e}", n + 1))?;
        pins.insert(key.to_string(), value);
    }
    Ok(pins)
}

fn expand(value: &str, pins: &Pins) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find('}')
            .ok_or_else(|| "an unclosed ${".to_string())?;
        let name = &rest[start + 2..start + end];
        out.push_str(
            pins.get(name)
                .ok_or_else(|| format!("${{{name}}} is not set above"))?,
        );
        rest = &rest[start + end + 1..];
    }
    if rest.contains(['$', '`', ' ', '"', '\'']) {
        return Err(format!("{value:?}: only plain values and ${{KEY}}"));
    }
    out.push_str(rest);
    Ok(out)
}

/// Where the binary's own tables disagree with `pins`: each entry names the pin.
pub fn disagreements(pins: &Pins) -> Vec<String> {
    use super::versions;
    let get = |key: &str| pins.get(key).map(String::as_str).unwrap_or("");
    let mut found = Vec::new();
    let mut check = |ok: bool, what: String| {
        if !ok {
            found.push(what);
        }
    };
    for key in ["KUBERNETES_VERSION", "KUBERNETES_UPGRADE_FROM"] {
        let version = get(key);
        check(
            versions::Version::parse(version).is_some(),
            format!("{key}={version} is not a release"),
        );
        check(
            versions::addon_images(version).is_some(),
            format!("{key}={version}: versions::ADDONS has no CoreDNS for it"),
        );
    }
    let image = get("KUBERNETES_VERSION");
    let coredns = format!(
        "registry.k8s.io/coredns/coredns:v{}",
        get("COREDNS_VERSION")
    );
    check(
        versions::addon_images(image).is_some_and(|(_, c)| c == coredns),
        format!(
            "COREDNS_VERSION={}: versions::ADDONS pins another for {image}",
            get("COREDNS_VERSION")
        ),
    );
    let crictl = versions::kubernetes(image, &versions::Overrides::new()).crictl_version;
    check(
        crictl == get("CRICTL_VERSION"),
        format!(
            "CRICTL_VERSION={}: versions::CRICTL says {crictl} for {image}",
            get("CRICTL_VERSION")
        ),
    );
    check(
        versions::etcd(get("ETCD_VERSION"), None).sha256.is_some(),
        format!(
            "ETCD_VERSION={}: versions::ETCD has no sha256 for it",
            get("ETCD_VERSION")
        ),
    );
    check(
        versions::containerd(get("CONTAINERD_VERSION"), &versions::Overrides::new())
            .sha256
            .is_some(),
        format!(
            "CONTAINERD_VERSION={}: versions::CONTAINERD has no sha256 for it",
            get("CONTAINERD_VERSION")
        ),
    );
    check(
        versions::helm_sha256(get("HELM_VERSION")).is_some(),
        format!(
            "HELM_VERSION={}: versions::HELM has no sha256 for it",
            get("HELM_VERSION")
        ),
    );
    check(
        versions::cni_plugins_sha256(get("CNI_PLUGINS_VERSION")).is_some(),
        format!(
            "CNI_PLUGINS_VERSION={}: no sha256 for it",
            get("CNI_PLUGINS_VERSION")
        ),
    );
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_image_build_and_the_binary_pin_the_same_releases() {
        assert_eq!(disagreements(&PINS), Vec::<String>::new());
        // The example a user starts from says what the binary defaults to.
        let example = crate::spec::parse("cluster.yaml", crate::spec::EXAMPLE).unwrap();
        assert_eq!(example.0.kubernetes.version, pin("KUBERNETES_VERSION"));
        assert_eq!(
            example.0.kubernetes.containerd_version,
            pin("CONTAINERD_VERSION")
        );
        assert_eq!(example.0.etcd.version, pin("ETCD_VERSION"));
    }

    #[test]
    fn the_table_reads_as_the_shell_that_sources_it() {
        let root = env!("CARGO_MANIFEST_DIR");
        let script = format!(
            "set -a; . {root}/images/versions; . {root}/images/upgrade-versions; . {root}/images/addon-versions; for k in {}; do printf '%s=%s\\n' \"$k\" \"${{!k}}\"; done",
            PINS.keys().cloned().collect::<Vec<_>>().join(" ")
        );
        let out = std::process::Command::new("bash")
            .args(["-c", &script])
            .output()
            .unwrap();
        assert!(out.status.success());
        let shell: Pins = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(shell, *PINS);
    }

    #[test]
    fn a_pin_changed_on_one_side_only_is_named() {
        for (key, other) in [
            ("CRICTL_VERSION", "1.36.0"),
            ("COREDNS_VERSION", "1.14.2"),
            ("ETCD_VERSION", "3.6.99"),
            ("CONTAINERD_VERSION", "2.4.9"),
            ("CNI_PLUGINS_VERSION", "1.9.2"),
            ("KUBERNETES_UPGRADE_FROM", "1.36.9"),
        ] {
            let mut pins = PINS.clone();
            pins.insert(key.to_string(), other.to_string());
            let found = disagreements(&pins);
            assert!(
                found.len() == 1 && found[0].starts_with(&format!("{key}={other}")),
                "{key}={other}: {found:?}"
            );
        }
    }

    #[test]
    fn the_format_is_checked() {
        assert!(parse("A=1\nB=${A}-x\n").unwrap()["B"] == "1-x");
        assert!(parse("A=$(id)\n").unwrap_err().contains("line 1"));
        assert!(parse("B=${A}\n").unwrap_err().contains("${A} is not set"));
        assert!(parse("lower=1\n").is_err());
        assert!(parse("A 1\n").is_err());
    }
}
