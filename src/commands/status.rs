//! `paasgen status`: is the platform serving? etcd members, the API, every Kubernetes
//! node, the addons' workloads and the newest backup (local, and in Swift when the spec
//! keeps copies there), asked through the cluster's public address like the day-2 verbs;
//! it writes nothing. Red (exit 1) names what is not well.

use crate::cloud::openstack::swift::Swift;
use crate::day2::copies;
use crate::day2::records;
use crate::day2::setup::{etcd_via, load_spec, public_address, runtime, state_dir_for};
use crate::etcd_admin::{EtcdAdmin, Health};
use crate::kube_admin::{KubeAdmin, NodeState};
use crate::pki::Pki;
use crate::render::GATEWAY_STATUS_PORT;
use crate::spec::{Role, Spec, MARIADB_NAMESPACE};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

pub struct StatusArgs<'a> {
    pub file: &'a Path,
    pub state_dir: Option<&'a Path>,
    /// Cloud of clouds.yaml for the Swift copies (else OS_CLOUD / OS_*).
    pub os_cloud: Option<&'a str>,
    pub etcd_via: Option<std::net::SocketAddr>,
    pub timeout: Duration,
    pub json: bool,
}

/// One thing looked at, and what was seen.
#[derive(Debug, Serialize)]
pub struct Check {
    /// `gateway`, `vip`, `etcd`, `api`, `node`, `addon`, `pki` or `backup`.
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

/// The workloads `status` counts, by addon (paasgen's and kubeadm's own), namespace and
/// kind. The spec's manifest addons are judged by what the addons unit recorded.
const WORKLOADS: [(&str, &str, &str, &str); 5] = [
    ("flannel", "kube-flannel", "daemonsets", "kube-flannel-ds"),
    ("kube-proxy", "kube-system", "daemonsets", "kube-proxy"),
    ("coredns", "kube-system", "deployments", "coredns"),
    (
        "local-path",
        "local-path-storage",
        "deployments",
        "local-path-provisioner",
    ),
    ("mariadb", MARIADB_NAMESPACE, "statefulsets", "mariadb"),
];

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
    let rt = runtime()?;
    let mut checks = rt.block_on(async {
        let mut checks = gateway_checks(&spec, address, args.timeout).await;
        checks.extend(etcd_checks(&etcd).await);
        checks.extend(kubernetes_checks(&spec, &kube).await);
        checks.extend(swift_backup_check(&spec, &state_dir, args).await);
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

/// What a gateway's haproxy says on its status port: who it is, and the masters and
/// workers it sees up.
#[derive(Debug, PartialEq)]
struct GatewaySays {
    name: String,
    masters: u32,
    workers: u32,
}

impl GatewaySays {
    /// `gw-1 masters=3 workers=2`, as templates/files/haproxy.cfg.tera writes it.
    fn parse(body: &str) -> Option<GatewaySays> {
        let mut words = body.split_whitespace();
        let name = words.next()?.to_string();
        let mut count = |key: &str| {
            words
                .next()?
                .strip_prefix(key)?
                .strip_prefix('=')?
                .parse()
                .ok()
        };
        let (masters, workers) = (count("masters")?, count("workers")?);
        Some(GatewaySays {
            name,
            masters,
            workers,
        })
    }
}

async fn ask_gateway(client: &reqwest::Client, addr: Ipv4Addr) -> Result<GatewaySays, String> {
    let url = format!("http://{addr}:{GATEWAY_STATUS_PORT}/");
    let body = match client.get(&url).send().await {
        Ok(r) if r.status().is_success() => r.text().await.map_err(|e| format!("{url}: {e}"))?,
        Ok(r) => return Err(format!("{url} answered {}", r.status())),
        Err(e) => return Err(crate::http::error_chain(&e)),
    };
    GatewaySays::parse(&body)
        .ok_or_else(|| format!("{url} answered {body:?}, not a gateway's status"))
}

/// Each gateway asked on its own public address (fixed mode), and the public address:
/// the gateway that answers there holds the VIP. A gateway whose haproxy sees no master
/// up serves nothing.
async fn gateway_checks(spec: &Spec, address: Ipv4Addr, timeout: Duration) -> Vec<Check> {
    let client = match reqwest::Client::builder()
        .connect_timeout(timeout)
        .timeout(timeout)
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            return vec![Check {
                kind: "vip",
                name: address.to_string(),
                ok: false,
                detail: format!("no HTTP client: {e}"),
            }]
        }
    };
    let holder = ask_gateway(&client, address).await;
    let mut checks = vec![Check {
        kind: "vip",
        name: address.to_string(),
        ok: holder.is_ok(),
        detail: match &holder {
            Ok(says) => format!("held by {}", says.name),
            Err(why) => format!("no gateway answers: {why}"),
        },
    }];
    let holder = holder.ok().map(|says| says.name);
    for gateway in spec.nodes_with_role(Role::Gateway) {
        let holds = holder.as_deref() == Some(gateway.name.as_str());
        let own = gateway.public_ip.filter(|_| !spec.network.is_floating());
        let (ok, mut detail) = match own {
            None if holds => (true, "answers on the VIP".to_string()),
            None => (
                true,
                "standby or down: it has no address of its own to ask (floating mode)".to_string(),
            ),
            Some(ip) => match ask_gateway(&client, ip).await {
                Ok(says) if says.name != gateway.name => (
                    false,
                    format!("{ip} answers as {}, not {}", says.name, gateway.name),
                ),
                Ok(says) => (
                    says.masters > 0,
                    format!(
                        "haproxy on {ip} sees {} master(s) and {} worker(s) up",
                        says.masters, says.workers
                    ),
                ),
                Err(why) => (false, format!("no answer: {why}")),
            },
        };
        if holds && own.is_some() {
            detail.push_str("; holds the VIP");
        }
        checks.push(Check {
            kind: "gateway",
            name: gateway.name.clone(),
            ok,
            detail,
        });
    }
    checks
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
    // A node that is down is already named above; the DaemonSet pods it takes down with
    // it do not make their addons red too.
    let nodes_down = checks.iter().filter(|c| c.kind == "node" && !c.ok).count() as i64;
    // kubeadm's own addons are judged by their pods; the spec's by what the first
    // master's addons unit recorded (`ready`, or `failed: why`), and by their pods where
    // paasgen knows them.
    for addon in ["kube-proxy", "coredns"] {
        let (ok, details) = workloads_ready(kube, addon, nodes_down).await;
        checks.push(addon_check(addon, ok, details));
    }
    let recorded = kube.config_map_data("kube-system", "paasgen-addons").await;
    for crate::spec::Addon {
        name: addon, chart, ..
    } in spec.addons.all()
    {
        let said = match &recorded {
            Ok(data) => data.as_ref().and_then(|d| d.get(&addon)).map(|s| s.trim()),
            Err(e) => {
                checks.push(addon_check(
                    &addon,
                    false,
                    vec![format!("reading kube-system/paasgen-addons: {e:#}")],
                ));
                continue;
            }
        };
        let (mut ok, mut details) = match said {
            Some("ready") => (true, vec!["applied, rolled out".to_string()]),
            Some(why) => (false, vec![first_line(why, 160)]),
            None => (
                false,
                vec!["not applied yet (the first master's paasgen-addons unit)".to_string()],
            ),
        };
        // A Helm release is judged by Helm's own record too.
        if let Some(chart) = chart {
            let (release_ok, said) = match kube.helm_release(chart.namespace, &addon).await {
                Ok(Some((revision, status))) => (
                    status == "deployed",
                    format!("helm release {addon} revision {revision}: {status}"),
                ),
                Ok(None) => (false, format!("no helm release {addon}")),
                Err(e) => (false, format!("{e:#}")),
            };
            ok &= release_ok;
            details.push(said);
        }
        let (pods_ok, pods) = workloads_ready(kube, &addon, nodes_down).await;
        ok &= pods_ok;
        details.extend(pods);
        checks.push(addon_check(&addon, ok, details));
    }
    checks
}

fn addon_check(addon: &str, ok: bool, details: Vec<String>) -> Check {
    Check {
        kind: "addon",
        name: addon.into(),
        ok,
        detail: details.join("; "),
    }
}

/// Whether `addon`'s workloads that `WORKLOADS` lists have every pod ready (a DaemonSet:
/// but for at most one pod per node that is down), and what was counted (nothing for an
/// addon it does not list).
async fn workloads_ready(kube: &KubeAdmin, addon: &str, nodes_down: i64) -> (bool, Vec<String>) {
    let mut ok = true;
    let mut details = Vec::new();
    for (_, namespace, kind, name) in WORKLOADS.iter().filter(|w| w.0 == addon) {
        let (well, detail) = match kube.ready_counts(namespace, kind, name).await {
            Ok(Some((ready, want))) => {
                let (well, said) = judge_counts(kind, ready, want, nodes_down);
                (well, format!("{kind} {namespace}/{name}: {said}"))
            }
            Ok(None) => (false, format!("{kind} {namespace}/{name}: not found")),
            Err(e) => (false, format!("{e:#}")),
        };
        ok &= well;
        details.push(detail);
    }
    (ok, details)
}

/// A workload's ready and wanted pods, judged: a DaemonSet may lack one pod per node
/// that is down.
fn judge_counts(kind: &str, ready: i64, want: i64, nodes_down: i64) -> (bool, String) {
    let excused = if kind == "daemonsets" { nodes_down } else { 0 };
    let mut said = format!("{ready}/{want} ready");
    if ready < want && want - ready <= excused {
        said.push_str(&format!(" ({nodes_down} node(s) down)"));
    }
    (want > 0 && want - ready <= excused, said)
}

/// The first line of `text`, cut at `max` characters.
fn first_line(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or_default();
    match line.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line.to_string(),
    }
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
    let records = records::records(state_dir)?;
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

/// The members upload on `etcd.snapshot_schedule` (hourly unless the spec says
/// otherwise): a newest copy older than a day and an hour means uploads have stopped.
const SWIFT_COPY_MAX_AGE: time::Duration = time::Duration::hours(25);

/// The newest copy in Swift, when the spec keeps copies there; none when it does not.
async fn swift_backup_check(spec: &Spec, state_dir: &Path, args: &StatusArgs<'_>) -> Option<Check> {
    let wanted = spec.etcd.swift_backups.as_ref()?;
    let check = |ok: bool, detail: String| Check {
        kind: "backup",
        name: "swift backups".into(),
        ok,
        detail,
    };
    match records::offsite_target(state_dir) {
        Ok(Some(_)) => {}
        Ok(None) => return Some(check(
            false,
            "etcd.swift_backups is set, but `paasgen backup setup` has not prepared the container"
                .into(),
        )),
        Err(e) => return Some(check(false, format!("{e:#}"))),
    }
    let newest = async {
        let swift = Swift::connect(args.os_cloud, args.timeout).await?;
        let (mut copies, _) = copies::offsite(&swift, spec, &wanted.container).await?;
        copies::sort_newest_first(&mut copies);
        anyhow::Ok(copies.into_iter().next())
    }
    .await;
    Some(match newest {
        Ok(newest) => {
            let now = time::OffsetDateTime::now_utc();
            let (ok, detail) = judge_swift_copy(
                newest.as_ref().map(|c| (c.name.as_str(), c.time)),
                time::PrimitiveDateTime::new(now.date(), now.time()),
            );
            check(ok, format!("{}: {detail}", wanted.container))
        }
        Err(e) => check(false, format!("listing {}: {e:#}", wanted.container)),
    })
}

/// The newest Swift copy (name, when Swift stored it), judged at `now` (UTC). None yet
/// is not a failure: a new cluster's members upload at their first scheduled snapshot.
fn judge_swift_copy(
    newest: Option<(&str, time::PrimitiveDateTime)>,
    now: time::PrimitiveDateTime,
) -> (bool, String) {
    let Some((name, at)) = newest else {
        return (
            true,
            "no copy yet (the members upload at their first scheduled snapshot)".into(),
        );
    };
    let age = now - at;
    let said = format!("newest {name}, {} min ago", age.whole_minutes());
    if age > SWIFT_COPY_MAX_AGE {
        return (
            false,
            format!(
                "{said}: older than {} h, uploads have stopped",
                SWIFT_COPY_MAX_AGE.whole_hours()
            ),
        );
    }
    (true, said)
}

#[cfg(test)]
mod tests {
    use super::{judge_counts, judge_swift_copy, GatewaySays};
    use time::macros::datetime;

    #[test]
    fn a_swift_copy_older_than_a_day_and_an_hour_is_red_and_none_yet_is_not() {
        let now = datetime!(2026-12-03 12:00:00);
        let (ok, said) =
            judge_swift_copy(Some(("etcd-1/a.db", datetime!(2026-12-03 11:20:00))), now);
        assert!(ok, "{said}");
        assert_eq!(said, "newest etcd-1/a.db, 40 min ago");
        let (ok, said) =
            judge_swift_copy(Some(("etcd-1/a.db", datetime!(2026-12-02 10:59:00))), now);
        assert!(!ok && said.contains("uploads have stopped"), "{said}");
        assert!(judge_swift_copy(None, now).0);
    }

    #[test]
    fn a_daemonset_may_lack_the_pods_of_nodes_that_are_down_and_nothing_else() {
        assert_eq!(
            judge_counts("daemonsets", 5, 5, 0),
            (true, "5/5 ready".into())
        );
        assert_eq!(
            judge_counts("daemonsets", 4, 5, 1),
            (true, "4/5 ready (1 node(s) down)".into())
        );
        assert!(!judge_counts("daemonsets", 3, 5, 1).0);
        assert!(!judge_counts("daemonsets", 4, 5, 0).0);
        // A Deployment's pods move off a node that is down: a missing one is missing.
        assert!(!judge_counts("deployments", 1, 2, 1).0);
        assert!(!judge_counts("deployments", 0, 0, 0).0);
    }

    #[test]
    fn a_gateways_answer_is_read_and_anything_else_is_not() {
        assert_eq!(
            GatewaySays::parse("gw-2 masters=3 workers=0"),
            Some(GatewaySays {
                name: "gw-2".into(),
                masters: 3,
                workers: 0
            })
        );
        assert_eq!(GatewaySays::parse("gw-2 workers=0 masters=3"), None);
        assert_eq!(GatewaySays::parse("<html>404</html>"), None);
        assert_eq!(GatewaySays::parse(""), None);
    }
}
