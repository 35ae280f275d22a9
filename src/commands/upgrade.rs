//! `paasgen upgrade [--to VERSION] [--etcd VERSION [--etcd-sha256 HEX]]`: the running
//! cluster brought to what the spec says, by replacement (see `day2::upgrade`).

use crate::cloud::apply::Options;
use crate::day2::session::{ReplaceWith, Session};
use crate::day2::setup::CloudArgs;
use crate::day2::upgrade::{self, NewVersions};
use anyhow::Result;

pub struct UpgradeArgs<'a> {
    pub cloud: CloudArgs<'a>,
    /// Versions to move to, written into the spec first.
    pub versions: NewVersions<'a>,
    pub with: ReplaceWith,
    /// Certificates that expire within this many days are renewed: paasgen's leaves
    /// re-issued, and the nodes that carry them (or kubeadm's expiring ones) replaced.
    pub renew_within_days: u32,
}

pub fn upgrade(args: &UpgradeArgs, opts: &Options) -> Result<()> {
    // What the spec alone refuses goes before the cloud is even asked.
    upgrade::check_versions(args.cloud.file, &args.versions)?;
    let session = Session::open(&args.cloud, "upgrade")?;
    upgrade::upgrade(
        &session,
        &args.versions,
        args.with,
        args.renew_within_days,
        opts,
    )
}
