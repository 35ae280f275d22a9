//! What `paasgen recover` does: etcd lost its majority; found it again from a backup,
//! without reaching any of the old members.
//!
//! Every etcd server is replaced. The first member's new user-data waits, on its client
//! port, for the snapshot (sent by paasgen through the gateways like every etcd call,
//! checked there against the sha256 rendered into the user-data), restores it as a
//! cluster of one (`etcdutl snapshot restore` with the member's name, peer URL and a
//! new cluster token, the revision bumped so Kubernetes' watchers start over), and
//! starts etcd on it. The others boot at the same time, each rendered with
//! `initial-cluster-state: existing` and the member list as it will be when it joins:
//! their etcd retries until paasgen adds them, one at a time, so the boots overlap
//! instead of following each other.
//! Then the API servers' leases from before the snapshot are dropped, so that the
//! `kubernetes` Service lists only API servers that run now.

use super::copies;
use super::records::backups_dir;
use super::replace::{wait_member_healthy, Replacer};
use super::session::{ReplaceWith, Session};
use super::setup::{etcd_via, load_spec, public_address, render_options, state_dir_for, CloudArgs};
use crate::cloud::any::AnyCloud;
use crate::cloud::apply::Options;
use crate::cloud::desired;
use crate::cloud::openstack::swift::Swift;
use crate::cloud::state::{EtcdRecovery, StateFile};
use crate::etcd_admin::{keeps_quorum, peer_url, EtcdAdmin};
use crate::kube_admin::KubeAdmin;
use crate::liveness::{etcd_census, Census};
use crate::render;
use crate::spec::shown;
use crate::spec::{Node, Role, Spec};
use anyhow::{anyhow, bail, Result};
use std::path::Path;
use std::time::{Duration, Instant};

/// Where the API servers keep their leases (kube-apiserver's `--etcd-prefix` is
/// `/registry`): one key per API server, which it renews every 10 s.
const MASTER_LEASES: &str = "/registry/masterleases/";

/// The copy to restore, read and checked, and its sha256.
pub struct Chosen {
    pub copy: copies::Copy,
    pub snapshot: Vec<u8>,
    pub sha256: String,
}

/// Finds the copy to restore (`from`, else the newest good one) and checks it, before
/// the cloud is touched.
pub fn choose(
    rt: &tokio::runtime::Runtime,
    c: &CloudArgs,
    from: Option<&Path>,
    started: Instant,
) -> Result<Chosen> {
    let spec = load_spec(c.file)?;
    if let Some(from) = from {
        check_from_path(&state_dir_for(c.file, c.state_dir), from)?;
    }
    let (chosen, snapshot) = rt.block_on(choose_copy(
        &spec,
        &state_dir_for(c.file, c.state_dir),
        from,
        c,
    ))?;
    let sha256 = crate::render::sha256_hex(&snapshot);
    println!(
        "snapshot {} ({} bytes, from {}), sha256 {sha256} and the snapshot's own hash checked",
        chosen.id(),
        snapshot.len(),
        chosen.member,
    );
    println!(
        "recover: copy chosen, read and checked at {:.0}s",
        started.elapsed().as_secs_f64()
    );
    Ok(Chosen {
        copy: chosen,
        snapshot,
        sha256,
    })
}

/// Founds etcd again from `chosen` on new servers, once every member is known lost
/// (`force`: recover although etcd still has its majority); then, unless `etcd_only`,
/// waits until the `kubernetes` Service lists only the API servers that run.
pub fn recover(
    session: &Session,
    chosen: Chosen,
    with: ReplaceWith,
    etcd_only: bool,
    opts: &Options,
    started: Instant,
) -> Result<()> {
    let Chosen {
        copy: chosen,
        snapshot,
        sha256,
    } = chosen;
    let state_dir = &session.state_dir;
    let cluster = session.cluster()?;
    let (spec, pki, cloud) = (&cluster.spec, &cluster.pki, &session.cloud);
    let via = etcd_via(spec, state_dir, with.etcd_via)?;
    let etcd = EtcdAdmin::new(spec, pki, via, session.timeout)?;
    let replacer = session.replacer(&cluster, opts, with);
    let (force, wait) = (with.force, with.wait);
    session.rt.block_on(async {
        refuse_unless_lost(spec, &etcd, cloud, force).await?;
        let members: Vec<Node> = spec.nodes_with_role(Role::Etcd).cloned().collect();
        let first = members
            .first()
            .ok_or_else(|| anyhow!("the spec has no etcd node"))?;
        // From here on every render founds etcd from this snapshot: a second try
        // renders the same documents.
        let state = StateFile::new(state_dir);
        let mut launched = state.load()?.unwrap_or_default();
        for m in &members {
            launched.etcd_joined.remove(&m.name);
        }
        // Member i joins the cluster of members 1..=i: known now, so every server is
        // rendered and booted at once.
        let joined = members
            .iter()
            .enumerate()
            .skip(1)
            .map(|(i, m)| {
                (
                    m.name.clone(),
                    members[..=i].iter().map(|m| m.name.clone()).collect(),
                )
            })
            .collect();
        launched.etcd_recovery = Some(EtcdRecovery {
            token: format!("{}-etcd-{}", spec.name, &sha256[..12]),
            restored_on: Some(first.name.clone()),
            snapshot_sha256: sha256.clone(),
            joined,
        });
        state.save(&launched)?;
        // No old member may come back: it would hold data from after the snapshot.
        for m in &members {
            replacer.delete_server(&m.name).await?;
        }
        let at = |what: &str| println!("{what} at {:.0}s", started.elapsed().as_secs_f64());
        at("recover: old servers deleted");
        launch_members(&replacer, &members).await?;
        at("recover: new servers created");
        let restored = etcd.send_restore(&first.name, snapshot, wait).await?;
        println!(
            "etcd: {} restored the snapshot ({} keys, revision {})",
            first.name, restored["restored"]["totalKey"], restored["restored"]["revision"]
        );
        at("recover: snapshot restored");
        wait_member_healthy(&etcd, first, wait).await?;
        let dropped = etcd.delete_prefix(&first.name, MASTER_LEASES).await?;
        println!("etcd: dropped {dropped} API server lease(s) from before the snapshot");
        // One at a time: a member added before the previous one runs would leave the
        // cluster without quorum until both do.
        for member in members.iter().skip(1) {
            let id = etcd.add(&peer_url(member.private_ip), &first.name).await?;
            println!("etcd: added member {} ({id:x})", member.name);
            wait_member_healthy(&etcd, member, wait).await?;
        }
        println!(
            "etcd: all {} members healthy {:.0}s after the start of recover",
            members.len(),
            started.elapsed().as_secs_f64()
        );
        if spec.first_master().is_some() && !etcd_only {
            let kube = KubeAdmin::new(public_address(spec, state_dir)?, pki, session.timeout)?;
            wait_live_api_endpoints(&kube, spec, wait).await?;
        }
        println!(
            "recovered etcd from {} in {:.0}s",
            chosen.id(),
            started.elapsed().as_secs_f64()
        );
        Ok(())
    })
}

/// The copy to restore and its bytes, checked: `from` (a file in backups/, or
/// `swift:<object>`), else the newest good copy, local or in Swift. A damaged copy is
/// skipped with a warning, never restored. When the spec keeps copies in Swift and Swift
/// cannot be listed, recover refuses rather than restore an older local copy unawares.
async fn choose_copy(
    spec: &Spec,
    state_dir: &Path,
    from: Option<&Path>,
    c: &CloudArgs<'_>,
) -> Result<(copies::Copy, Vec<u8>)> {
    // A local copy by its file name (with .db, .json or neither), a Swift one as given.
    let from = from.map(|f| {
        let text = f.to_string_lossy();
        match (text.starts_with("swift:"), f.file_name()) {
            (false, Some(name)) => {
                let name = name.to_string_lossy();
                name.strip_suffix(".json").unwrap_or(&name).to_string()
            }
            _ => text.into_owned(),
        }
    });
    let wanted_swift = from.as_deref().is_none_or(|f| f.starts_with("swift:"));
    let mut all = Vec::new();
    if from.as_deref().is_none_or(|f| !f.starts_with("swift:")) {
        all.extend(copies::local(state_dir)?);
    }
    let mut swift = None;
    if let (Some(wanted), true) = (&spec.etcd.swift_backups, wanted_swift) {
        let listed = async {
            let s = Swift::connect(c.os_cloud, c.timeout).await?;
            let (offsite, ignored) = copies::offsite(&s, spec, &wanted.container).await?;
            Ok::<_, anyhow::Error>((s, offsite, ignored))
        }
        .await;
        match listed {
            Ok((s, offsite, ignored)) => {
                for (name, why) in ignored {
                    eprintln!("warning: Swift object `{}` is no copy: {why}", shown(&name, 200));
                }
                all.extend(offsite);
                swift = Some(s);
            }
            Err(e) => bail!(
                "the copies in Swift ({}) could not be listed: {e:#}; a local copy may be older than them. Name one with --from to restore without Swift. Nothing was deleted.",
                wanted.container
            ),
        }
    }
    copies::sort_newest_first(&mut all);
    let swift = swift.as_ref().zip(
        spec.etcd
            .swift_backups
            .as_ref()
            .map(|w| w.container.as_str()),
    );
    if let Some(from) = from {
        let copy = all
            .into_iter()
            .find(|c| c.id() == from || c.id() == format!("{from}.db"))
            .ok_or_else(|| anyhow!("no copy {from} (see `paasgen backup list`)"))?;
        let bytes = copies::fetch(&copy, state_dir, swift)
            .await
            .map_err(|e| anyhow!("copy {}: {e:#}", copy.id()))?;
        return Ok((copy, bytes));
    }
    for copy in all {
        match copies::fetch(&copy, state_dir, swift).await {
            Ok(bytes) => return Ok((copy, bytes)),
            Err(e) => eprintln!("warning: copy {} skipped: {e:#}", shown(&copy.id(), 200)),
        }
    }
    bail!(
        "no good copy of etcd in {}/backups{}: take one with `paasgen backup now` while etcd runs",
        state_dir.display(),
        if spec.etcd.swift_backups.is_some() {
            " or in Swift"
        } else {
            ""
        }
    )
}

/// `--from` names a file in backups/ by its name: a path elsewhere is refused, not
/// quietly swapped for a same-named file there.
fn check_from_path(state_dir: &Path, from: &Path) -> Result<()> {
    let dir = backups_dir(state_dir);
    let Some(parent) = from.parent().filter(|p| !p.as_os_str().is_empty()) else {
        return Ok(());
    };
    if from.to_string_lossy().starts_with("swift:") {
        return Ok(());
    }
    let same = |a: &Path, b: &Path| {
        a.canonicalize()
            .ok()
            .is_some_and(|a| Some(a) == b.canonicalize().ok())
    };
    if !same(parent, &dir) {
        bail!(
            "--from {}: recover restores only backups in {} (a snapshot and its record, see `paasgen backup list`) or in Swift (`swift:<object>`); name one by its file name",
            from.display(),
            dir.display()
        );
    }
    Ok(())
}

/// Recover deletes every member: it goes ahead only when etcd's majority is lost and
/// every member was seen, alive or dead (`liveness`). A cluster that still has its
/// majority is repaired member by member (`rebuild`), losing nothing; recovering it
/// would lose every write since the backup (`--force` does it anyway). A cluster it
/// cannot see is never recovered.
async fn refuse_unless_lost(
    spec: &Spec,
    etcd: &EtcdAdmin,
    cloud: &AnyCloud,
    force: bool,
) -> Result<()> {
    let census = etcd_census(spec, etcd, cloud).await?;
    let majority = check_lost(spec, &census, force)?;
    // A member that says it has no leader may be in the middle of an election: what
    // it says must still hold a moment later.
    if !majority && census.has_unhealthy_answers() {
        tokio::time::sleep(Duration::from_secs(5)).await;
        check_lost(spec, &etcd_census(spec, etcd, cloud).await?, force)?;
    }
    Ok(())
}

/// Refuses unless `census` shows etcd lost and every member seen; `Ok(true)` when it
/// still has its majority and `--force` goes on anyway.
fn check_lost(spec: &Spec, census: &Census, force: bool) -> Result<bool> {
    println!("etcd: {census}");
    let members = spec.nodes_with_role(Role::Etcd).count();
    let healthy = census.healthy().len();
    if keeps_quorum(members, healthy) {
        let message = format!(
            "etcd still has its majority ({healthy} of {members} healthy): replace the others with `paasgen rebuild`, which loses nothing; recover would replace every member and lose every write since the backup"
        );
        if !force {
            bail!("{message} (--force recovers anyway)");
        }
        eprintln!("warning: {message} (--force)");
        return Ok(true);
    }
    if let Some(why) = census.blind_spots() {
        bail!("recover deletes every etcd server, and {why} Nothing was deleted.");
    }
    Ok(false)
}

/// Renders with the recovery as the state file says it, and creates every member.
async fn launch_members(replacer: &Replacer<'_>, members: &[Node]) -> Result<()> {
    let docs = render::render(
        replacer.spec,
        replacer.pki,
        &render_options(replacer.state_dir)?,
    )?;
    let desired = desired::resources(replacer.spec, &docs)?;
    replacer.create_servers(members, &docs, &desired).await
}

/// Waits until the `kubernetes` Service lists exactly the masters whose kubelet runs
/// (their API servers renew a lease; the dropped ones of dead masters never return).
async fn wait_live_api_endpoints(kube: &KubeAdmin, spec: &Spec, wait: Duration) -> Result<()> {
    let start = Instant::now();
    let mut last = String::from("no answer");
    while start.elapsed() < wait {
        // A look at the API takes several calls, each retried: bounded as a whole.
        let look = tokio::time::timeout(Duration::from_secs(20), async {
            let mut live = Vec::new();
            for m in spec.nodes_with_role(Role::Master) {
                if kube.kubelet_alive(&m.name).await? {
                    live.push(m.private_ip.to_string());
                }
            }
            live.sort();
            Ok::<_, anyhow::Error>((kube.api_endpoints().await?, live))
        })
        .await;
        match look {
            Ok(Ok((endpoints, live))) if !endpoints.is_empty() && endpoints == live => {
                println!(
                    "kubernetes: the API answers; the kubernetes Service lists {} after {:.0}s",
                    endpoints.join(", "),
                    start.elapsed().as_secs_f64()
                );
                return Ok(());
            }
            Ok(Ok((endpoints, live))) => {
                last = format!(
                    "endpoints [{}], live masters [{}]",
                    endpoints.join(", "),
                    live.join(", ")
                )
            }
            Ok(Err(e)) => last = format!("{e:#}"),
            Err(_) => last = "the API did not answer within 20s".into(),
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    bail!(
        "etcd is recovered, but the kubernetes Service did not settle on the live masters within {}s ({last}); `--etcd-only` skips this check",
        wait.as_secs()
    )
}
