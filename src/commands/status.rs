//! `paasgen status`: is the platform serving? etcd members, the API, every Kubernetes
//! node, the addons' workloads and the newest backup, asked through the cluster's public
//! address like the day-2 verbs; it writes nothing. Red (exit 1) names what is not well.

use super::{backup, etcd_via, load_spec, public_address, state_dir_for};
use crate::etcd_admin::{EtcdAdmin, Health};
use crate::kube_admin::{KubeAdmin, NodeState};
use crate::pki::Pki;
use crate::spec::{Role, Spec};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::path::Path;
use std::time::Duration;

pub struct StatusArgs<'a> {
    pub file: &'a Path,
    pub state_dir: Option<&'a Path>,
    pub etcd_via: Option<std::net::SocketAddr>,
    pub timeout: Duration,
    pub json: bool,
}

/// One thing looked at, and what was seen.
#[derive(Debug, Serialize)]
pub struct Check {
    /// `etcd`, `api`, `node`, `addon` or `backup`.
    pub kind: &'static str,
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub cluster: String,
    pub healthy: bool,
    pub checks: Vec<Check>,
}

/// The workloads of each addon (and kubeadm's own), by namespace and kind.
fn addon_workloads(spec: &Spec) -> Vec<(&'static str, &'static str, &'static str, &'static str)> {
    let mut w = vec![
        ("flannel", "kube-flannel", "daemonsets", "kube-flannel-ds"),
        ("kube-proxy", "kube-system", "daemonsets", "kube-proxy"),
        ("coredns", "kube-system", "deployments", "coredns"),
    ];
    if spec.addons.local_path.enabled {
        w.push((
            "local-path",
            "local-path-storage",
            "deployments",
            "local-path-provisioner",
        ));
    }
    w
}

/// Prints the report; an error (exit 1) names what is not well.
pub fn status(args: &StatusArgs) -> Result<()> {
    let spec = load_spec(args.file)?;
    let state_dir = state_dir_for(args.file, args.state_dir);
    let pki = Pki::ensure(&state_dir, &spec).context("reading the PKI")?;
    let address = public_address(&spec, &state_dir)?;
    let etcd = EtcdAdmin::new(
        &spec,
        &pki,
        etcd_via(&spec, &state_dir, args.etcd_via)?,
        args.timeout,
    )?;
    let kube = KubeAdmin::new(address, &pki, args.timeout)?;
    let rt = super::cloud::runtime()?;
    let mut checks = rt.block_on(async {
        let mut checks = etcd_checks(&etcd).await;
        checks.extend(kubernetes_checks(&spec, &kube).await);
        checks
    });
    checks.extend(certificate_checks(&state_dir)?);
    checks.push(backup_check(&state_dir)?);
    let report = Report {
        cluster: spec.name.clone(),
        healthy: checks.iter().all(|c| c.ok),
        checks,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_text(&report, address);
    }
    let failed: Vec<&str> = report
        .checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| c.name.as_str())
        .collect();
    if !failed.is_empty() {
        bail!("unhealthy: {}", failed.join(", "));
    }
    Ok(())
}

fn print_text(report: &Report, address: std::net::Ipv4Addr) {
    println!("cluster {} through {address}", report.cluster);
    for c in &report.checks {
        let mark = if c.ok { "ok  " } else { "FAIL" };
        println!("{mark} {:<7} {:<24} {}", c.kind, c.name, c.detail);
    }
    if report.healthy {
        println!("healthy");
    }
}

async fn etcd_checks(etcd: &EtcdAdmin) -> Vec<Check> {
    let mut checks = Vec::new();
    for (name, health) in etcd.health_of_all().await {
        let (ok, mut detail) = match health {
            Health::Healthy => (true, "healthy".to_string()),
            Health::Unhealthy(why) => (false, format!("unhealthy: {why}")),
            Health::NoAnswer(why) => (false, format!("no answer: {why}")),
        };
        if ok {
            if let Ok(s) = etcd.status(&name).await {
                let role = if s.is_leader { "leader" } else { "follower" };
                detail = format!(
                    "healthy, {role}, etcd {}, db {} bytes",
                    s.version, s.db_size
                );
            }
        }
        checks.push(Check {
            kind: "etcd",
            name,
            ok,
            detail,
        });
    }
    checks
}

async fn kubernetes_checks(spec: &Spec, kube: &KubeAdmin) -> Vec<Check> {
    let mut checks = Vec::new();
    let api = kube.readyz().await;
    let api_ok = api.is_ok();
    checks.push(Check {
        kind: "api",
        name: "kube-apiserver".into(),
        ok: api_ok,
        detail: match api {
            Ok(()) => "readyz ok".into(),
            Err(e) => format!("{e:#}"),
        },
    });
    if !api_ok {
        return checks;
    }
    for node in spec
        .nodes_with_role(Role::Master)
        .chain(spec.nodes_with_role(Role::Worker))
    {
        let (ok, detail) = match kube.node_state(&node.name).await {
            Ok(NodeState::Ready) => (true, "Ready".to_string()),
            Ok(NodeState::NotReady) => (false, "NotReady".to_string()),
            Ok(NodeState::Absent) => (false, "not in the cluster".to_string()),
            Err(e) => (false, format!("{e:#}")),
        };
        checks.push(Check {
            kind: "node",
            name: node.name.clone(),
            ok,
            detail,
        });
    }
    for (addon, namespace, kind, name) in addon_workloads(spec) {
        let (ok, detail) = match kube.ready_counts(namespace, kind, name).await {
            Ok(Some((ready, want))) => (
                ready == want && want > 0,
                format!("{kind} {namespace}/{name}: {ready}/{want} ready"),
            ),
            Ok(None) => (false, format!("{kind} {namespace}/{name}: not found")),
            Err(e) => (false, format!("{e:#}")),
        };
        checks.push(Check {
            kind: "addon",
            name: addon.into(),
            ok,
            detail,
        });
    }
    checks
}

/// The certificates the state dir keeps: each must outlive `EXPIRY_WARNING_DAYS`. A leaf
/// is renewed by `paasgen upgrade --renew-within`; a CA cannot be renewed in place (every
/// certificate and kubeconfig trusts it), so it shows first as the one that expires.
fn certificate_checks(state_dir: &Path) -> Result<Vec<Check>> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut soonest: Option<(String, i64)> = None;
    let mut checks = Vec::new();
    for (path, cert) in crate::pki::inspect::describe_all(&state_dir.join("pki"))? {
        let days = (cert.not_after_unix - now) / 86_400;
        if cert.is_ca {
            checks.push(Check {
                kind: "pki",
                name: path.clone(),
                ok: days >= super::EXPIRY_WARNING_DAYS,
                detail: format!("CA, expires {} (in {days} days)", cert.not_after),
            });
        } else if soonest.as_ref().is_none_or(|(_, d)| days < *d) {
            soonest = Some((path, days));
        }
    }
    if let Some((path, days)) = soonest {
        checks.push(Check {
            kind: "pki",
            name: "certificates".into(),
            ok: days >= super::EXPIRY_WARNING_DAYS,
            detail: format!(
                "the first to expire is {path}, in {days} days (renew: `paasgen upgrade --renew-within`)"
            ),
        });
    }
    Ok(checks)
}

/// The newest local backup's age; none is not a failure (a new cluster has none yet),
/// but it is said.
fn backup_check(state_dir: &Path) -> Result<Check> {
    let records = backup::records(state_dir)?;
    let newest = records.iter().max_by(|a, b| a.taken_at.cmp(&b.taken_at));
    let detail = match newest {
        None => "no backup in the state dir yet (`paasgen backup now`)".to_string(),
        Some(r) => {
            let age = time::OffsetDateTime::parse(
                &r.taken_at,
                &time::format_description::well_known::Rfc3339,
            )
            .map(|t| (time::OffsetDateTime::now_utc() - t).whole_minutes())
            .map(|m| format!("{m} min ago"))
            .unwrap_or_else(|_| format!("at {}", r.taken_at));
            format!("newest local: {} from {}, {age}", r.file, r.member)
        }
    };
    Ok(Check {
        kind: "backup",
        name: "etcd backups".into(),
        ok: true,
        detail,
    })
}
