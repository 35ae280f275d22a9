//! What each CLI verb does, composed from the pipeline modules. Output for people goes
//! to stdout; problems go to stderr through the error the verb returns.

pub mod backup;
pub mod cloud;
pub mod image;
pub mod lab;
pub mod rebuild;
pub mod recover;
pub mod status;
pub mod upgrade;

use crate::day2::setup::{
    load_spec, public_address, render_in_memory, runtime, script_path, state_dir_for,
};
use crate::fsutil::{write_atomic, PUBLIC};
use crate::lock::StateLock;
use crate::pki::{describe_all, Pki};
use crate::render::{self, base64_len, RenderOptions};
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

/// What an image script (images/bake, images/qcow2) built: the path it prints last
/// (it builds only when its recipe changed).
pub fn built_path(relative: &str) -> Result<PathBuf> {
    let script = script_path(relative)?;
    let out = std::process::Command::new(&script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!("{relative} failed ({})", out.status);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    match text.lines().last().map(str::trim).filter(|l| !l.is_empty()) {
        Some(path) => Ok(PathBuf::from(path)),
        None => bail!("{relative} printed no path"),
    }
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
        let met = runtime()?.block_on(crate::api_certs::serving_certs(
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
