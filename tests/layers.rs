//! The layers of src/ stay apart: only main.rs and the CLI verbs (src/commands) name
//! `commands`, no verb imports another verb (shared code lives in `day2` or the pipeline
//! modules), and clap stays in main.rs (the library knows nothing of the command line).
//! The lab's logic is Rust (src/cloud/lab); `scripts/lab` only drives host tools.

use std::path::{Path, PathBuf};

/// The verb modules of src/commands.
const VERBS: [&str; 8] = [
    "backup", "cloud", "image", "lab", "rebuild", "recover", "status", "upgrade",
];

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable src/") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// The verb `line` names right after `prefix`: directly (`super::cloud::runtime`) or in
/// a group (`super::{load_spec, cloud}`).
fn names_verb(line: &str, prefix: &str) -> Option<&'static str> {
    let mut rest = line;
    while let Some(at) = rest.find(prefix) {
        let after = &rest[at + prefix.len()..];
        let items: Vec<&str> = match after.strip_prefix('{') {
            Some(group) => group
                .split('}')
                .next()
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .collect(),
            None => vec![after],
        };
        for item in items {
            let name: String = item
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if let Some(verb) = VERBS.iter().find(|v| **v == name) {
                return Some(verb);
            }
        }
        rest = after;
    }
    None
}

/// Every breach of the layering in the file at `relative` (to src/), with `text` its
/// contents: "path:line: what".
fn breaches(relative: &str, text: &str) -> Vec<String> {
    let in_main = relative == "main.rs";
    let in_commands = relative.starts_with("commands/");
    let mut found = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let at = format!("src/{relative}:{}", i + 1);
        if !in_main && !in_commands && line.contains("commands::") {
            found.push(format!(
                "{at}: names `commands::` outside main.rs and src/commands: {}",
                line.trim()
            ));
        }
        if in_commands {
            for prefix in ["super::", "crate::commands::"] {
                if let Some(verb) = names_verb(line, prefix) {
                    found.push(format!(
                        "{at}: a verb imports verb `{verb}` (move what is shared to day2): {}",
                        line.trim()
                    ));
                }
            }
        }
        if !in_main && line.contains("clap") {
            found.push(format!(
                "{at}: mentions clap outside main.rs: {}",
                line.trim()
            ));
        }
    }
    found
}

#[test]
fn the_layers_of_src_stay_apart() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    assert!(
        files.len() > 20,
        "found only {} files under {}",
        files.len(),
        src.display()
    );
    let mut found = Vec::new();
    for path in &files {
        let relative = path
            .strip_prefix(&src)
            .expect("under src/")
            .to_string_lossy()
            .replace('\\', "/");
        let text = std::fs::read_to_string(path).expect("readable source");
        found.extend(breaches(&relative, &text));
    }
    assert!(found.is_empty(), "layering broken:\n{}", found.join("\n"));
}

#[test]
fn each_kind_of_breach_is_caught() {
    let caught = |relative: &str, text: &str| !breaches(relative, text).is_empty();
    assert!(caught("day2/setup.rs", "/// see `commands::etcd_via`"));
    assert!(caught("etcd_admin.rs", "use crate::commands::cloud;"));
    assert!(caught(
        "commands/rebuild.rs",
        "use super::cloud::CloudArgs;"
    ));
    assert!(caught(
        "commands/status.rs",
        "use super::{copies, backup, etcd_via};"
    ));
    assert!(caught(
        "commands/recover.rs",
        "let rt = crate::commands::cloud::runtime()?;"
    ));
    assert!(caught("commands/cloud.rs", "#[derive(clap::ValueEnum)]"));
    assert!(caught("lib.rs", "use clap::Parser;"));
    // What is allowed.
    assert!(!caught(
        "main.rs",
        "use clap::Parser; use paasgen::commands::cloud;"
    ));
    assert!(!caught(
        "commands/mod.rs",
        "let text = cloud::diff_rendered(out, &docs)?;"
    ));
    assert!(!caught(
        "commands/status.rs",
        "ok: days >= super::EXPIRY_WARNING_DAYS,"
    ));
    assert!(!caught(
        "commands/cloud.rs",
        "    use super::redact_secrets;"
    ));
    assert!(!caught(
        "commands/backup.rs",
        "use crate::day2::{backup, copies};"
    ));
}

/// Most lines `scripts/lab` may have: what is left of it is plumbing.
const LAB_SCRIPT_LINES: usize = 300;

/// What keeps `scripts/lab` (text `text`) from being host plumbing only: too long, a
/// function without a comment saying what it takes and does, or a decision made from
/// the render or the lab's state (files the Rust side reads and writes).
fn lab_script_breaches(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let lines = text.lines().count();
    if lines >= LAB_SCRIPT_LINES {
        found.push(format!(
            "scripts/lab has {lines} lines (under {LAB_SCRIPT_LINES}: its logic belongs in src/cloud/lab)"
        ));
    }
    for (i, line) in text.lines().enumerate() {
        let at = format!("scripts/lab:{}", i + 1);
        let defines = line.split_once("() {").is_some_and(|(name, _)| {
            !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_')
        });
        if defines && !line.contains("() { #") {
            found.push(format!(
                "{at}: function without a comment of what it takes and does: {line}"
            ));
        }
        for state in ["manifest.json", "nodes.txt", "lab.json", "python3 - "] {
            if line.contains(state) {
                found.push(format!(
                    "{at}: reads `{state}`: the render and the lab's state are the Rust side's: {}",
                    line.trim()
                ));
            }
        }
    }
    found
}

#[test]
fn scripts_lab_is_host_plumbing_only() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/lab");
    let text = std::fs::read_to_string(&path).expect("scripts/lab");
    let found = lab_script_breaches(&text);
    assert!(found.is_empty(), "scripts/lab:\n{}", found.join("\n"));
}

#[test]
fn each_kind_of_lab_script_breach_is_caught() {
    let ok = "fabric() { # GW/PREFIX: the bridges\n  ip link\n}\n";
    assert!(lab_script_breaches(ok).is_empty());
    assert!(!lab_script_breaches(&ok.repeat(LAB_SCRIPT_LINES / 3 + 1)).is_empty());
    assert!(!lab_script_breaches("fabric() {\n  ip link\n}\n").is_empty());
    assert!(
        !lab_script_breaches("x() { # X\n  awk '{print $1}' \"$LAB/nodes.txt\"\n}\n").is_empty()
    );
    assert!(
        !lab_script_breaches("x() { # X\n  python3 - \"$out/manifest.json\" <<EOF\n}\n").is_empty()
    );
}
