//! `paasgen rebuild NODE`: one node replaced by a fresh server (see `day2::replace`).

use crate::cloud::apply::Options;
use crate::day2::session::{ReplaceWith, Session};
use crate::day2::setup::CloudArgs;
use anyhow::{anyhow, Result};

pub struct RebuildArgs<'a> {
    pub cloud: CloudArgs<'a>,
    pub node: &'a str,
    pub with: ReplaceWith,
}

pub fn rebuild(args: &RebuildArgs, opts: &Options) -> Result<()> {
    let session = Session::open(&args.cloud, "rebuild")?;
    let cluster = session.cluster()?;
    let node = cluster
        .spec
        .node(args.node)
        .ok_or_else(|| {
            anyhow!(
                "{} is not a node of {}",
                args.node,
                session.spec_file().display()
            )
        })?
        .clone();
    let replacer = session.replacer(&cluster, opts, args.with);
    session.rt.block_on(replacer.replace(&node))
}
