//! The boot lab: a render's nodes as local systemd-nspawn containers on a fabric of
//! network namespaces, and a provider of its own (`--cloud lab`), so that launch,
//! rebuild and the other verbs run the same planner on the lab as on OpenStack.
//!
//! Servers are the lab's nodes: creating one boots a fresh copy of the image on the
//! node's NICs and fixed addresses, fed the server's user-data (`Lab::replace`);
//! deleting one powers it off and drops its disk (`Lab::remove`). The network side
//! (networks, ports, addresses) is the fabric `paasgen lab up` built from the render, so
//! those resources are records here only: the lab does not enforce security groups or
//! anti-affinity. The logic is here; `scripts/lab` only drives host tools (host.rs).

mod cloud;
mod disk;
mod host;
mod inspect;
mod power;
mod state;
mod up;

pub use cloud::LabCloud;
pub use up::UpOptions;

use anyhow::Result;
use host::Host;
use state::LabState;
use std::path::PathBuf;

/// The lab on this machine, as its state dir holds it.
pub struct Lab {
    host: Host,
}

impl Lab {
    /// `script` is scripts/lab, the host plumbing.
    pub fn new(script: PathBuf) -> Lab {
        Lab {
            host: Host::from_env(script),
        }
    }

    fn state(&self) -> Result<LabState> {
        LabState::load(&self.host.dir)
    }
}

fn log(msg: impl std::fmt::Display) {
    eprintln!("lab: {msg}");
}
