//! What every verb stands on, CLI verbs and day-2 machinery alike: the spec loaded, the
//! state dir found, the render options its history gives, where the cluster is reached,
//! and the cloud connected. Kept here so that no verb imports another for it.

use super::records;
use crate::cloud::any::AnyCloud;
use crate::cloud::lab::LabCloud;
use crate::cloud::openstack::OpenStack;
use crate::pki::Pki;
use crate::render::{self, NodeDocument, RenderOptions};
use crate::spec::{self, Problem, Spec};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// Where the verbs build: a real cloud, or the local boot lab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Openstack,
    Lab,
}

pub struct CloudArgs<'a> {
    pub provider: Provider,
    pub file: &'a Path,
    pub out: &'a Path,
    pub state_dir: Option<&'a Path>,
    pub os_cloud: Option<&'a str>,
    /// Wait for another writer of the state dir instead of failing.
    pub wait_lock: bool,
    /// Connect and read timeout of every HTTP call.
    pub timeout: std::time::Duration,
}

/// The chosen provider, connected (credentials checked) before anything is written.
pub async fn connect(args: &CloudArgs<'_>) -> Result<AnyCloud> {
    Ok(match args.provider {
        Provider::Openstack => AnyCloud::OpenStack(Box::new(
            OpenStack::connect(args.os_cloud, args.timeout).await?,
        )),
        Provider::Lab => AnyCloud::Lab(LabCloud::connect(script_path("scripts/lab")?)?),
    })
}

pub fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn print_warnings(warnings: &[Problem]) {
    for w in warnings {
        eprintln!("{w}");
    }
}

/// Loads and validates the spec, printing its warnings.
pub fn load_spec(file: &Path) -> Result<Spec> {
    let (spec, warnings) = spec::load(file)?;
    print_warnings(&warnings);
    Ok(spec)
}

/// The state directory: given, or `.paasgen` next to the spec.
pub fn state_dir_for(file: &Path, given: Option<&Path>) -> PathBuf {
    match given {
        Some(dir) => dir.to_path_buf(),
        None => file.parent().unwrap_or(Path::new("")).join(".paasgen"),
    }
}

/// Where users reach the cluster: the public VIP, or in floating mode the floating IP
/// `launch` recorded in the state dir.
pub fn public_address(spec: &Spec, state: &Path) -> Result<std::net::Ipv4Addr> {
    render::public_address(spec, &render_options(state)?)
}

/// Where paasgen reaches etcd: `given` (`--etcd-via`), else the gateways' etcd port on
/// the cluster's public address.
pub fn etcd_via(
    spec: &Spec,
    state: &Path,
    given: Option<std::net::SocketAddr>,
) -> Result<std::net::SocketAddr> {
    match given {
        Some(via) => Ok(via),
        None => Ok(std::net::SocketAddr::from((
            public_address(spec, state)?,
            2379,
        ))),
    }
}

/// How the cluster's history shapes a render: members that joined a running etcd, and
/// an etcd founded again from a snapshot.
pub fn render_options(state: &Path) -> Result<RenderOptions> {
    let launched = crate::cloud::state::StateFile::new(state)
        .load()?
        .unwrap_or_default();
    Ok(RenderOptions {
        etcd_joining: launched.etcd_joined,
        etcd_recovery: launched.etcd_recovery,
        etcd_upload: records::offsite_target(state)?,
        floating_ip: launched.floating_ip.map(|f| f.address),
        join_token: None,
    })
}

/// The PKI (loaded and checked; what is missing issued in memory) and every document,
/// with admin.kubeconfig staged. Nothing is written: callers that write save the PKI.
pub fn render_in_memory(spec: &Spec, state: &Path) -> Result<(Pki, Vec<NodeDocument>)> {
    render_in_memory_with(spec, state, &render_options(state)?)
}

/// `render_in_memory` with the given options.
pub fn render_in_memory_with(
    spec: &Spec,
    state: &Path,
    opts: &RenderOptions,
) -> Result<(Pki, Vec<NodeDocument>)> {
    let mut pki = Pki::ensure(state, spec).context("preparing the PKI")?;
    let docs = render::render(spec, &pki, opts)?;
    let kubeconfig = render::admin_kubeconfig(spec, &pki, opts)?;
    pki.stage_file("admin.kubeconfig", kubeconfig.into_bytes(), true)?;
    Ok((pki, docs))
}

/// One of paasgen's scripts, in the source tree or under `$PAASGEN_HOME`.
pub fn script_path(relative: &str) -> Result<PathBuf> {
    let home = std::env::var_os("PAASGEN_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    let script = home.join(relative);
    if !script.exists() {
        bail!(
            "{} not found: set PAASGEN_HOME to paasgen's source tree",
            script.display()
        );
    }
    Ok(script)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::state::{FloatingIpRecord, StateFile};

    #[test]
    fn day_two_verbs_reach_a_floating_cluster_through_its_recorded_floating_ip() {
        let spec = crate::spec::parse("floating.yaml", crate::spec::FLOATING_EXAMPLE)
            .unwrap()
            .0;
        let dir = tempfile::tempdir().unwrap();
        // Before launch allocated it, no verb can know where the cluster is.
        let err = etcd_via(&spec, dir.path(), None).unwrap_err().to_string();
        assert!(err.contains("paasgen launch"), "{err}");
        let state = StateFile::new(dir.path());
        let mut launched = state.load().unwrap().unwrap_or_default();
        launched.floating_ip = Some(FloatingIpRecord {
            id: "fip-1".into(),
            address: "203.0.113.150".parse().unwrap(),
        });
        state.save(&launched).unwrap();
        assert_eq!(
            etcd_via(&spec, dir.path(), None).unwrap(),
            "203.0.113.150:2379".parse().unwrap()
        );
        assert_eq!(
            public_address(&spec, dir.path()).unwrap().to_string(),
            "203.0.113.150"
        );
        // --etcd-via wins.
        let given = "127.0.0.1:12379".parse().unwrap();
        assert_eq!(etcd_via(&spec, dir.path(), Some(given)).unwrap(), given);
        // Fixed mode: the public VIP, whatever the state says.
        let fixed = crate::spec::parse("c.yaml", crate::spec::EXAMPLE)
            .unwrap()
            .0;
        assert_eq!(
            etcd_via(&fixed, dir.path(), None).unwrap(),
            "203.0.113.10:2379".parse().unwrap()
        );
    }
}
