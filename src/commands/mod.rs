//! What each CLI verb does, composed from the pipeline modules. Output for people goes
//! to stdout; problems go to stderr through the error the verb returns.

pub mod backup;
pub mod cloud;
pub mod copies;
mod handover;
pub mod image;
pub mod rebuild;
pub mod recover;
mod retire;
pub mod session;
pub mod status;
pub mod upgrade;

use crate::fsutil::{write_atomic, PUBLIC};
use crate::lock::StateLock;
use crate::pki::{describe_all, Pki};
use crate::render::{self, base64_len, NodeDocument, RenderOptions};
use crate::spec::{self, Problem, Spec};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

pub fn init(file: &Path, force: bool, workers: Option<usize>) -> Result<()> {
    if file.exists() && !force {
        bail!("{} exists; pass --force to replace it", file.display());
    }
    let text = match workers {
        None => spec::EXAMPLE.to_string(),
        Some(0) => bail!("--workers 0: a cluster needs at least one worker"),
        Some(n) => spec::example_with_workers(n),
    };
    // The same limits as validate and render: init never writes a spec they refuse.
    let (spec, _) = spec::parse(&file.display().to_string(), &text).map_err(|e| {
        anyhow::anyhow!(
            "--workers {}: the spec would be invalid:\n{e}",
            workers.unwrap_or(0)
        )
    })?;
    check_renders(&spec).with_context(|| format!("--workers {}", workers.unwrap_or(0)))?;
    write_atomic(file, text.as_bytes(), PUBLIC)?;
    println!(
        "wrote {}: edit it, then run `paasgen render -f {}`",
        file.display(),
        file.display()
    );
    Ok(())
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

/// Renders `spec` with a throwaway PKI, writing nothing: what render would refuse
/// (a document over Nova's limit), validate and init refuse too.
pub fn check_renders(spec: &Spec) -> Result<()> {
    let pki = Pki::throwaway(spec)?;
    render::render(spec, &pki, &RenderOptions::throwaway())?;
    Ok(())
}

pub fn validate(file: &Path) -> Result<()> {
    let spec = load_spec(file)?;
    check_renders(&spec).map_err(|e| too_large_is_a_spec_problem(file, &spec, e))?;
    println!("ok");
    Ok(())
}

/// A document Nova cannot take is the spec's doing (exit 2): the problem names the field
/// that makes it big, judged by the document's biggest part.
fn too_large_is_a_spec_problem(file: &Path, spec: &Spec, e: anyhow::Error) -> anyhow::Error {
    let Some(big) = e.downcast_ref::<render::TooLarge>() else {
        return e;
    };
    let biggest = big
        .parts
        .first()
        .map(|(what, _)| what.as_str())
        .unwrap_or("");
    let keys: usize = spec.ssh_authorized_keys.iter().map(String::len).sum();
    let node = spec.nodes.iter().position(|n| n.value.name == big.node);
    let field = if biggest.starts_with('/') {
        match biggest {
            p if p.contains("hosts") || p.contains("haproxy") => "nodes".to_string(),
            p if p.contains("apt") => "mirrors.debian".to_string(),
            _ => node.map_or("nodes".into(), |i| format!("nodes[{i}]")),
        }
    } else if keys * 2 > big.parts.first().map_or(0, |(_, n)| *n) {
        "ssh_authorized_keys".to_string()
    } else {
        "nodes".to_string()
    };
    // The node's own entry is where the line is known.
    let line = node
        .filter(|i| field == format!("nodes[{i}]"))
        .map(|i| spec.nodes[i].referenced.line());
    let mut message = format!("{big}: make `{field}` smaller");
    if field == "ssh_authorized_keys" {
        message.push_str(&format!(
            " ({} keys, {keys} bytes, in every node's user-data)",
            spec.ssh_authorized_keys.len()
        ));
    }
    spec::SpecError {
        file: file.display().to_string(),
        problems: vec![Problem {
            severity: spec::Severity::Error,
            path: field,
            line,
            column: None,
            message,
        }],
    }
    .into()
}

/// The state directory: given, or `.paasgen` next to the spec.
pub fn state_dir_for(file: &Path, given: Option<&Path>) -> PathBuf {
    match given {
        Some(dir) => dir.to_path_buf(),
        None => file.parent().unwrap_or(Path::new("")).join(".paasgen"),
    }
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
        etcd_upload: backup::offsite_target(state)?,
        floating_ip: launched.floating_ip.map(|f| f.address),
        join_token: None,
    })
}

/// What `render` is told on the command line.
pub struct RenderArgs<'a> {
    pub file: &'a Path,
    pub out: &'a Path,
    pub state_dir: Option<&'a Path>,
    /// Wait for another writer instead of failing.
    pub wait_lock: bool,
    /// Replace the documents of another cluster found in `out`.
    pub force: bool,
    /// Write nothing; fail when `out` differs from what render gives now.
    pub check: bool,
}

/// `render --check` found documents in out/ that differ from a render now.
#[derive(Debug, thiserror::Error)]
#[error("out/ differs from what render gives now (run `paasgen render` to update it)")]
pub struct OutOfDate;

pub fn render(args: &RenderArgs) -> Result<()> {
    let spec = load_spec(args.file)?;
    let state = state_dir_for(args.file, args.state_dir);
    if args.check {
        // Read-only: no lock, nothing written, missing keys issued in memory only.
        let (_, docs) = render_in_memory(&spec, &state)
            .map_err(|e| too_large_is_a_spec_problem(args.file, &spec, e))?;
        let text = cloud::diff_rendered(args.out, &docs)?;
        if text.is_empty() {
            println!("out/ is up to date");
            return Ok(());
        }
        print!("{text}");
        return Err(OutOfDate.into());
    }
    if !state.exists() {
        // A first render of a spec that cannot render creates no state dir (the lock
        // would): the documents are tried first with throwaway keys.
        check_renders(&spec).map_err(|e| too_large_is_a_spec_problem(args.file, &spec, e))?;
    }
    let lock = StateLock::acquire(&state, "render", args.wait_lock)?;
    let (pki, docs) = render_in_memory(&spec, &state)
        .map_err(|e| too_large_is_a_spec_problem(args.file, &spec, e))?;
    // Only now, with every document rendered and out/ found to be ours, is anything written.
    let previous = render::previous_manifest(args.out, &spec, args.force)?;
    pki.save(&lock)?;
    let manifest = render::write_output(args.out, &spec, &docs, previous.as_ref())?;
    for change in pki.changes() {
        println!("pki: {change}");
    }
    println!(
        "{:<12} {:<8} {:<15} {:<15} {:>9} {:>9}",
        "NODE", "ROLE", "PRIVATE IP", "PUBLIC IP", "BYTES", "BASE64"
    );
    for n in &manifest.nodes {
        println!(
            "{:<12} {:<8} {:<15} {:<15} {:>9} {:>9}",
            n.name,
            n.role.as_str(),
            n.private_ip,
            n.public_ip.as_deref().unwrap_or("-"),
            n.bytes,
            base64_len(n.bytes)
        );
    }
    println!(
        "wrote {} documents and manifest.json to {}; admin kubeconfig: {}",
        manifest.nodes.len(),
        args.out.display(),
        state.join("admin.kubeconfig").display()
    );
    Ok(())
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

/// Runs one of paasgen's scripts (the lab, the image bake) from the source tree, or
/// from `$PAASGEN_HOME` when the binary was installed elsewhere.
pub fn run_script(relative: &str, args: &[String]) -> Result<()> {
    let script = script_path(relative)?;
    let status = std::process::Command::new(&script)
        .args(args)
        .status()
        .with_context(|| format!("running {}", script.display()))?;
    if !status.success() {
        bail!("{relative} {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Days before its expiry from which a certificate is warned of (`upgrade`'s default
/// renewal window).
pub(crate) const EXPIRY_WARNING_DAYS: i64 = 60;

/// "<date> (in N days)", with a warning when fewer than `EXPIRY_WARNING_DAYS` remain.
fn expiry(c: &crate::pki::inspect::CertSummary) -> String {
    let days = (c.not_after_unix - time::OffsetDateTime::now_utc().unix_timestamp()) / 86_400;
    let warning = if days < EXPIRY_WARNING_DAYS {
        "  WARNING: renew it with `paasgen upgrade`"
    } else {
        ""
    };
    format!("{} (in {days} days){warning}", c.not_after)
}

pub fn pki_show(file: &Path, state_dir: Option<&Path>, live: bool) -> Result<()> {
    let state_dir = state_dir_for(file, state_dir);
    let pki_dir = state_dir.join("pki");
    if !pki_dir.exists() {
        bail!(
            "no PKI at {}: run `paasgen render` first",
            pki_dir.display()
        );
    }
    for (path, c) in describe_all(&pki_dir)? {
        println!("{path}");
        println!("  subject:  {}", c.subject);
        println!("  issuer:   {}", c.issuer);
        if c.is_ca {
            println!("  CA:       yes");
        }
        if !c.sans.is_empty() {
            println!("  SANs:     {}", c.sans.join(", "));
        }
        println!("  usages:   {}", c.key_usages.join(", "));
        if !c.extended_key_usages.is_empty() {
            println!("  EKUs:     {}", c.extended_key_usages.join(", "));
        }
        println!("  expires:  {}", expiry(&c));
    }
    if live {
        let spec = load_spec(file)?;
        let pki = Pki::ensure(&state_dir, &spec)?;
        let masters: Vec<(String, std::net::Ipv4Addr)> = spec
            .nodes_with_role(crate::spec::Role::Master)
            .map(|m| (m.name.clone(), m.private_ip))
            .collect();
        let address = public_address(&spec, &state_dir)?;
        let met = cloud::runtime()?.block_on(crate::api_certs::serving_certs(
            address,
            &pki,
            &masters,
            std::time::Duration::from_secs(10),
        ))?;
        for (name, _) in &masters {
            match met.get(name) {
                Some(c) => println!(
                    "{name}: API server (live, kubeadm's)\n  expires:  {}",
                    expiry(c)
                ),
                None => println!("{name}: API server (live): not met through {address}:6443"),
            }
        }
    }
    Ok(())
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
