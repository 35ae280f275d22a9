//! What paasgen installs, and how a node checks it: the upstream release URL of every
//! artifact (linux/amd64) and its sha256 where paasgen pins one. A node first looks for
//! the pinned version in its image (`paasgen image build` bakes it in); only when the
//! image lacks it does it download, and only what it can verify against a checksum.
//!
//! A checksum is pinned here only when it was read from a published checksum list (the
//! upstream `.sha256` files as copied by pinning projects). Where none could be found
//! (1.37.2 here), the artifact comes from the baked image, or from a download whose
//! sha256 the spec gives. A wrong pin can only make a node refuse a download, never
//! accept a bad one.

use super::pins::pin;
use serde::Serialize;

/// One file a node may download, verified before use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Download {
    pub url: String,
    /// `None`: no checksum is known, so the node must find the version in its image.
    pub sha256: Option<String>,
}

impl Download {
    /// The same file from a mirror that keeps upstream's host and path under its prefix
    /// (`mirrors.files`): the checksum does not change.
    pub fn through(mut self, files_mirror: Option<&str>) -> Download {
        if let (Some(prefix), Some(rest)) = (files_mirror, self.url.strip_prefix("https://")) {
            self.url = format!("{}/{rest}", prefix.trim_end_matches('/'));
        }
        self
    }
}

/// Registries whose images nodes pull (kubeadm's, flannel's, the addons'), with the
/// endpoint containerd would use without a mirror.
pub const REGISTRIES: [(&str, &str); 3] = [
    ("registry.k8s.io", "https://registry.k8s.io"),
    ("ghcr.io", "https://ghcr.io"),
    ("docker.io", "https://registry-1.docker.io"),
];

/// The Kubernetes minor versions paasgen renders for, with the oldest external etcd the
/// matching kubeadm accepts (`MinExternalEtcdVersion` in cmd/kubeadm/app/constants).
/// 1.34 is past its end of life: still rendered, with a warning.
const MINORS: &[(u32, bool, Version)] = &[
    (34, false, Version(3, 5, 24)),
    (35, true, Version(3, 5, 24)),
    (36, true, Version(3, 5, 24)),
    (37, true, Version(3, 5, 24)),
];

/// sha256 of kubeadm, kubelet, kubectl for one release (from published checksum lists).
struct KubernetesRow {
    version: &'static str,
    kubeadm: &'static str,
    kubelet: &'static str,
    kubectl: &'static str,
}

const KUBERNETES: &[KubernetesRow] = &[
    KubernetesRow {
        version: "1.34.4",
        kubeadm: "b967f1fa0e36621c402d38bb560eb4a943954d5cf5a00e5150842f6f5da73455",
        kubelet: "03b8fea715a7ef82eeaf518dee34c72670c57cc7bc40dc1320c04fbf4f15172f",
        kubectl: "d50c359d95e0841eaad08ddc27c7be37cba8fdccfba5c8e2ded65e121ff112db",
    },
    KubernetesRow {
        version: "1.35.1",
        kubeadm: "8a7ff344eef1bfba88f9a74b3fdc9ea4448c94f1b3cefb8c0aeeaf1f96e05053",
        kubelet: "e7343310e03ff0d424df4397bdfa4468947d6d1f0f93dac586c1e8d6e4086d5d",
        kubectl: "36e2f4ac66259232341dd7866952d64a958846470f6a9a6a813b9117bd965207",
    },
    KubernetesRow {
        version: "1.37.0",
        kubeadm: "9406f2e75c7fc99391f5fb0575b07914f2d90750d2b8c2c473e9c9c5194c9352",
        kubelet: "ee554f77da57ad40a5d5f8625ac9c4af8b75d9d5a259367a885e5e816954b044",
        kubectl: "6129359f4e1f3848a5572ccb0b26cf28b8ca08cef38c95a765b2f64a2c961a2f",
    },
];

/// crictl release per Kubernetes minor, with its sha256 where known.
const CRICTL: &[(u32, &str, Option<&str>)] = &[
    (
        34,
        "1.34.0",
        Some("a8ff2a3edb37a98daf3aba7c3b284fe0aa5bff24166d896ab9ef64c8913c9f51"),
    ),
    (
        35,
        "1.35.0",
        Some("2e141e5b22cb189c40365a11807d69b76b9b3caced89fac2f4ec879408ce2177"),
    ),
    (
        36,
        "1.36.0",
        Some("83855e114566a8a8c44c548d515670f51de3a5e1da8b2effb59870e2f10c25a3"),
    ),
    (
        37,
        "1.37.0",
        Some("67c983ee8a6bbce73d39a186e633c5fe4f8a70e62171ac3bd92a9c1b2c601670"),
    ),
];

/// The CNI plugins release tarball's sha256 per version (the image's is
/// `CNI_PLUGINS_VERSION` in the pins table).
const CNI_PLUGINS: &[(&str, &str)] = &[(
    "1.9.1",
    "b98f74a0f8522f0a83867178729c1aa70f2158f90c45a2ca8fa791db1c76b303",
)];

pub fn cni_plugins_sha256(version: &str) -> Option<&'static str> {
    CNI_PLUGINS
        .iter()
        .find(|(v, _)| *v == version)
        .map(|(_, s)| *s)
}

/// containerd release tarballs (`bin/containerd*`, `bin/ctr`) with known checksums.
const CONTAINERD: &[(&str, &str)] = &[
    (
        "2.4.1",
        "d65eda6a188aac1006848d8060099be88ba9c4bcddbfd9a23a961194710d0dd4",
    ),
    (
        "2.2.1",
        "f5d8e90ecb6c1c7e33ecddf8cc268a93b9e5b54e0e850320d765511d76624f41",
    ),
];

/// Helm release tarballs (`linux-amd64/helm`) with known checksums.
const HELM: &[(&str, &str)] = &[(
    "4.3.0",
    "86584a54def73570558f66f5111cc53dfed56689637ae32c1201205d494f54fb",
)];

pub fn helm_sha256(version: &str) -> Option<&'static str> {
    HELM.iter().find(|(v, _)| *v == version).map(|(_, s)| *s)
}

/// The Helm release the masters run (the image's pin) and its tarball.
pub fn helm(overrides: &Overrides) -> (&'static str, Download) {
    let version = pin("HELM_VERSION");
    (
        version,
        download(
            format!("https://get.helm.sh/helm-v{version}-linux-amd64.tar.gz"),
            helm_sha256(version),
            "helm",
            overrides,
        ),
    )
}

/// etcd release tarballs with known checksums.
const ETCD: &[(&str, &str)] = &[
    (
        "3.6.14",
        "ffe840ff9295808e88cce2794a18a5ac87f12a5203c8314d0bf6aa119b41bac5",
    ),
    (
        "3.5.27",
        "0aad9a9e4e0817a021e933f9806a2b2960a62f949ad5a3d6436d8886945cb1bc",
    ),
];

/// Images the platform runs besides kubeadm's own (which kubeadm names from its version),
/// as the image build names them.
pub fn pause_image() -> String {
    format!("{}/pause:{}", pin("IMAGE_REGISTRY"), pin("PAUSE_VERSION"))
}

pub fn flannel_image() -> &'static str {
    pin("FLANNEL_IMAGE")
}

pub fn flannel_cni_plugin_image() -> &'static str {
    pin("FLANNEL_CNI_PLUGIN_IMAGE")
}

/// A dotted version `major.minor.patch`, compared numerically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32, pub u32);

impl Version {
    pub fn parse(s: &str) -> Option<Version> {
        let mut parts = s.split('.');
        let mut next = || -> Option<u32> {
            let p = parts.next()?;
            if p.is_empty() || p.len() > 6 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            p.parse().ok()
        };
        let v = Version(next()?, next()?, next()?);
        parts.next().is_none().then_some(v)
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// How paasgen stands with a Kubernetes version.
pub enum Support {
    Supported { min_etcd: Version },
    EndOfLife { min_etcd: Version },
    Unsupported,
}

pub fn kubernetes_support(v: Version) -> Support {
    match MINORS
        .iter()
        .find(|(minor, _, _)| v.0 == 1 && v.1 == *minor)
    {
        Some((_, true, min_etcd)) => Support::Supported {
            min_etcd: *min_etcd,
        },
        Some((_, false, min_etcd)) => Support::EndOfLife {
            min_etcd: *min_etcd,
        },
        None => Support::Unsupported,
    }
}

pub fn supported_minors() -> String {
    let minors: Vec<String> = MINORS.iter().map(|(m, _, _)| format!("1.{m}")).collect();
    minors.join(", ")
}

/// Checksums the spec supplies for artifacts paasgen has none pinned for.
pub type Overrides = std::collections::BTreeMap<String, String>;

/// Names an override may use (`kubernetes.sha256.<name>`).
pub const ARTIFACTS: [&str; 7] = [
    "kubeadm",
    "kubelet",
    "kubectl",
    "crictl",
    "cni_plugins",
    "containerd",
    "helm",
];

fn download(url: String, pinned: Option<&str>, name: &str, overrides: &Overrides) -> Download {
    Download {
        url,
        sha256: overrides
            .get(name)
            .cloned()
            .or_else(|| pinned.map(str::to_string)),
    }
}

/// Everything a Kubernetes node installs for one version.
#[derive(Debug, Clone, Serialize)]
pub struct KubernetesRelease {
    pub kubeadm: Download,
    pub kubelet: Download,
    pub kubectl: Download,
    pub crictl_version: String,
    pub crictl: Download,
    pub cni_plugins_version: String,
    pub cni_plugins: Download,
}

impl KubernetesRelease {
    /// The artifacts a node could not download (no checksum known).
    pub fn unverifiable(&self) -> Vec<&'static str> {
        [
            ("kubeadm", &self.kubeadm),
            ("kubelet", &self.kubelet),
            ("kubectl", &self.kubectl),
            ("crictl", &self.crictl),
            ("cni_plugins", &self.cni_plugins),
        ]
        .into_iter()
        .filter(|(_, d)| d.sha256.is_none())
        .map(|(n, _)| n)
        .collect()
    }
}

pub fn kubernetes(version: &str, overrides: &Overrides) -> KubernetesRelease {
    let row = KUBERNETES.iter().find(|r| r.version == version);
    let minor = Version::parse(version).map_or(0, |v| v.1);
    let (crictl_version, crictl_sha) = CRICTL
        .iter()
        .find(|(m, _, _)| *m == minor)
        .map_or(("1.37.0", None), |(_, v, s)| (*v, *s));
    let k8s = |bin: &str, sha: Option<&str>| {
        download(
            format!("https://dl.k8s.io/release/v{version}/bin/linux/amd64/{bin}"),
            sha,
            bin,
            overrides,
        )
    };
    let cni = pin("CNI_PLUGINS_VERSION");
    KubernetesRelease {
        kubeadm: k8s("kubeadm", row.map(|r| r.kubeadm)),
        kubelet: k8s("kubelet", row.map(|r| r.kubelet)),
        kubectl: k8s("kubectl", row.map(|r| r.kubectl)),
        crictl_version: crictl_version.to_string(),
        crictl: download(
            format!("https://github.com/kubernetes-sigs/cri-tools/releases/download/v{crictl_version}/crictl-v{crictl_version}-linux-amd64.tar.gz"),
            crictl_sha,
            "crictl",
            overrides,
        ),
        cni_plugins_version: cni.to_string(),
        cni_plugins: download(
            format!("https://github.com/containernetworking/plugins/releases/download/v{cni}/cni-plugins-linux-amd64-v{cni}.tgz"),
            cni_plugins_sha256(cni),
            "cni_plugins",
            overrides,
        ),
    }
}

/// Whether a cluster whose oldest kubelet runs `from` may move to `to` by replacing its
/// nodes, as kubeadm upgrades: one minor at a time, never back a minor (the API's
/// stored objects and etcd's data may already be in the newer form), a patch back
/// within the minor allowed (what rolls back a bad patch release).
pub fn kubernetes_step(from: Version, to: Version) -> Result<(), String> {
    if to.0 != from.0 {
        return Err(format!("{from} -> {to} changes the major version"));
    }
    if to.1 < from.1 {
        return Err(format!(
            "{from} -> {to} is a downgrade: a minor version cannot be undone by replacement (restore a backup taken before the upgrade instead)"
        ));
    }
    if to.1 > from.1 + 1 {
        return Err(format!(
            "{from} -> {to} skips a minor version: kubeadm upgrades one minor at a time; upgrade to 1.{}.x first",
            from.1 + 1
        ));
    }
    Ok(())
}

/// The images of the addons kubeadm deploys and upgrades with each release
/// (`CoreDNSVersion` in its cmd/kubeadm/app/constants/constants.go).
const ADDONS: &[(&str, &str)] = &[("1.36.3", "v1.14.2"), ("1.37.2", "v1.14.6")];

/// kube-proxy's and CoreDNS's images as kubeadm `version` deploys them, when paasgen
/// knows which CoreDNS that release pins.
pub fn addon_images(version: &str) -> Option<(String, String)> {
    let (_, coredns) = ADDONS.iter().find(|(v, _)| *v == version)?;
    Some((
        format!("registry.k8s.io/kube-proxy:v{version}"),
        format!("registry.k8s.io/coredns/coredns:{coredns}"),
    ))
}

/// The containerd release tarball for `version`.
pub fn containerd(version: &str, overrides: &Overrides) -> Download {
    let pinned = CONTAINERD
        .iter()
        .find(|(v, _)| *v == version)
        .map(|(_, s)| *s);
    download(
        format!("https://github.com/containerd/containerd/releases/download/v{version}/containerd-{version}-linux-amd64.tar.gz"),
        pinned,
        "containerd",
        overrides,
    )
}

/// The etcd release tarball for `version`; `sha256` is the spec's own checksum, if any.
pub fn etcd(version: &str, sha256: Option<&str>) -> Download {
    let pinned = ETCD.iter().find(|(v, _)| *v == version).map(|(_, s)| *s);
    Download {
        url: format!("https://github.com/etcd-io/etcd/releases/download/v{version}/etcd-v{version}-linux-amd64.tar.gz"),
        sha256: sha256.or(pinned).map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        assert!(Version::parse("3.5.9").unwrap() < Version::parse("3.5.24").unwrap());
        assert!(Version::parse("3.6.0").unwrap() > Version::parse("3.5.24").unwrap());
        assert!(Version::parse("3.5").is_none());
        assert!(Version::parse("3.5.1.2").is_none());
        assert!(Version::parse("3.5.x").is_none());
        assert!(Version::parse("1.6$(touch /tmp/x)").is_none());
    }

    #[test]
    fn spec_checksums_fill_what_is_not_pinned() {
        let none = Overrides::new();
        let r = kubernetes("1.37.2", &none);
        assert_eq!(r.unverifiable(), ["kubeadm", "kubelet", "kubectl"]);
        let mut given = Overrides::new();
        given.insert("kubeadm".into(), "a".repeat(64));
        let r = kubernetes("1.37.2", &given);
        assert_eq!(r.kubeadm.sha256.as_deref(), Some("a".repeat(64).as_str()));
        assert!(kubernetes("1.35.1", &none).kubeadm.sha256.is_some());
    }

    #[test]
    fn kubernetes_moves_one_minor_up_at_a_time() {
        let v = |s| Version::parse(s).unwrap();
        assert!(kubernetes_step(v("1.36.3"), v("1.37.2")).is_ok());
        assert!(kubernetes_step(v("1.37.2"), v("1.37.2")).is_ok());
        assert!(kubernetes_step(v("1.37.2"), v("1.37.0")).is_ok());
        let down = kubernetes_step(v("1.37.2"), v("1.36.3")).unwrap_err();
        assert!(down.contains("downgrade"), "{down}");
        let jump = kubernetes_step(v("1.35.1"), v("1.37.2")).unwrap_err();
        assert!(jump.contains("upgrade to 1.36.x first"), "{jump}");
        assert!(kubernetes_step(v("1.37.2"), v("2.0.0")).is_err());
    }
}
