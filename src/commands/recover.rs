//! `paasgen recover [--from BACKUP]`: etcd founded again from a backup on new servers
//! (see `day2::recover`).

use crate::cloud::apply::Options;
use crate::day2::recover;
use crate::day2::session::{ReplaceWith, Session};
use crate::day2::setup::{runtime, CloudArgs};
use anyhow::Result;
use std::path::Path;
use std::time::Instant;

pub struct RecoverArgs<'a> {
    pub cloud: CloudArgs<'a>,
    /// A backup of the state dir (its file name or path) [default: the newest good one].
    pub from: Option<&'a Path>,
    /// `force`: recover even though etcd still has its majority (every write since the
    /// backup is lost); `wait`: how long each member may take to be healthy.
    pub with: ReplaceWith,
    /// Do not wait for the Kubernetes API afterwards (its masters are being rebuilt
    /// too, or the cluster runs no Kubernetes yet).
    pub etcd_only: bool,
}

pub fn recover(args: &RecoverArgs, opts: &Options) -> Result<()> {
    let started = Instant::now();
    let rt = runtime()?;
    // The copy is read and checked before the cloud is touched.
    let chosen = recover::choose(&rt, &args.cloud, args.from, started)?;
    let session = Session::open_on(rt, &args.cloud, "recover")?;
    recover::recover(&session, chosen, args.with, args.etcd_only, opts, started)
}
