//! `paasgen backup now | setup | prune | list`: the spec loaded and the state dir locked
//! here, the work done by `day2::backup` (snapshots, their records, the Swift copies).

use crate::cloud::openstack::swift::Swift;
use crate::day2::records::{backups_dir, offsite_target};
use crate::day2::setup::{etcd_via, load_spec, runtime, state_dir_for};
use crate::day2::{backup, copies};
use crate::lock::StateLock;
use crate::pki::Pki;
use crate::spec::shown;
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::time::Duration;

pub struct BackupArgs<'a> {
    pub file: &'a Path,
    pub state_dir: Option<&'a Path>,
    /// Cloud of clouds.yaml for the Swift copy (else OS_CLOUD / OS_*).
    pub os_cloud: Option<&'a str>,
    pub etcd_via: Option<std::net::SocketAddr>,
    pub timeout: Duration,
    pub wait_lock: bool,
}

pub fn backup_now(args: &BackupArgs) -> Result<()> {
    let spec = load_spec(args.file)?;
    let state_dir = state_dir_for(args.file, args.state_dir);
    let lock = StateLock::acquire(&state_dir, "backup", args.wait_lock)?;
    let pki = Pki::ensure(&state_dir, &spec).context("preparing the PKI")?;
    pki.save(&lock)?;
    let via = etcd_via(&spec, &state_dir, args.etcd_via)?;
    backup::take(&spec, &pki, &state_dir, via, args.os_cloud, args.timeout)
}

/// `backup prune`: what `backup now` does after its upload, on its own (for a cron
/// job where paasgen runs).
pub fn prune(file: &Path, os_cloud: Option<&str>, timeout: Duration) -> Result<()> {
    let spec = load_spec(file)?;
    let Some(wanted) = &spec.etcd.swift_backups else {
        bail!("the spec has no etcd.swift_backups: nothing to prune");
    };
    let rt = runtime()?;
    rt.block_on(async {
        let swift = Swift::connect(os_cloud, timeout).await?;
        backup::prune_swift(&swift, &spec, &wanted.container, wanted.keep).await
    })
}

pub fn backup_list(
    file: &Path,
    state_dir: Option<&Path>,
    os_cloud: Option<&str>,
    timeout: Duration,
) -> Result<()> {
    let spec = load_spec(file)?;
    let state_dir = state_dir_for(file, state_dir);
    let mut all = copies::local(&state_dir)?;
    if let (Some(wanted), Some(_)) = (&spec.etcd.swift_backups, offsite_target(&state_dir)?) {
        let rt = runtime()?;
        let (offsite, ignored) = rt.block_on(async {
            let swift = Swift::connect(os_cloud, timeout).await?;
            copies::offsite(&swift, &spec, &wanted.container).await
        })?;
        for (name, why) in &ignored {
            eprintln!(
                "warning: Swift object `{}` in {} is no copy: {why}",
                shown(name, 200),
                wanted.container
            );
        }
        all.extend(offsite);
    }
    if all.is_empty() {
        println!("no backups in {}", backups_dir(&state_dir).display());
        return Ok(());
    }
    copies::sort_newest_first(&mut all);
    copies::print(&all, &state_dir);
    Ok(())
}

pub struct SetupArgs<'a> {
    pub file: &'a Path,
    pub state_dir: Option<&'a Path>,
    pub os_cloud: Option<&'a str>,
    pub timeout: Duration,
    pub wait_lock: bool,
}

/// `backup setup`: the container (versioned, so an overwrite keeps the earlier copy)
/// with a TempURL key that only paasgen holds; the etcd nodes then get, at their next
/// render, a signature good for PUT under their own name.
pub fn setup(args: &SetupArgs) -> Result<()> {
    let spec = load_spec(args.file)?;
    let Some(wanted) = &spec.etcd.swift_backups else {
        bail!("the spec has no etcd.swift_backups: add `swift_backups: {{ container: <name> }}` under etcd");
    };
    let state_dir = state_dir_for(args.file, args.state_dir);
    let _lock = StateLock::acquire(&state_dir, "backup setup", args.wait_lock)?;
    backup::prepare_swift(wanted, &state_dir, args.os_cloud, args.timeout)
}
