//! Pinned downloads: upstream release URLs with their sha256 (linux/amd64), checked on
//! the node before anything is installed. Adding a version = adding a row here.

/// One file a node downloads and verifies.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Download {
    pub url: String,
    pub sha256: String,
}

/// Everything a Kubernetes node downloads for one Kubernetes version.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KubernetesRelease {
    pub kubeadm: Download,
    pub kubelet: Download,
    pub kubectl: Download,
    pub crictl: Download,
    pub cni_plugins: Download,
}

struct KubernetesRow {
    version: &'static str,
    kubeadm: &'static str,
    kubelet: &'static str,
    kubectl: &'static str,
    crictl_version: &'static str,
    crictl: &'static str,
}

const KUBERNETES: &[KubernetesRow] = &[
    KubernetesRow {
        version: "1.34.4",
        kubeadm: "b967f1fa0e36621c402d38bb560eb4a943954d5cf5a00e5150842f6f5da73455",
        kubelet: "03b8fea715a7ef82eeaf518dee34c72670c57cc7bc40dc1320c04fbf4f15172f",
        kubectl: "d50c359d95e0841eaad08ddc27c7be37cba8fdccfba5c8e2ded65e121ff112db",
        crictl_version: "1.34.0",
        crictl: "a8ff2a3edb37a98daf3aba7c3b284fe0aa5bff24166d896ab9ef64c8913c9f51",
    },
    KubernetesRow {
        version: "1.35.1",
        kubeadm: "8a7ff344eef1bfba88f9a74b3fdc9ea4448c94f1b3cefb8c0aeeaf1f96e05053",
        kubelet: "e7343310e03ff0d424df4397bdfa4468947d6d1f0f93dac586c1e8d6e4086d5d",
        kubectl: "36e2f4ac66259232341dd7866952d64a958846470f6a9a6a813b9117bd965207",
        crictl_version: "1.35.0",
        crictl: "2e141e5b22cb189c40365a11807d69b76b9b3caced89fac2f4ec879408ce2177",
    },
];

const CNI_PLUGINS_VERSION: &str = "1.8.0";
const CNI_PLUGINS_SHA256: &str = "ab3bda535f9d90766cccc90d3dddb5482003dd744d7f22bcf98186bf8eea8be6";

const ETCD: &[(&str, &str)] = &[
    (
        "3.5.27",
        "0aad9a9e4e0817a021e933f9806a2b2960a62f949ad5a3d6436d8886945cb1bc",
    ),
    (
        "3.5.17",
        "eff6ac621d41711085d0f38fab17d8fa3705f6326c3ff11301a1f5a71fc94edd",
    ),
];

pub fn kubernetes(version: &str) -> Option<KubernetesRelease> {
    let row = KUBERNETES.iter().find(|r| r.version == version)?;
    let k8s = |bin: &str, sha256: &str| Download {
        url: format!("https://dl.k8s.io/release/v{version}/bin/linux/amd64/{bin}"),
        sha256: sha256.to_string(),
    };
    Some(KubernetesRelease {
        kubeadm: k8s("kubeadm", row.kubeadm),
        kubelet: k8s("kubelet", row.kubelet),
        kubectl: k8s("kubectl", row.kubectl),
        crictl: Download {
            url: format!(
                "https://github.com/kubernetes-sigs/cri-tools/releases/download/v{v}/crictl-v{v}-linux-amd64.tar.gz",
                v = row.crictl_version
            ),
            sha256: row.crictl.to_string(),
        },
        cni_plugins: Download {
            url: format!(
                "https://github.com/containernetworking/plugins/releases/download/v{v}/cni-plugins-linux-amd64-v{v}.tgz",
                v = CNI_PLUGINS_VERSION
            ),
            sha256: CNI_PLUGINS_SHA256.to_string(),
        },
    })
}

pub fn known_kubernetes() -> Vec<&'static str> {
    KUBERNETES.iter().map(|r| r.version).collect()
}

/// The etcd release tarball for `version`, if paasgen pins its checksum.
pub fn etcd_release(version: &str) -> Option<Download> {
    let (_, sha256) = ETCD.iter().find(|(v, _)| *v == version)?;
    Some(etcd_download(version, sha256))
}

/// The etcd release tarball URL with a checksum the user supplied.
pub fn etcd_download(version: &str, sha256: &str) -> Download {
    Download {
        url: format!("https://github.com/etcd-io/etcd/releases/download/v{version}/etcd-v{version}-linux-amd64.tar.gz"),
        sha256: sha256.to_string(),
    }
}

pub fn known_etcd() -> Vec<&'static str> {
    ETCD.iter().map(|(v, _)| *v).collect()
}
