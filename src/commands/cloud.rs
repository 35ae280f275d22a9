//! The cloud verbs: plan, launch, destroy, diff.

use crate::cloud::apply::{self, Event, Launch, Options};
use crate::cloud::state::StateFile;
use crate::cloud::{desired, plan, Cloud, Kind, Resource};
use crate::day2::setup::{
    connect, load_spec, render_in_memory, render_in_memory_with, render_options, runtime,
    state_dir_for, CloudArgs,
};
use crate::lock::StateLock;
use crate::pki::Pki;
use crate::render::{self, NodeDocument, RenderOptions};
use crate::spec::Spec;
use anyhow::{bail, Result};
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

/// Output format of plan and launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
}

/// Spec, PKI and documents, all in memory (nothing written), and the state dir.
fn prepare(args: &CloudArgs) -> Result<(Spec, Pki, Vec<NodeDocument>, std::path::PathBuf)> {
    let spec = load_spec(args.file)?;
    let state = state_dir_for(args.file, args.state_dir);
    let (pki, docs) = render_in_memory(&spec, &state)?;
    Ok((spec, pki, docs, state))
}

/// Read-only verbs work on what render would write, without writing it.
fn note_unsaved(pki: &Pki) {
    if !pki.changes().is_empty() {
        eprintln!(
            "note: the state dir lacks {} item(s) that `paasgen render` would create; shown as render would write them (nothing was saved)",
            pki.changes().len()
        );
    }
}

pub async fn plan_with<C: Cloud>(
    cloud: &C,
    spec: &Spec,
    desired: &[Resource],
) -> Result<plan::Plan> {
    let existing = apply::retry(&Options::default(), "listing resources", || {
        cloud.inventory(&spec.name)
    })
    .await?;
    Ok(plan::plan(desired, &existing))
}

/// How to render: with the floating IP of `network.public: floating`, found in the cloud
/// or (with `allocate`) allocated and recorded in launch.json first. When there is none
/// and nothing may be written (plan, dry runs), a stand-in address renders the documents.
async fn floating_options<C: Cloud>(
    cloud: &C,
    spec: &Spec,
    state_dir: &Path,
    opts: &Options,
    allocate: bool,
) -> Result<RenderOptions> {
    let mut render_opts = render_options(state_dir)?;
    let Some(fip) = desired::floating_ip(spec)? else {
        return Ok(render_opts);
    };
    let state = StateFile::new(state_dir);
    match apply::floating_ip(cloud, &spec.name, &fip, &state, opts, allocate).await? {
        Some(found) => render_opts.floating_ip = Some(found.address),
        None => {
            eprintln!("note: no floating IP is allocated yet (launch allocates it first): the documents are shown with a stand-in address");
            render_opts.floating_ip = RenderOptions::throwaway().floating_ip;
        }
    }
    Ok(render_opts)
}

/// Render options for verbs that write nothing, before the cloud is asked: in floating
/// mode, the floating IP launch.json records, or a stand-in when there is none yet.
fn reading_options(spec: &Spec, state_dir: &Path) -> Result<RenderOptions> {
    let mut render_opts = render_options(state_dir)?;
    if spec.network.is_floating() && render_opts.floating_ip.is_none() {
        render_opts.floating_ip = RenderOptions::throwaway().floating_ip;
    }
    Ok(render_opts)
}

pub fn plan(args: &CloudArgs, output: Output, verbose: bool) -> Result<()> {
    let spec = load_spec(args.file)?;
    let state_dir = state_dir_for(args.file, args.state_dir);
    // The state is checked before the cloud is asked anything.
    let render_opts = reading_options(&spec, &state_dir)?;
    let (mut pki, mut docs) = render_in_memory_with(&spec, &state_dir, &render_opts)?;
    runtime()?.block_on(async {
        let cloud = connect(args).await?;
        // What the cloud offers is shown before a refusal, so the operator sees why.
        let capabilities = cloud.capabilities().await?;
        let refusals = capabilities
            .as_ref()
            .map(|c| c.refusals(&spec))
            .unwrap_or_default();
        if verbose && output == Output::Text {
            if let Some(c) = &capabilities {
                println!("{c}");
            }
        }
        // One document: what the cloud offers, why it cannot build the spec, the plan.
        let print_json = |plan: serde_json::Value| -> Result<()> {
            let doc = serde_json::json!({"capabilities": capabilities, "refusals": refusals, "plan": plan});
            println!("{}", serde_json::to_string_pretty(&doc)?);
            Ok(())
        };
        if output == Output::Json && !refusals.is_empty() {
            print_json(serde_json::Value::Null)?;
        }
        cloud.check_rights(&spec).await?;
        // Floating mode: documents with the floating IP the cloud has.
        let found = floating_options(&cloud, &spec, &state_dir, &Options::default(), false).await?;
        if found.floating_ip != render_opts.floating_ip {
            (pki, docs) = render_in_memory_with(&spec, &state_dir, &found)?;
        }
        note_unsaved(&pki);
        let desired = desired::resources(&spec, &docs)?;
        let p = plan_with(&cloud, &spec, &desired).await?;
        match output {
            Output::Text => println!("{p}"),
            Output::Json => print_json(serde_json::to_value(&p)?)?,
        }
        Ok(())
    })
}

pub fn launch(args: &CloudArgs, opts: &Options, dry_run: bool, output: Output) -> Result<()> {
    let spec = load_spec(args.file)?;
    let state_dir = state_dir_for(args.file, args.state_dir);
    let rt = runtime()?;
    // Credentials are tried first: a launch that cannot authenticate writes nothing.
    let mut cloud = rt.block_on(connect(args))?;
    cloud.set_parallel(opts.parallel);
    // What the credential may not do is said before anything is created.
    rt.block_on(cloud.check_rights(&spec))?;
    // A dry run writes nothing, so it needs no lock.
    let lock = match dry_run {
        true => None,
        false => Some(StateLock::acquire(&state_dir, "launch", args.wait_lock)?),
    };
    // Floating mode: the floating IP is allocated and recorded before anything renders.
    let render_opts = rt.block_on(floating_options(&cloud, &spec, &state_dir, opts, !dry_run))?;
    let (pki, docs) = render_in_memory_with(&spec, &state_dir, &render_opts)?;
    let desired = desired::resources(&spec, &docs)?;
    let previous = render::previous_manifest(args.out, &spec, false)?;
    rt.block_on(async {
        let Some(lock) = &lock else {
            note_unsaved(&pki);
            println!("{}", plan_with(&cloud, &spec, &desired).await?);
            return Ok(());
        };
        pki.save(lock)?;
        render::write_output(args.out, &spec, &docs, previous.as_ref())?;
        let progress = Progress::new(output == Output::Json);
        let report = |e: Event| progress.event(e);
        let state = StateFile::new(&state_dir);
        let launch = Launch {
            cloud: &cloud,
            cluster: &spec.name,
            desired: &desired,
            opts,
            state: &state,
            docs: &docs,
            report: &report,
        };
        let outcome = launch.run().await;
        progress.finish();
        let outcome = outcome?;
        let record = state.load()?.unwrap_or_default();
        match output {
            Output::Json => println!("{}", serde_json::to_string_pretty(&record.nodes)?),
            Output::Text => {
                println!(
                    "{:<12} {:<8} {:<38} {:<15} PUBLIC IP",
                    "NODE", "STATUS", "SERVER", "PRIVATE IP"
                );
                for (name, n) in &record.nodes {
                    println!(
                        "{:<12} {:<8} {:<38} {:<15} {}",
                        name,
                        n.status,
                        n.server_id,
                        n.private_ip,
                        n.public_ip.as_deref().unwrap_or("-")
                    );
                }
                println!("created {} resource(s)", outcome.created.len());
            }
        }
        let failed = outcome.failed();
        if !failed.is_empty() {
            for (node, n) in &failed {
                eprintln!(
                    "error: {node} is {}: {}",
                    n.status,
                    n.fault.as_deref().unwrap_or("no fault given")
                );
            }
            bail!(
                "{} server(s) did not become ACTIVE (--replace-failed recreates them)",
                failed.len()
            );
        }
        Ok(())
    })
}

/// Bars per phase on a terminal, plain lines elsewhere, nothing for JSON output.
struct Progress {
    quiet: bool,
    bar: std::sync::Mutex<Option<indicatif::ProgressBar>>,
}

impl Progress {
    fn new(quiet: bool) -> Progress {
        Progress {
            quiet,
            bar: std::sync::Mutex::new(None),
        }
    }

    fn event(&self, e: Event) {
        if self.quiet {
            return;
        }
        let tty = std::io::stderr().is_terminal();
        let mut bar = self.bar.lock().expect("progress lock");
        match e {
            Event::Phase { what, total } if tty => {
                if let Some(b) = bar.take() {
                    b.finish();
                }
                let b = indicatif::ProgressBar::new(total as u64).with_style(
                    indicatif::ProgressStyle::with_template(
                        "{prefix:40} [{bar:30}] {pos}/{len} {wide_msg}",
                    )
                    .expect("valid template")
                    .progress_chars("=> "),
                );
                b.set_prefix(what);
                *bar = Some(b);
            }
            Event::Done { what } if tty => {
                if let Some(b) = bar.as_ref() {
                    b.set_message(what);
                    b.inc(1);
                }
            }
            Event::Note(line) if tty => match bar.as_ref() {
                Some(b) => b.println(line),
                None => eprintln!("{line}"),
            },
            Event::Phase { what, total } => eprintln!("{what} ({total})"),
            Event::Done { what } | Event::Note(what) => eprintln!("{what}"),
        }
    }

    fn finish(&self) {
        if let Some(b) = self.bar.lock().expect("progress lock").take() {
            b.finish();
        }
    }
}

pub async fn destroy_with<C: Cloud>(
    cloud: &C,
    cluster: &str,
    names: &[(Kind, String)],
    report: &dyn Fn(&str),
) -> Result<usize> {
    let opts = Options::default();
    let mut deleted = 0;
    for kind in Kind::DELETE_ORDER {
        let existing =
            apply::retry(&opts, "listing resources", || cloud.inventory(cluster)).await?;
        let doomed: Vec<_> = existing
            .iter()
            .filter(|e| e.kind == kind && names.iter().any(|(k, n)| *k == e.kind && *n == e.name))
            .collect();
        for e in &doomed {
            apply::retry(&opts, &format!("deleting {} {}", e.kind, e.name), || {
                cloud.delete(e.kind, &e.id)
            })
            .await?;
            report(&format!("deleted {} {}", e.kind, e.name));
            deleted += 1;
        }
        if kind == Kind::Server && !doomed.is_empty() {
            // Ports stay attached until Nova has really deleted the servers.
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(300);
            loop {
                let left = cloud.inventory(cluster).await?;
                if !left.iter().any(|e| doomed.iter().any(|d| d.id == e.id)) {
                    break;
                }
                if tokio::time::Instant::now() > deadline {
                    bail!("servers are still being deleted after 5 minutes");
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    }
    Ok(deleted)
}

pub fn destroy(args: &CloudArgs, yes: bool) -> Result<()> {
    let spec = load_spec(args.file)?;
    let state_dir = state_dir_for(args.file, args.state_dir);
    let _lock = StateLock::acquire(&state_dir, "destroy", args.wait_lock)?;
    // Only the names of what render would create are needed: nothing is saved (and a
    // floating IP's address changes no name).
    let (_, docs) = render_in_memory_with(&spec, &state_dir, &reading_options(&spec, &state_dir)?)?;
    let state = StateFile::new(&state_dir);
    let mut names: Vec<(Kind, String)> = desired::resources(&spec, &docs)?
        .into_iter()
        .map(|r| (r.kind, r.name))
        .collect();
    if let Some(s) = state.load()? {
        names.extend(s.resources.into_iter().map(|(name, r)| (r.kind, name)));
    }
    if !yes {
        if !std::io::stdin().is_terminal() {
            bail!("destroy needs confirmation: pass --yes");
        }
        print!("Delete every resource of cluster {} from the cloud? Type the cluster name to confirm: ", spec.name);
        std::io::stdout().flush()?;
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        if line.trim() != spec.name {
            bail!("not confirmed; nothing deleted");
        }
    }
    runtime()?.block_on(async {
        let cloud = connect(args).await?;
        let n = destroy_with(&cloud, &spec.name, &names, &|l| eprintln!("{l}")).await?;
        state.save(&Default::default())?;
        println!("deleted {n} resource(s) of cluster {}", spec.name);
        Ok(())
    })
}

/// Secrets in a diff are shown by their hash, never their bytes: private keys, the
/// bootstrap token, TempURL signatures, the encryption key and passwords (a changed one
/// still shows as changed).
fn redact_secrets(text: &str) -> String {
    let text = redact_keys(text);
    let text = redact_secret_values(&text);
    let text = crate::render::map_join_tokens(&text, |t| stand_in("bootstrap token", t));
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(at) = rest.find("temp_url_sig=") {
        let (before, sig) = rest.split_at(at + "temp_url_sig=".len());
        let len = sig.bytes().take_while(u8::is_ascii_hexdigit).count();
        out.push_str(before);
        out.push_str(&stand_in("signature", &sig[..len]));
        rest = &sig[len..];
    }
    out.push_str(rest);
    out
}

fn stand_in(what: &str, secret: &str) -> String {
    use sha2::{Digest, Sha256};
    let hash = crate::pki::hex(&Sha256::digest(secret.as_bytes()));
    format!("<{what}, sha256 {}>", &hash[..16])
}

/// The values of YAML keys that hold secrets in paasgen's documents: the encryption
/// key (`secret:`) and passwords (`...password:`), quoted as render quotes them.
fn redact_secret_values(text: &str) -> String {
    text.split_inclusive('\n')
        .map(|line| {
            let Some((key, value)) = line.split_once(": \"") else {
                return line.to_string();
            };
            let name = key.trim_start().trim_start_matches("- ");
            let secret = name == "secret" || name.ends_with("password");
            match value.trim_end().strip_suffix('"') {
                Some(quoted) if secret && !quoted.contains('"') => {
                    format!("{key}: \"{}\"\n", stand_in(name, quoted))
                }
                _ => line.to_string(),
            }
        })
        .collect()
}

/// Private keys in a diff are shown by their hash, never their bytes.
fn redact_keys(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_key: Option<String> = None;
    for line in text.split_inclusive('\n') {
        match &mut in_key {
            None if line.contains("-----BEGIN") && line.contains("PRIVATE KEY-----") => {
                in_key = Some(String::new())
            }
            None => out.push_str(line),
            Some(buf) if line.contains("PRIVATE KEY-----") => {
                use sha2::{Digest, Sha256};
                let indent: String = line.chars().take_while(|c| c.is_whitespace()).collect();
                let hash = crate::pki::hex(&Sha256::digest(buf.as_bytes()));
                out.push_str(&format!("{indent}<private key, sha256 {}>\n", &hash[..16]));
                in_key = None;
            }
            Some(buf) => buf.push_str(line),
        }
    }
    out
}

/// Unified diff of each node's `old` document against what render gives now; a node
/// without one is listed as `missing`. Private keys show only as their hash.
pub fn diff_against(
    docs: &[NodeDocument],
    old: impl Fn(&str) -> Result<Option<String>>,
    old_label: &str,
    missing: &str,
) -> Result<String> {
    let mut out = String::new();
    for doc in docs {
        let Some(before) = old(&doc.name)? else {
            out.push_str(&format!("{}: {missing}\n", doc.name));
            continue;
        };
        // A fresh join token alone is no change (each join gets its own).
        if crate::render::config_sha256(&before) == crate::render::config_sha256(&doc.user_data) {
            continue;
        }
        let (before, now) = (redact_secrets(&before), redact_secrets(&doc.user_data));
        let diff = similar::TextDiff::from_lines(&before, &now);
        out.push_str(
            &diff
                .unified_diff()
                .context_radius(3)
                .header(
                    &format!("{old_label}/{}.yaml", doc.name),
                    &format!("rendered/{}.yaml", doc.name),
                )
                .to_string(),
        );
    }
    Ok(out)
}

/// Each node's launched user-data against what render gives now.
pub fn diff_documents(state: &StateFile, docs: &[NodeDocument]) -> Result<String> {
    diff_against(
        docs,
        |n| state.launched_user_data(n),
        "launched",
        "not launched yet",
    )
}

/// Each node's document in `out` (the last render) against what render gives now.
pub fn diff_rendered(out: &std::path::Path, docs: &[NodeDocument]) -> Result<String> {
    let read = |node: &str| -> Result<Option<String>> {
        let path = out.join(format!("{node}.yaml"));
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(anyhow::Error::new(e).context(format!("reading {}", path.display()))),
        }
    };
    diff_against(docs, read, "out", "not rendered yet")
}

pub fn diff(args: &CloudArgs) -> Result<()> {
    let (_, pki, docs, state_dir) = prepare(args)?;
    note_unsaved(&pki);
    let state = StateFile::new(&state_dir);
    // Before any launch, the last render (out/) is what a change is reviewed against.
    let launched_any = docs
        .iter()
        .any(|d| state.launched_user_data_path(&d.name).exists());
    let (text, same) = if launched_any {
        let text = diff_documents(&state, &docs)?;
        (text, "every node runs the user-data render gives now")
    } else {
        println!(
            "nothing launched yet: comparing with the last render in {}",
            args.out.display()
        );
        let text = diff_rendered(args.out, &docs)?;
        (text, "out/ holds what render gives now")
    };
    if text.is_empty() {
        println!("no differences: {same}");
    } else {
        print!("{text}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::redact_secrets;

    #[test]
    fn tokens_and_signatures_are_shown_by_their_hash() {
        let text = "token: \"abcdef.0123456789abcdef\"\nUPLOAD_QUERY=temp_url_sig=00ff12ab&temp_url_expires=1\n";
        let shown = redact_secrets(text);
        assert!(!shown.contains("abcdef.0123456789abcdef"), "{shown}");
        assert!(!shown.contains("00ff12ab"), "{shown}");
        assert!(
            shown.contains("token: \"<bootstrap token, sha256 "),
            "{shown}"
        );
        assert!(
            shown.contains("temp_url_sig=<signature, sha256 "),
            "{shown}"
        );
        assert!(shown.contains("&temp_url_expires=1"), "{shown}");
        let text = "  secret: \"E+SUBZ=\"\n  root-password: \"lPL3kO4k\"\n  name: \"x\"\n";
        let shown = redact_secrets(text);
        assert!(
            !shown.contains("E+SUBZ=") && !shown.contains("lPL3kO4k"),
            "{shown}"
        );
        assert!(
            shown.contains("  root-password: \"<root-password, sha256 "),
            "{shown}"
        );
        assert!(shown.ends_with("  name: \"x\"\n"), "{shown}");
        // Words that only look alike, and other text, pass unchanged.
        for plain in [
            "xabcdef.0123456789abcdef",
            "abcdef.0123456789abcdefg",
            "ABCDEF.0123456789ABCDEF",
            "é ünïcode",
        ] {
            assert_eq!(redact_secrets(plain), plain);
        }
    }
}
