//! What the day-2 verbs that replace nodes (rebuild, recover, upgrade) stand on, set up
//! in one place: the cloud connected, the state dir locked, then the spec with its PKI,
//! and from those the `Replacer` that holds every safety check of a replacement.

use super::replace::Replacer;
use super::setup::{connect, load_spec, runtime, state_dir_for, CloudArgs};
use crate::cloud::any::AnyCloud;
use crate::cloud::apply::Options;
use crate::lock::StateLock;
use crate::pki::Pki;
use crate::spec::Spec;
use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub struct Session {
    pub state_dir: PathBuf,
    pub rt: tokio::runtime::Runtime,
    pub cloud: AnyCloud,
    pub lock: StateLock,
    spec_file: PathBuf,
    /// Of each API call.
    pub timeout: Duration,
}

/// How replacements go, as the user asked.
#[derive(Debug, Clone, Copy)]
pub struct ReplaceWith {
    /// Replace an etcd member although the others cannot keep the majority meanwhile, a
    /// gateway although no other serves.
    pub force: bool,
    /// Where etcd's members are reached [default: the public address, port 2379].
    pub etcd_via: Option<SocketAddr>,
    /// How long each replacement may take to be healthy.
    pub wait: Duration,
}

/// The spec as its file says now and the PKI it needs, saved under the session's lock.
pub struct Cluster {
    pub spec: Spec,
    pub pki: Pki,
}

impl Session {
    /// Connects to the cloud and takes the state dir's lock for `verb`.
    pub fn open(c: &CloudArgs, verb: &str) -> Result<Session> {
        Session::open_on(runtime()?, c, verb)
    }

    /// `open`, on a runtime that already did what comes first (recover reads and
    /// checks its copy before it touches the cloud).
    pub fn open_on(rt: tokio::runtime::Runtime, c: &CloudArgs, verb: &str) -> Result<Session> {
        let state_dir = state_dir_for(c.file, c.state_dir);
        let cloud = rt.block_on(connect(c))?;
        let lock = StateLock::acquire(&state_dir, verb, c.wait_lock)?;
        Ok(Session {
            state_dir,
            rt,
            cloud,
            lock,
            spec_file: c.file.to_path_buf(),
            timeout: c.timeout,
        })
    }

    pub fn spec_file(&self) -> &Path {
        &self.spec_file
    }

    /// The spec and its PKI (made or completed, then saved: paasgen's etcd client
    /// certificate may be new to an older state dir).
    pub fn cluster(&self) -> Result<Cluster> {
        self.cluster_renewing(time::Duration::ZERO)
    }

    /// `cluster`, with the leaves that expire within `within` re-issued (and saved).
    pub fn cluster_renewing(&self, within: time::Duration) -> Result<Cluster> {
        let spec = load_spec(&self.spec_file)?;
        let pki =
            Pki::ensure_renewing(&self.state_dir, &spec, within).context("preparing the PKI")?;
        pki.save(&self.lock)?;
        Ok(Cluster { spec, pki })
    }

    pub fn replacer<'a>(
        &'a self,
        cluster: &'a Cluster,
        opts: &'a Options,
        with: ReplaceWith,
    ) -> Replacer<'a> {
        Replacer {
            spec: &cluster.spec,
            pki: &cluster.pki,
            cloud: &self.cloud,
            state_dir: &self.state_dir,
            opts,
            with,
            timeout: self.timeout,
        }
    }
}
