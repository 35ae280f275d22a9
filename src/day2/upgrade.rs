//! What `paasgen upgrade [--to VERSION] [--etcd VERSION [--etcd-sha256 HEX]]` does:
//! brings the running cluster to what the spec says, by replacement. `--to` first sets
//! `kubernetes.version` in the spec file, `--etcd` `etcd.version` (and `--etcd-sha256`
//! `etcd.sha256`, the release tarball's checksum, for a version paasgen pins none for);
//! the edited spec must be valid, else the file is left as it was.
//!
//! Every node whose freshly rendered user-data differs from what its server was
//! launched with is rebuilt (see `replace`), one at a time, in an order that keeps the
//! cluster serving: etcd members (each swapped in etcd's membership and healthy before
//! the next), masters, workers (drained first), gateways (each only while the other
//! serves, stopped cleanly so the VIPs move first, and serving again before the next). It stops at the first failure and says where; run again, it continues, since
//! the nodes already replaced match the spec.

use super::session::{Cluster, ReplaceWith, Session};
use super::setup::{public_address, render_options};
use crate::cloud::apply::Options;
use crate::cloud::state::StateFile;
use crate::fsutil::{write_atomic, PUBLIC};
use crate::kube_admin::{KubeAdmin, Workload, WorkloadKind};
use crate::render::{self, config_sha256, sha256_hex};
use crate::spec::{self, versions, Role, Severity, Spec};
use anyhow::{anyhow, bail, Context, Result};
use std::path::Path;
use std::time::{Duration, Instant};

/// The lines of `lines` that make up the block at `path` (`kubernetes`, or nested:
/// `kubernetes.sha256`): the index of its `name:` line and the range of its body (the
/// lines after it that are indented deeper, blank or comments).
fn find_block(lines: &[&str], path: &[&str]) -> Option<(usize, std::ops::Range<usize>)> {
    let indent = |l: &str| l.len() - l.trim_start().len();
    let is_key = |l: &str| !l.trim().is_empty() && !l.trim_start().starts_with('#');
    let opens = |l: &str, name: &str| {
        l.trim_start()
            .strip_prefix(name)
            .and_then(|r| r.strip_prefix(':'))
            .is_some_and(|r| r.trim().is_empty() || r.trim_start().starts_with('#'))
    };
    let (mut range, mut depth) = (0..lines.len(), 0usize);
    let mut found = None;
    for name in path {
        let header = range
            .clone()
            .find(|&i| is_key(lines[i]) && indent(lines[i]) == depth && opens(lines[i], name))?;
        let end = (header + 1..lines.len())
            .find(|&i| is_key(lines[i]) && indent(lines[i]) <= depth)
            .unwrap_or(lines.len());
        range = header + 1..end;
        depth = range
            .clone()
            .find(|&i| is_key(lines[i]))
            .map_or(depth + 2, |i| indent(lines[i]));
        found = Some((header, range.clone()));
    }
    found
}

/// The spec's text with `block.key` set to `value`, or that line removed when `value` is
/// `None`: the line changed in place (comments kept, also one after the value), added as
/// the block's first key when missing, a top-level block appended when the spec has
/// none. `block` may be nested (`kubernetes.sha256`); a nested block left with no key is
/// removed. Only keys directly under the block count (not `kubernetes.sha256.kubeadm`
/// for `kubernetes`'s `sha256`).
pub fn with_field(text: &str, block: &str, key: &str, value: Option<&str>) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let path: Vec<&str> = block.split('.').collect();
    let Some((start, body)) = find_block(&lines, &path) else {
        return match (value, path.len()) {
            (Some(v), 1) => format!(
                "{text}{}{block}:\n  {key}: {v}\n",
                if text.is_empty() || text.ends_with('\n') {
                    ""
                } else {
                    "\n"
                }
            ),
            // A nested block that is not there: the caller finds the value unset.
            _ => text.to_string(),
        };
    };
    let indent = |l: &str| l.len() - l.trim_start().len();
    let keys: Vec<(usize, &str)> = body
        .clone()
        .map(|i| (i, lines[i]))
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .collect();
    let child = keys
        .first()
        .map(|(_, l)| indent(l))
        .unwrap_or(indent(lines[start]) + 2);
    let found = keys.iter().find(|(_, l)| {
        indent(l) == child
            && l.trim_start()
                .strip_prefix(key)
                .is_some_and(|r| r.starts_with(':'))
    });
    let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    match (found, value) {
        (Some(&(i, line)), Some(v)) => {
            // A comment after the value stays where it was.
            let rest = &line.trim_start()[key.len() + 1..];
            let comment = rest
                .find(" #")
                .map(|c| &rest[rest[..=c].trim_end().len()..])
                .unwrap_or("");
            out[i] = format!("{}{key}: {v}{comment}", " ".repeat(child));
        }
        (Some(&(i, _)), None) => {
            out.remove(i);
            let others = keys.iter().filter(|(_, l)| indent(l) == child).count();
            if others == 1 && path.len() > 1 {
                out.remove(start);
            }
        }
        (None, Some(v)) => out.insert(start + 1, format!("{}{key}: {v}", " ".repeat(child))),
        (None, None) => {}
    }
    out.join("\n") + "\n"
}

/// The spec's text with `kubernetes.version` set to `version`.
pub fn with_kubernetes_version(text: &str, version: &str) -> String {
    with_field(text, "kubernetes", "version", Some(version))
}

/// The versions `upgrade` writes into the spec before it rolls them out.
#[derive(Debug, Default, Clone, Copy)]
pub struct NewVersions<'a> {
    /// `kubernetes.version`.
    pub kubernetes: Option<&'a str>,
    /// `etcd.version`.
    pub etcd: Option<&'a str>,
    /// `etcd.sha256`, the release tarball's checksum.
    pub etcd_sha256: Option<&'a str>,
}

impl NewVersions<'_> {
    fn is_empty(&self) -> bool {
        self.kubernetes.is_none() && self.etcd.is_none() && self.etcd_sha256.is_none()
    }

    /// `text` with the new versions in it. An `etcd.sha256` given for the etcd version the
    /// spec names now goes when `etcd.version` changes without a new one: a checksum is
    /// of one release, and a node would refuse the other's tarball. etcd does not go
    /// back a minor version by replacement (a member older than the cluster's version
    /// cannot join): refused.
    pub fn apply(&self, text: &str, now: &Spec) -> Result<String> {
        let mut text = text.to_string();
        if let Some(v) = self.kubernetes {
            if let (Some(old), Some(new)) = (
                versions::Version::parse(&now.kubernetes.version),
                versions::Version::parse(v),
            ) {
                versions::kubernetes_step(old, new).map_err(|e| anyhow!("Kubernetes {e}"))?;
            }
            text = with_kubernetes_version(&text, v);
            for name in release_checksums(&now.kubernetes.version, v) {
                if now.kubernetes.sha256.contains_key(name) {
                    text = with_field(&text, "kubernetes.sha256", name, None);
                }
            }
        }
        if let Some(v) = self.etcd {
            if let (Some(old), Some(new)) = (
                versions::Version::parse(&now.etcd.version),
                versions::Version::parse(v),
            ) {
                if (new.0, new.1) < (old.0, old.1) {
                    bail!(
                        "etcd {old} cannot go back to {new} by replacement: a member older than the cluster's minor version does not join (restore a backup taken before the upgrade instead)"
                    );
                }
            }
            text = with_field(&text, "etcd", "version", Some(v));
            if self.etcd_sha256.is_none() && v != now.etcd.version {
                text = with_field(&text, "etcd", "sha256", None);
            }
        }
        if let Some(sum) = self.etcd_sha256 {
            text = with_field(&text, "etcd", "sha256", Some(sum));
        }
        Ok(text)
    }
}

/// The `kubernetes.sha256` entries that are of one release and go when the version moves
/// from `from` to `to` (a node would refuse the other release's file): kubeadm, kubelet
/// and kubectl, and crictl when the minor changes (paasgen pairs one with each minor).
fn release_checksums(from: &str, to: &str) -> Vec<&'static str> {
    if from == to {
        return Vec::new();
    }
    let minor = |v: &str| versions::Version::parse(v).map(|v| v.1);
    let mut names = vec!["kubeadm", "kubelet", "kubectl"];
    if minor(from) != minor(to) {
        names.push("crictl");
    }
    names
}

/// Writes `new` into the spec file, which must be valid afterwards (else it is left as
/// it was); says what changed and any warning of the new spec.
fn set_versions(file: &Path, new: &NewVersions) -> Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let name = file.display().to_string();
    let (now, _) = spec::parse(&name, &text)?;
    let edited = new.apply(&text, &now)?;
    let (parsed, _) = spec::parse(&name, &edited)?;
    let (errors, warnings): (Vec<_>, Vec<_>) = spec::validate(&parsed)
        .into_iter()
        .partition(|p| p.severity == Severity::Error);
    if !errors.is_empty() {
        let errors: Vec<String> = errors.iter().map(|p| p.to_string()).collect();
        bail!("{name} would be invalid: {}", errors.join("; "));
    }
    let mut changed = Vec::new();
    for (field, want, got) in [
        (
            "kubernetes.version",
            new.kubernetes,
            Some(&parsed.kubernetes.version),
        ),
        ("etcd.version", new.etcd, Some(&parsed.etcd.version)),
        ("etcd.sha256", new.etcd_sha256, parsed.etcd.sha256.as_ref()),
    ] {
        let Some(want) = want else { continue };
        if got.map(String::as_str) != Some(want) {
            bail!("could not set {field} in {name}: set it by hand");
        }
        changed.push(format!("{field} is now {want}"));
    }
    for (name, _) in now
        .kubernetes
        .sha256
        .iter()
        .filter(|(name, _)| !parsed.kubernetes.sha256.contains_key(*name))
    {
        changed.push(format!(
            "kubernetes.sha256.{name} removed (it was of {})",
            now.kubernetes.version
        ));
    }
    if let (Some(_), None) = (&now.etcd.sha256, &parsed.etcd.sha256) {
        changed.push(format!(
            "etcd.sha256 removed (it was etcd {}'s)",
            now.etcd.version
        ));
    }
    write_atomic(file, edited.as_bytes(), PUBLIC)?;
    println!("{name}: {}", changed.join(", "));
    // What the new versions bring up (a download with no checksum, an end of life).
    let etcd = new.etcd.is_some() || new.etcd_sha256.is_some();
    for w in warnings.iter().filter(|w| {
        (etcd && w.path.starts_with("etcd."))
            || (new.kubernetes.is_some() && w.path.starts_with("kubernetes."))
    }) {
        println!("{w}");
    }
    Ok(())
}

/// Whether a server launched with user-data of sha256 `launched` runs `user_data`. Join
/// tokens are masked (each join gets a fresh one); a node launched before paasgen
/// masked them recorded the plain sha, which a plain render still matches.
fn runs(user_data: &str, launched: &str) -> bool {
    launched == config_sha256(user_data) || launched == sha256_hex(user_data.as_bytes())
}

/// Nodes to replace, in the order that keeps the cluster up.
fn rollout_order(spec: &Spec, differs: impl Fn(&str) -> bool) -> Vec<String> {
    [Role::Etcd, Role::Master, Role::Worker, Role::Gateway]
        .into_iter()
        .flat_map(|role| spec.nodes_with_role(role))
        .filter(|n| differs(&n.name))
        .map(|n| n.name.clone())
        .collect()
}

/// What the spec alone refuses, before the cloud is even asked: versions it cannot
/// take (`NewVersions::apply` on the file as it is).
pub fn check_versions(file: &Path, versions: &NewVersions) -> Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let (now, _) = spec::parse(&file.display().to_string(), &text)?;
    versions.apply(&text, &now)?;
    Ok(())
}

/// Writes `versions` into the spec, renews the certificates that expire within
/// `renew_within_days` days, and replaces every node that does not run what the spec
/// says now, one at a time, in `rollout_order`.
pub fn upgrade(
    session: &Session,
    versions: &NewVersions,
    with: ReplaceWith,
    renew_within_days: u32,
    opts: &Options,
) -> Result<()> {
    let state = StateFile::new(&session.state_dir);
    let launched = state.load()?.ok_or_else(|| {
        anyhow!(
            "nothing launched from {} yet: run `paasgen launch`",
            session.state_dir.display()
        )
    })?;
    if let Some(to) = versions.kubernetes {
        check_kubelets(session, to)?;
    }
    if !versions.is_empty() {
        set_versions(session.spec_file(), versions)?;
    }
    let within = time::Duration::days(i64::from(renew_within_days));
    let cluster = session.cluster_renewing(within)?;
    let (spec, pki) = (&cluster.spec, &cluster.pki);
    for change in pki.changes() {
        println!("pki: {change}");
    }
    let expiring = session
        .rt
        .block_on(expiring_api_servers(session, &cluster, within));
    let docs = render::render(spec, pki, &render_options(&session.state_dir)?)?;
    let differs = |name: &str| {
        let doc = docs.iter().find(|d| d.name == name);
        let then = launched
            .nodes
            .get(name)
            .map(|n| n.user_data_sha256.as_str());
        expiring.iter().any(|e| e == name)
            || match (doc, then) {
                (Some(doc), Some(then)) => !runs(&doc.user_data, then),
                _ => true,
            }
    };
    let order = rollout_order(spec, differs);
    if order.is_empty() {
        println!("every node runs what the spec says: nothing to replace");
        return Ok(());
    }
    println!("replacing, one at a time: {}", order.join(", "));
    let replacer = session.replacer(&cluster, opts, with);
    let kube = || {
        KubeAdmin::new(
            public_address(spec, &session.state_dir)?,
            pki,
            session.timeout,
        )
    };
    for (i, name) in order.iter().enumerate() {
        let node = spec.node(name).expect("ordered from the spec").clone();
        println!("[{}/{}] {name}", i + 1, order.len());
        // Kubelets follow the control plane: before the first worker, every API server
        // runs the spec's version and the addons kubeadm upgrades with it are moved.
        let first_worker = node.role == Role::Worker
            && order[..i]
                .iter()
                .all(|n| spec.node(n).is_none_or(|n| n.role != Role::Worker));
        let step = async {
            if first_worker {
                control_plane_first(&kube()?, spec).await?;
            }
            replacer.replace(&node).await
        };
        if let Err(e) = session.rt.block_on(step) {
            bail!(
                "upgrade stopped at {name} ({} of {}): {e:#}\nreplaced so far: {}; fix the cause and run `paasgen upgrade` again to go on",
                i + 1,
                order.len(),
                if i == 0 { "none".to_string() } else { order[..i].join(", ") }
            );
        }
    }
    // With masters replaced and no worker to replace, the addons still follow the last
    // master. An upgrade of etcd or gateways alone leaves Kubernetes be.
    let replaced = |role: Role| {
        order
            .iter()
            .any(|n| spec.node(n).is_some_and(|n| n.role == role))
    };
    if replaced(Role::Master) && !replaced(Role::Worker) {
        session
            .rt
            .block_on(async { control_plane_first(&kube()?, spec).await })?;
    }
    println!("upgrade done: {} node(s) replaced", order.len());
    Ok(())
}

/// The masters whose API server's serving certificate (kubeadm's, read from the live
/// endpoint) expires within `within`: replaced, a new master gets a new one. A master
/// that could not be read is said, not replaced.
async fn expiring_api_servers(
    session: &Session,
    cluster: &Cluster,
    within: time::Duration,
) -> Vec<String> {
    let spec = &cluster.spec;
    let masters: Vec<(String, std::net::Ipv4Addr)> = spec
        .nodes_with_role(Role::Master)
        .map(|m| (m.name.clone(), m.private_ip))
        .collect();
    if masters.is_empty() {
        return Vec::new();
    }
    let met = match public_address(spec, &session.state_dir) {
        Ok(address) => {
            crate::api_certs::serving_certs(address, &cluster.pki, &masters, session.timeout).await
        }
        Err(e) => Err(e),
    };
    let met = match met {
        Ok(met) if met.is_empty() => {
            eprintln!(
                "warning: the API servers' certificates could not be read: none answered through the gateways"
            );
            return Vec::new();
        }
        Ok(met) => met,
        Err(e) => {
            eprintln!("warning: the API servers' certificates could not be read: {e:#}");
            return Vec::new();
        }
    };
    let renew_at = (time::OffsetDateTime::now_utc() + within).unix_timestamp();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut expiring = Vec::new();
    for (name, _) in &masters {
        match met.get(name) {
            None => eprintln!(
                "warning: {name}'s API server certificate was not met through the gateways"
            ),
            Some(cert) => {
                let days = (cert.not_after_unix - now) / 86_400;
                if cert.not_after_unix < renew_at {
                    println!(
                        "certificates: {name}'s API server certificate expires in {days} days ({}): {name} is replaced",
                        cert.not_after
                    );
                    expiring.push(name.clone());
                }
            }
        }
    }
    expiring
}

/// Refuses a Kubernetes version the cluster's oldest kubelet may not move to (see
/// `versions::kubernetes_step`), before anything changes. The API must answer: an
/// upgrade of Kubernetes goes through it.
fn check_kubelets(session: &Session, to: &str) -> Result<()> {
    let Some(to_v) = versions::Version::parse(to) else {
        return Ok(()); // the spec's validation names it
    };
    let Cluster { spec, pki } = session.cluster()?;
    let kube = KubeAdmin::new(
        public_address(&spec, &session.state_dir)?,
        &pki,
        session.timeout,
    )?;
    let kubelets = session
        .rt
        .block_on(kube.kubelet_versions())
        .context("reading the Nodes' kubelet versions before the upgrade (the API must answer)")?;
    let oldest = kubelets
        .iter()
        .filter_map(|(name, v)| Some((versions::Version::parse(v)?, name)))
        .min();
    if let Some((oldest, name)) = oldest {
        versions::kubernetes_step(oldest, to_v)
            .map_err(|e| anyhow!("Kubernetes {e} ({name}'s kubelet runs {oldest})"))?;
    }
    Ok(())
}

/// Before any kubelet moves to the spec's version: every API server runs it (read
/// from the pods), and kube-proxy and CoreDNS run the images kubeadm of that version
/// deploys, rolled out. Nothing to do when they already do.
async fn control_plane_first(kube: &KubeAdmin, spec: &Spec) -> Result<()> {
    let version = &spec.kubernetes.version;
    let want = format!(":v{version}");
    let behind: Vec<String> = kube
        .control_plane_images("kube-apiserver")
        .await?
        .into_iter()
        .filter(|(_, image)| !image.ends_with(&want))
        .map(|(node, image)| format!("{node} ({image})"))
        .collect();
    if !behind.is_empty() {
        bail!(
            "API servers still behind v{version}: {}; kubelets may not be newer than the API server",
            behind.join(", ")
        );
    }
    let Some((proxy, coredns)) = versions::addon_images(version) else {
        eprintln!(
            "warning: paasgen does not know which CoreDNS kubeadm {version} deploys: kube-proxy and CoreDNS left as they are"
        );
        return Ok(());
    };
    let addons = [
        (
            Workload {
                kind: WorkloadKind::DaemonSet,
                namespace: "kube-system",
                name: "kube-proxy",
            },
            "kube-proxy",
            proxy,
        ),
        (
            Workload {
                kind: WorkloadKind::Deployment,
                namespace: "kube-system",
                name: "coredns",
            },
            "coredns",
            coredns,
        ),
    ];
    for (workload, container, image) in &addons {
        if kube.set_image(workload, container, image).await? {
            println!("kubernetes: {workload} now runs {image}");
        }
    }
    let start = Instant::now();
    for (workload, _, image) in &addons {
        while !kube.rolled_out(workload).await? {
            if start.elapsed() > ADDON_ROLLOUT {
                bail!(
                    "{workload} did not roll out {image} within {}s",
                    ADDON_ROLLOUT.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
    Ok(())
}

/// How long kube-proxy (one node at a time) and CoreDNS may take to roll out.
const ADDON_ROLLOUT: Duration = Duration::from_secs(600);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::day2::setup::load_spec;

    #[test]
    fn rollout_keeps_the_cluster_serving() {
        let spec = spec::parse("c.yaml", spec::EXAMPLE).unwrap().0;
        assert_eq!(
            rollout_order(&spec, |_| true),
            [
                "etcd-1", "etcd-2", "etcd-3", "master-1", "master-2", "master-3", "worker-1",
                "worker-2", "gw-1", "gw-2"
            ]
        );
        // Only what differs, still in that order.
        let changed = ["gw-2", "worker-1", "etcd-3"];
        assert_eq!(
            rollout_order(&spec, |n| changed.contains(&n)),
            ["etcd-3", "worker-1", "gw-2"]
        );
    }

    #[test]
    fn a_fresh_join_token_alone_is_no_change() {
        let then = "token: \"abcdef.0123456789abcdef\"\nport: 30080\n";
        let now = then.replace("abcdef.0123456789abcdef", "zzzzzz.zzzzzzzzzzzzzzzz");
        assert!(runs(&now, &config_sha256(then)));
        // Recorded before tokens were masked: the plain sha of the same document.
        assert!(runs(then, &sha256_hex(then.as_bytes())));
        assert!(!runs(&now, &sha256_hex(then.as_bytes())));
        assert!(!runs(&now.replace("30080", "30081"), &config_sha256(then)));
    }

    #[test]
    fn the_version_line_changes_in_place() {
        let text = "name: x\nkubernetes:\n  version: 1.37.2   # pinned\n  pod_cidr: 10.244.0.0/16\netcd:\n  version: 3.6.14\n";
        let new = with_kubernetes_version(text, "1.37.3");
        assert_eq!(
            new,
            "name: x\nkubernetes:\n  version: 1.37.3   # pinned\n  pod_cidr: 10.244.0.0/16\netcd:\n  version: 3.6.14\n"
        );
        let none =
            with_kubernetes_version("name: x\nkubernetes:\n  pod_cidr: 10.0.0.0/16\n", "1.37.3");
        assert_eq!(
            none,
            "name: x\nkubernetes:\n  version: 1.37.3\n  pod_cidr: 10.0.0.0/16\n"
        );
        let absent = with_kubernetes_version("name: x\n", "1.37.3");
        assert_eq!(absent, "name: x\nkubernetes:\n  version: 1.37.3\n");
    }

    #[test]
    fn only_the_blocks_own_key_changes() {
        // `sha256:` under kubernetes is a map of its own, deeper: not etcd's.
        let text = "kubernetes:   # k\n    sha256:\n      kubeadm: aa\n    version: 1.37.2\n# etcd\netcd:\n    version: 3.6.14 # v\n    sha256: bb\nnodes: []\n";
        assert_eq!(
            with_field(text, "etcd", "sha256", Some("cc")),
            text.replace("sha256: bb", "sha256: cc")
        );
        assert_eq!(
            with_field(text, "etcd", "sha256", None),
            text.replace("    sha256: bb\n", "")
        );
        assert_eq!(
            with_field(text, "kubernetes", "version", Some("1.37.3")),
            text.replace("1.37.2", "1.37.3")
        );
        // A missing key goes in at the block's own indent.
        assert_eq!(
            with_field(text, "etcd", "source", Some("release")),
            text.replace("etcd:\n", "etcd:\n    source: release\n")
        );
        // Removing what is not there changes nothing.
        let plain = "etcd:\n  version: 3.6.14\n";
        assert_eq!(with_field(plain, "etcd", "sha256", None), plain);
        assert_eq!(with_field("name: x", "etcd", "sha256", None), "name: x");
    }

    #[test]
    fn a_new_kubernetes_release_drops_the_old_ones_checksums() {
        let text = "kubernetes:\n  version: 1.36.3\n  sha256:\n    kubeadm: aa   # 1.36.3\n    kubelet: bb\n    kubectl: cc\n    crictl: dd\n    containerd: ee\n  pod_cidr: 10.244.0.0/16\n";
        let mut out = text.to_string();
        for name in release_checksums("1.36.3", "1.37.2") {
            out = with_field(&out, "kubernetes.sha256", name, None);
        }
        assert_eq!(
            out,
            "kubernetes:\n  version: 1.36.3\n  sha256:\n    containerd: ee\n  pod_cidr: 10.244.0.0/16\n"
        );
        // A patch release keeps crictl's; the last entry takes its block along.
        assert_eq!(
            release_checksums("1.37.1", "1.37.2"),
            ["kubeadm", "kubelet", "kubectl"]
        );
        let only = "kubernetes:\n  sha256:\n    kubeadm: aa\n  version: 1.37.1\n";
        assert_eq!(
            with_field(only, "kubernetes.sha256", "kubeadm", None),
            "kubernetes:\n  version: 1.37.1\n"
        );
        assert!(release_checksums("1.37.2", "1.37.2").is_empty());
    }

    fn example() -> (String, Spec) {
        let text = spec::EXAMPLE.to_string();
        let spec = spec::parse("c.yaml", &text).unwrap().0;
        (text, spec)
    }

    #[test]
    fn etcd_version_and_checksum_go_into_the_spec() {
        let (text, now) = example();
        let sum = "a".repeat(64);
        let new = NewVersions {
            etcd: Some("3.6.16"),
            etcd_sha256: Some(&sum),
            ..Default::default()
        }
        .apply(&text, &now)
        .unwrap();
        let parsed = spec::parse("c.yaml", &new).unwrap().0;
        assert_eq!(parsed.etcd.version, "3.6.16");
        assert_eq!(parsed.etcd.sha256.as_deref(), Some(sum.as_str()));
        assert_eq!(parsed.kubernetes.version, now.kubernetes.version);
        // Only those lines changed; the comments stay.
        let was = "\netcd:\n  version: 3.6.14        # kubeadm";
        assert!(text.contains(was));
        let now = format!("\netcd:\n  sha256: {sum}\n  version: 3.6.16        # kubeadm");
        assert_eq!(new, text.replacen(was, &now, 1));
    }

    #[test]
    fn a_checksum_of_another_etcd_release_goes() {
        let (text, _) = example();
        let sum = "b".repeat(64);
        let with_sum = with_field(&text, "etcd", "sha256", Some(&sum));
        let now = spec::parse("c.yaml", &with_sum).unwrap().0;
        // Another version without a checksum: the old one is dropped.
        let moved = NewVersions {
            etcd: Some("3.5.27"),
            ..Default::default()
        };
        // 3.6 -> 3.5 is refused, whatever the checksums.
        let back = moved.apply(&with_sum, &now).unwrap_err().to_string();
        assert!(back.contains("cannot go back to 3.5.27"), "{back}");
        let up = NewVersions {
            etcd: Some("3.6.15"),
            ..Default::default()
        };
        let new = up.apply(&with_sum, &now).unwrap();
        let parsed = spec::parse("c.yaml", &new).unwrap().0;
        assert_eq!(
            (parsed.etcd.version.as_str(), parsed.etcd.sha256),
            ("3.6.15", None)
        );
        // The same version again keeps its checksum; a checksum alone sets only that.
        let same = NewVersions {
            etcd: Some(now.etcd.version.as_str()),
            ..Default::default()
        };
        assert_eq!(same.apply(&with_sum, &now).unwrap(), with_sum);
        let fixed = NewVersions {
            etcd_sha256: Some(&"c".repeat(64)),
            ..Default::default()
        }
        .apply(&with_sum, &now)
        .unwrap();
        assert_eq!(fixed, with_sum.replace(&sum, &"c".repeat(64)));
    }

    #[test]
    fn the_spec_file_changes_only_when_valid() {
        let dir = std::env::temp_dir().join(format!("paasgen-upgrade-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("cluster.yaml");
        std::fs::write(&file, spec::EXAMPLE).unwrap();
        let bad = NewVersions {
            etcd: Some("3.7.0"),
            ..Default::default()
        };
        let err = set_versions(&file, &bad).unwrap_err().to_string();
        assert!(
            err.contains("etcd.version") && err.contains("not supported"),
            "{err}"
        );
        let bad_sum = NewVersions {
            etcd: Some("3.6.16"),
            etcd_sha256: Some("xyz"),
            ..Default::default()
        };
        let err = set_versions(&file, &bad_sum).unwrap_err().to_string();
        assert!(
            err.contains("etcd.sha256") && err.contains("64 hex"),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(&file).unwrap(), spec::EXAMPLE);
        let sum = "d".repeat(64);
        let good = NewVersions {
            etcd: Some("3.6.16"),
            etcd_sha256: Some(&sum),
            ..Default::default()
        };
        set_versions(&file, &good).unwrap();
        let spec = load_spec(&file).unwrap();
        assert_eq!(
            (spec.etcd.version.as_str(), spec.etcd.sha256.as_deref()),
            ("3.6.16", Some(sum.as_str()))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
