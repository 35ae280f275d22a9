//! `paasgen upgrade [--to VERSION]`: brings the running cluster to what the spec says,
//! by replacement. `--to` first sets `kubernetes.version` in the spec file.
//!
//! Every node whose freshly rendered user-data differs from what its server was
//! launched with is rebuilt (see `rebuild`), one at a time, in an order that keeps the
//! cluster serving: etcd members (each swapped in etcd's membership and healthy before
//! the next), masters, workers (drained first), gateways (the other one holds the
//! VIPs). It stops at the first failure and says where; run again, it continues, since
//! the nodes already replaced match the spec.

use super::cloud::CloudArgs;
use super::cloud::{connect, runtime};
use super::rebuild::Replacer;
use super::{load_spec, render_options, state_dir_for};
use crate::cloud::apply::Options;
use crate::cloud::state::StateFile;
use crate::fsutil::{write_atomic, PUBLIC};
use crate::lock::StateLock;
use crate::pki::Pki;
use crate::render::{self, sha256_hex};
use crate::spec::{self, Role, Severity, Spec};
use anyhow::{anyhow, bail, Context, Result};
use std::path::Path;

/// The spec's text with `kubernetes.version` set to `version` (the line changed in
/// place, comments kept; added when the spec relies on the default).
pub fn with_kubernetes_version(text: &str, version: &str) -> Result<String> {
    let lines: Vec<&str> = text.lines().collect();
    let Some(block) = lines.iter().position(|l| l.trim_end() == "kubernetes:") else {
        return Ok(format!(
            "{}{}kubernetes:\n  version: {version}\n",
            text,
            if text.ends_with('\n') { "" } else { "\n" }
        ));
    };
    let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    let body = lines[block + 1..]
        .iter()
        .take_while(|l| l.starts_with(' ') || l.starts_with('#') || l.trim().is_empty());
    let mut found = false;
    for (i, line) in body.enumerate() {
        let indent = line.len() - line.trim_start().len();
        if let Some(rest) = line.trim_start().strip_prefix("version:") {
            if indent == 0 {
                break;
            }
            // Keep a trailing comment after the value.
            let comment = rest.find(" #").map(|c| &rest[c..]).unwrap_or("");
            out[block + 1 + i] = format!("{}version: {version}{comment}", &line[..indent]);
            found = true;
            break;
        }
    }
    if !found {
        out.insert(block + 1, format!("  version: {version}"));
    }
    Ok(out.join("\n") + "\n")
}

fn set_version(file: &Path, version: &str) -> Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let new = with_kubernetes_version(&text, version)?;
    // The new spec must be valid before it replaces the old one.
    let (parsed, _) = spec::parse(&file.display().to_string(), &new)?;
    let errors: Vec<String> = spec::validate(&parsed)
        .into_iter()
        .filter(|p| p.severity == Severity::Error)
        .map(|p| p.to_string())
        .collect();
    if !errors.is_empty() {
        bail!("kubernetes.version {version}: {}", errors.join("; "));
    }
    if parsed.kubernetes.version != version {
        bail!(
            "could not set kubernetes.version in {}: set it by hand",
            file.display()
        );
    }
    write_atomic(file, new.as_bytes(), PUBLIC)?;
    println!("{}: kubernetes.version is now {version}", file.display());
    Ok(())
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

pub struct UpgradeArgs<'a> {
    pub cloud: CloudArgs<'a>,
    /// Kubernetes version to move to, written into the spec first.
    pub to: Option<&'a str>,
    pub etcd_via: Option<std::net::SocketAddr>,
    /// How long each replacement may take to be healthy.
    pub wait: std::time::Duration,
}

pub fn upgrade(args: &UpgradeArgs, opts: &Options) -> Result<()> {
    let c = &args.cloud;
    let state_dir = state_dir_for(c.file, c.state_dir);
    let rt = runtime()?;
    let cloud = rt.block_on(connect(c))?;
    let lock = StateLock::acquire(&state_dir, "upgrade", c.wait_lock)?;
    if let Some(version) = args.to {
        set_version(c.file, version)?;
    }
    let spec = load_spec(c.file)?;
    let pki = Pki::ensure(&state_dir, &spec).context("preparing the PKI")?;
    pki.save(&lock)?;
    let state = StateFile::new(&state_dir);
    let launched = state.load()?.ok_or_else(|| {
        anyhow!(
            "nothing launched from {} yet: run `paasgen launch`",
            state_dir.display()
        )
    })?;
    let docs = render::render(&spec, &pki, &render_options(&state_dir)?)?;
    let differs = |name: &str| {
        let now = docs
            .iter()
            .find(|d| d.name == name)
            .map(|d| sha256_hex(d.user_data.as_bytes()));
        let then = launched.nodes.get(name).map(|n| n.user_data_sha256.clone());
        now != then
    };
    let order = rollout_order(&spec, differs);
    if order.is_empty() {
        println!("every node runs what the spec says: nothing to replace");
        return Ok(());
    }
    println!("replacing, one at a time: {}", order.join(", "));
    let replacer = Replacer {
        spec: &spec,
        pki: &pki,
        cloud: &cloud,
        state_dir: &state_dir,
        opts,
        force: false,
        etcd_via: args.etcd_via,
        wait: args.wait,
        timeout: c.timeout,
    };
    for (i, name) in order.iter().enumerate() {
        let node = spec.node(name).expect("ordered from the spec").clone();
        println!("[{}/{}] {name}", i + 1, order.len());
        if let Err(e) = rt.block_on(replacer.replace(&node)) {
            bail!(
                "upgrade stopped at {name} ({} of {}): {e:#}\nreplaced so far: {}; fix the cause and run `paasgen upgrade` again to go on",
                i + 1,
                order.len(),
                if i == 0 { "none".to_string() } else { order[..i].join(", ") }
            );
        }
    }
    println!("upgrade done: {} node(s) replaced", order.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn the_version_line_changes_in_place() {
        let text = "name: x\nkubernetes:\n  version: 1.37.2   # pinned\n  pod_cidr: 10.244.0.0/16\netcd:\n  version: 3.6.14\n";
        let new = with_kubernetes_version(text, "1.37.3").unwrap();
        assert_eq!(
            new,
            "name: x\nkubernetes:\n  version: 1.37.3 # pinned\n  pod_cidr: 10.244.0.0/16\netcd:\n  version: 3.6.14\n"
        );
        let none =
            with_kubernetes_version("name: x\nkubernetes:\n  pod_cidr: 10.0.0.0/16\n", "1.37.3")
                .unwrap();
        assert_eq!(
            none,
            "name: x\nkubernetes:\n  version: 1.37.3\n  pod_cidr: 10.0.0.0/16\n"
        );
        let absent = with_kubernetes_version("name: x\n", "1.37.3").unwrap();
        assert_eq!(absent, "name: x\nkubernetes:\n  version: 1.37.3\n");
    }
}
