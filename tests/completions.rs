//! Shell completions and the man page come from the clap definitions: bash completes
//! the verbs and their flags from the generated script, and man formats the page.

use std::io::Write;
use std::process::{Command, Stdio};

/// The standard output of a command that must succeed.
fn stdout_of(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn paasgen(args: &[&str]) -> String {
    stdout_of(Command::new(env!("CARGO_BIN_EXE_paasgen")).args(args))
}

/// What bash's completion function offers for `words`, the last one being completed.
fn bash_completes(words: &[&str]) -> Vec<String> {
    let script = paasgen(&["completions", "bash"]);
    let program = format!(
        "{script}\nCOMP_WORDS=({words}); COMP_CWORD={last}; _paasgen paasgen \"${{COMP_WORDS[-1]}}\" \"${{COMP_WORDS[-2]}}\"; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        words = words.iter().map(|w| format!("'{w}'")).collect::<Vec<_>>().join(" "),
        last = words.len() - 1,
    );
    stdout_of(Command::new("bash").arg("-c").arg(program))
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn bash_completes_verbs_and_their_flags() {
    assert_eq!(
        bash_completes(&["paasgen", "re"]),
        ["render", "rebuild", "recover"]
    );
    assert_eq!(
        bash_completes(&["paasgen", "upgrade", "--ren"]),
        ["--renew-within"]
    );
    assert!(bash_completes(&["paasgen", "completions", ""]).contains(&"fish".to_string()));
}

#[test]
fn zsh_and_fish_scripts_name_every_verb() {
    for shell in ["zsh", "fish"] {
        let script = paasgen(&["completions", shell]);
        for verb in [
            "render", "launch", "rebuild", "recover", "upgrade", "backup", "diff",
        ] {
            assert!(script.contains(verb), "{shell}: {verb}");
        }
    }
}

#[test]
fn man_formats_the_pages() {
    let top = man(&paasgen(&["man"]));
    assert!(
        top.contains("paasgen(1)") && top.contains("paasgen-rebuild(1)"),
        "{top}"
    );
    let rebuild = man(&paasgen(&["man", "rebuild"]));
    assert!(
        rebuild.contains("paasgen-rebuild(1)") && rebuild.contains("--wait"),
        "{rebuild}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_paasgen"))
        .args(["man", "nope"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no verb \"nope\""));
}

/// The page as man(1) formats it.
fn man(page: &str) -> String {
    let mut man = Command::new("man")
        .args(["-l", "-"])
        .env("MANWIDTH", "80")
        .env("MANPAGER", "cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    man.stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let out = man.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}
