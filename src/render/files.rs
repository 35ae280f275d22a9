//! Which files each role gets. The single place where key material becomes files, so
//! what a node holds can be read off here.

use super::context::NodeContext;
use super::templates::Templates;
use crate::pki::{CertKey, Pki};
use crate::spec::{Node, Role, Spec};
use anyhow::Result;

/// One file cloud-init writes on the node (owner root:root).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub path: String,
    pub mode: u32,
    pub content: Vec<u8>,
}

const PRIVATE: u32 = 0o600;
const CONFIG: u32 = 0o644;
const SCRIPT: u32 = 0o755;

fn file(path: &str, mode: u32, content: impl Into<Vec<u8>>) -> File {
    File {
        path: path.to_string(),
        mode,
        content: content.into(),
    }
}

/// A certificate (0644) and its key (0600) as `<dir>/<name>.crt` and `.key`.
fn cert_and_key(dir: &str, name: &str, ck: &CertKey) -> [File; 2] {
    [
        file(&format!("{dir}/{name}.crt"), CONFIG, ck.cert_pem.as_bytes()),
        file(&format!("{dir}/{name}.key"), PRIVATE, ck.key_pem.as_bytes()),
    ]
}

/// One script per addon where cloud-init's scripts_user runs them after runcmd (its
/// directory's scripts run in name order, and `runcmd` sorts before `runcmd-addon-*`):
/// cloud-init names a failed one in `cloud-init status --long`.
fn addon_hooks(t: &Templates, ctx: &tera::Context, spec: &Spec) -> Result<Vec<File>> {
    spec.addons
        .all()
        .iter()
        .map(|addon| {
            let mut ctx = ctx.clone();
            ctx.insert("addon", &addon.name);
            Ok(file(
                &format!(
                    "/var/lib/cloud/instance/scripts/runcmd-addon-{}",
                    addon.name
                ),
                SCRIPT,
                t.render("files/addon-hook.sh.tera", &ctx)?,
            ))
        })
        .collect()
}

/// Renders the files of `node`.
pub fn for_node(
    t: &Templates,
    ctx: &tera::Context,
    node_ctx: &NodeContext,
    pki: &Pki,
    spec: &Spec,
    node: &Node,
) -> Result<Vec<File>> {
    let render = |name: &str| t.render(&format!("files/{name}.tera"), ctx);
    let mut files = vec![
        file("/etc/hosts", CONFIG, render("hosts")?),
        file(
            "/usr/local/lib/paasgen/functions.sh",
            CONFIG,
            render("functions.sh")?,
        ),
        file(
            "/usr/local/sbin/paasgen-ensure-packages",
            SCRIPT,
            render("ensure-packages.sh")?,
        ),
    ];
    // The image runs no resolver of its own (no systemd-resolved): without this file
    // a node resolves nothing, and CoreDNS, which forwards to it, refuses to start.
    if !spec.network.dns_servers.is_empty() {
        files.push(file("/etc/resolv.conf", CONFIG, render("resolv.conf")?));
    }
    files.extend(mirror_files(t, ctx)?);
    if node.role != Role::Gateway {
        files.push(file(
            "/etc/systemd/system/paasgen-default-route.service",
            CONFIG,
            render("default-route.service")?,
        ));
    }
    match node.role {
        Role::Gateway => {
            files.extend([
                file(
                    "/etc/sysctl.d/60-paasgen-gateway.conf",
                    CONFIG,
                    render("gateway-sysctl.conf")?,
                ),
                file("/etc/nftables.conf", SCRIPT, render("nftables.conf")?),
                file(
                    "/etc/keepalived/keepalived.conf",
                    CONFIG,
                    render("keepalived.conf")?,
                ),
                file(
                    "/etc/systemd/system/keepalived.service.d/paasgen-order.conf",
                    CONFIG,
                    render("keepalived-order.conf")?,
                ),
                file("/etc/haproxy/haproxy.cfg", CONFIG, render("haproxy.cfg")?),
            ]);
        }
        Role::Etcd => {
            let dir = "/etc/etcd/pki";
            files.push(file(
                &format!("{dir}/ca.crt"),
                CONFIG,
                pki.etcd_ca.cert_pem.as_bytes(),
            ));
            files.extend(cert_and_key(dir, "server", &pki.etcd_server[&node.name]));
            files.extend(cert_and_key(dir, "peer", &pki.etcd_peer[&node.name]));
            files.extend(cert_and_key(
                dir,
                "healthcheck-client",
                &pki.etcd_healthcheck_client,
            ));
            files.extend([
                file("/etc/etcd/etcd.conf.yml", CONFIG, render("etcd.conf.yml")?),
                file(
                    "/etc/systemd/system/etcd.service",
                    CONFIG,
                    render("etcd.service")?,
                ),
                file(
                    "/usr/local/sbin/paasgen-install-etcd",
                    SCRIPT,
                    render("install-etcd.sh")?,
                ),
                file("/etc/profile.d/etcdctl.sh", CONFIG, render("etcdctl.sh")?),
                file(
                    "/usr/local/sbin/paasgen-etcd-snapshot",
                    SCRIPT,
                    render("etcd-snapshot.sh")?,
                ),
                file(
                    "/etc/systemd/system/paasgen-etcd-snapshot.service",
                    CONFIG,
                    render("etcd-snapshot.service")?,
                ),
                file(
                    "/etc/systemd/system/paasgen-etcd-snapshot.timer",
                    CONFIG,
                    render("etcd-snapshot.timer")?,
                ),
            ]);
            let etcd = node_ctx
                .etcd
                .as_ref()
                .expect("an etcd node's context has etcd");
            if etcd.upload.is_some() {
                // The member's own PUT-only signature: a secret.
                files.push(file(
                    "/etc/paasgen/etcd-backup-upload",
                    PRIVATE,
                    render("etcd-backup-upload.env")?,
                ));
            }
            // Set by `recover` on the member that founds the cluster again.
            if etcd.restore.is_some() {
                files.extend([
                    file(
                        "/usr/local/sbin/paasgen-etcd-restore",
                        SCRIPT,
                        render("etcd-restore.py")?,
                    ),
                    file(
                        "/etc/systemd/system/paasgen-etcd-restore.service",
                        CONFIG,
                        render("etcd-restore.service")?,
                    ),
                ]);
            }
        }
        Role::Master => {
            // Pre-shared control-plane material: a master joins without a certificate key.
            // Kept apart from /etc/kubernetes/pki, which `kubeadm reset` empties; the
            // kubeadm script copies it there before every attempt.
            let dir = "/etc/paasgen/kubernetes-pki";
            files.extend(cert_and_key(dir, "ca", &pki.kubernetes_ca));
            files.extend(cert_and_key(dir, "front-proxy-ca", &pki.front_proxy_ca));
            files.extend([
                file(
                    &format!("{dir}/sa.key"),
                    PRIVATE,
                    pki.service_account.private_pem.as_bytes(),
                ),
                file(
                    &format!("{dir}/sa.pub"),
                    CONFIG,
                    pki.service_account.public_pem.as_bytes(),
                ),
                file(
                    &format!("{dir}/etcd/ca.crt"),
                    CONFIG,
                    pki.etcd_ca.cert_pem.as_bytes(),
                ),
            ]);
            files.extend(cert_and_key(
                dir,
                "apiserver-etcd-client",
                &pki.apiserver_etcd_client,
            ));
            // Outside /etc/kubernetes (kubeadm reset), mounted into the API server pod.
            files.push(file(
                "/etc/paasgen/encryption/config.yaml",
                PRIVATE,
                render("encryption-config.yaml")?,
            ));
            if spec.first_master().is_some_and(|m| m.name == node.name) {
                files.extend([
                    file(
                        "/etc/kubernetes/kubeadm-init.yaml",
                        PRIVATE,
                        render("kubeadm-init.yaml")?,
                    ),
                    file(
                        "/etc/kubernetes/addons/flannel.yaml",
                        CONFIG,
                        render("flannel.yaml")?,
                    ),
                ]);
                if spec.addons.local_path.enabled {
                    files.push(file(
                        "/etc/kubernetes/addons/local-path.yaml",
                        CONFIG,
                        render("local-path.yaml")?,
                    ));
                }
                if spec.addons.mariadb.enabled {
                    files.extend([
                        file(
                            "/etc/kubernetes/addons/mariadb.yaml",
                            PRIVATE,
                            render("mariadb.yaml")?,
                        ),
                        file(
                            "/etc/kubernetes/addons/mariadb.values.yaml",
                            CONFIG,
                            render("mariadb-values.yaml")?,
                        ),
                    ]);
                }
                files.extend(spec.addons.manifests.iter().map(|(name, addon)| {
                    file(
                        &format!("/etc/kubernetes/addons/{name}.yaml"),
                        CONFIG,
                        addon.manifest.value.as_bytes(),
                    )
                }));
                files.extend(addon_hooks(t, ctx, spec)?);
                files.extend([
                    file(
                        "/etc/kubernetes/addons/list",
                        CONFIG,
                        render("addons.list")?,
                    ),
                    file(
                        "/usr/local/sbin/paasgen-addons",
                        SCRIPT,
                        render("addons.sh")?,
                    ),
                    file(
                        "/etc/systemd/system/paasgen-addons.service",
                        CONFIG,
                        render("addons.service")?,
                    ),
                ]);
            }
            files.extend(kubernetes_node(&render)?);
        }
        Role::Worker => files.extend(kubernetes_node(&render)?),
    }
    Ok(files)
}

/// apt sources and containerd registry hosts for the spec's mirrors (`mirrors`).
fn mirror_files(t: &Templates, ctx: &tera::Context) -> Result<Vec<File>> {
    let mut files = Vec::new();
    let mirrors = ctx.get("mirrors").cloned().unwrap_or_default();
    if let Some(debian) = mirrors.get("debian").filter(|d| !d.is_null()) {
        // Written aside: apt_install puts it in place with the image's codename.
        files.push(file(
            "/etc/paasgen/apt-mirror.sources",
            CONFIG,
            t.render("files/apt-mirror.sources.tera", ctx)?,
        ));
        if let Some(key) = debian.get("key").and_then(|k| k.as_str()) {
            files.push(file(super::context::MIRROR_KEY_PATH, CONFIG, key));
        }
    }
    for registry in mirrors
        .get("registries")
        .and_then(|r| r.as_array())
        .into_iter()
        .flatten()
    {
        let mut host_ctx = ctx.clone();
        host_ctx.insert("registry", registry);
        let upstream = registry["upstream"].as_str().unwrap_or_default();
        files.push(file(
            &format!("/etc/containerd/certs.d/{upstream}/hosts.toml"),
            CONFIG,
            t.render("files/containerd-hosts.toml.tera", &host_ctx)?,
        ));
    }
    Ok(files)
}

/// What masters and workers share: software, kubelet, kubeadm join.
fn kubernetes_node(render: &dyn Fn(&str) -> Result<String>) -> Result<Vec<File>> {
    Ok(vec![
        file(
            "/usr/local/sbin/paasgen-install-kubernetes",
            SCRIPT,
            render("install-kubernetes.sh")?,
        ),
        file(
            "/etc/containerd/config.toml",
            CONFIG,
            render("containerd-config.toml")?,
        ),
        file(
            "/etc/systemd/system/containerd.service",
            CONFIG,
            render("containerd.service")?,
        ),
        file(
            "/etc/systemd/system/kubelet.service",
            CONFIG,
            render("kubelet.service")?,
        ),
        file(
            "/etc/systemd/system/kubelet.service.d/10-kubeadm.conf",
            CONFIG,
            render("kubelet-kubeadm.conf")?,
        ),
        file(
            "/etc/modules-load.d/kubernetes.conf",
            CONFIG,
            render("kubernetes-modules.conf")?,
        ),
        file(
            "/etc/sysctl.d/99-kubernetes.conf",
            CONFIG,
            render("kubernetes-sysctl.conf")?,
        ),
        // Holds the bootstrap token.
        file(
            "/etc/kubernetes/kubeadm-join.yaml",
            PRIVATE,
            render("kubeadm-join.yaml")?,
        ),
        file(
            "/usr/local/sbin/paasgen-kubeadm",
            SCRIPT,
            render("kubeadm.sh")?,
        ),
        file(
            "/usr/local/sbin/paasgen-leave-load-balancer",
            SCRIPT,
            render("leave-load-balancer.sh")?,
        ),
        file(
            "/etc/systemd/system/paasgen-leave-load-balancer.service",
            CONFIG,
            render("leave-load-balancer.service")?,
        ),
        // A prefix drop-in: systemd applies it to every transient scope runc makes.
        file(
            "/etc/systemd/system/cri-containerd-.scope.d/paasgen-stop.conf",
            CONFIG,
            render("container-scope-stop.conf")?,
        ),
        file(
            "/etc/systemd/system/paasgen-kubeadm.service",
            CONFIG,
            render("kubeadm.service")?,
        ),
    ])
}
