//! The state dir survives what careless users and crashes do to it: one writer at a
//! time (a second is told who holds the lock, or waits), a render killed at any instant
//! leaves every cert beside its own key, and concurrent renders make one set of CAs.

mod common;

use common::{have, run};
use paasgen::lock::StateLock;
use paasgen::spec;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_paasgen");

/// A dir holding the example spec (and the state and out/ that renders write).
fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cluster.yaml"), spec::EXAMPLE).unwrap();
    dir
}

fn paasgen(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir).args(args);
    cmd
}

/// The example with etcd-2 moved: its server and peer certs are re-issued.
fn move_etcd_2(dir: &Path, to: &str) {
    let text = spec::EXAMPLE.replacen("private_ip: 192.168.0.11", &format!("private_ip: {to}"), 1);
    std::fs::write(dir.join("cluster.yaml"), text).unwrap();
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// Temporaries (dot files other than ours) left in the state dir or out/.
fn strays(dir: &Path) -> Vec<PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect()
}

fn openssl_pubkey(args: &[&str], file: &Path) -> String {
    let (ok, out) = run(Command::new("openssl").args(args).arg(file));
    assert!(ok, "{}: {out}", file.display());
    out
}

/// Checks with openssl that every cert in the state dir has its own key beside it and
/// verifies against its CA, and that every document embeds the stored etcd CA.
fn assert_pki_sound(project: &Path) {
    let pki = project.join(".paasgen/pki");
    let mut pairs = 0;
    for crt in files_under(&pki)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "crt"))
    {
        let key = crt.with_extension("key");
        let cert_pub = openssl_pubkey(&["x509", "-noout", "-pubkey", "-in"], &crt);
        let key_pub = openssl_pubkey(&["pkey", "-pubout", "-in"], &key);
        assert_eq!(cert_pub, key_pub, "{} and its key differ", crt.display());
        let rel = crt
            .strip_prefix(&pki)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let ca = if rel.starts_with("etcd/") || rel == "apiserver-etcd-client.crt" {
            pki.join("etcd/ca.crt")
        } else if rel == "admin.crt" {
            pki.join("ca.crt")
        } else {
            crt.clone()
        };
        let (ok, out) = run(Command::new("openssl")
            .args(["verify", "-CAfile"])
            .arg(&ca)
            .arg(&crt));
        assert!(ok, "{rel}: {out}");
        pairs += 1;
    }
    assert_eq!(pairs, 13, "3 CAs, 6 etcd member certs and 4 clients");
    let etcd_ca = std::fs::read_to_string(pki.join("etcd/ca.crt")).unwrap();
    let body = etcd_ca.lines().nth(1).unwrap();
    for doc in ["etcd-1.yaml", "master-1.yaml"] {
        let text = std::fs::read_to_string(project.join("out").join(doc)).unwrap();
        assert!(text.contains(body), "{doc} embeds another etcd CA");
    }
}

#[test]
fn a_second_writer_is_told_who_holds_the_lock() {
    let dir = project();
    let state = dir.path().join(".paasgen");
    let held = StateLock::acquire(&state, "launch", false).unwrap();
    let (ok, out) = run(&mut paasgen(dir.path(), &["render"]));
    assert!(!ok, "{out}");
    let me = format!("locked by pid {} (paasgen launch) on ", std::process::id());
    assert!(out.contains(&me) && out.contains(" since 20"), "{out}");
    assert!(out.contains("--wait-lock"), "{out}");
    assert!(
        !dir.path().join("out").exists(),
        "a refused writer wrote out/"
    );
    assert!(
        !state.join("pki").exists(),
        "a refused writer wrote the PKI"
    );
    // Read-only verbs take no lock.
    let (ok, out) = run(&mut paasgen(dir.path(), &["validate"]));
    assert!(ok, "{out}");
    drop(held);
}

#[test]
fn a_lock_that_is_a_symlink_is_refused_and_its_target_untouched() {
    let dir = project();
    let state = dir.path().join(".paasgen");
    std::fs::create_dir_all(&state).unwrap();
    let victim = dir.path().join("precious.txt");
    std::fs::write(&victim, "keep me\n").unwrap();
    std::os::unix::fs::symlink(&victim, state.join("lock")).unwrap();
    let (ok, out) = run(&mut paasgen(dir.path(), &["render"]));
    assert!(!ok, "{out}");
    assert!(out.contains("is a symbolic link"), "{out}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me\n");
    assert!(
        !state.join("pki").exists(),
        "a refused writer wrote the PKI"
    );
}

#[test]
fn wait_lock_waits_for_the_holder() {
    let dir = project();
    let held = StateLock::acquire(&dir.path().join(".paasgen"), "render", false).unwrap();
    let mut child = paasgen(dir.path(), &["render", "--wait-lock"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    assert!(child.try_wait().unwrap().is_none(), "did not wait");
    assert!(!dir.path().join("out").exists());
    drop(held);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("waiting for the lock"), "{stderr}");
    assert!(dir.path().join("out/manifest.json").exists());
}

#[test]
fn concurrent_renders_make_one_set_of_cas() {
    if !have("openssl") {
        return;
    }
    // 20 pairs on fresh dirs, then 8 at once on one dir.
    for (runs, rounds) in [(2, 20), (8, 1)] {
        for _ in 0..rounds {
            let dir = project();
            let children: Vec<_> = (0..runs)
                .map(|_| {
                    paasgen(dir.path(), &["render", "--wait-lock"])
                        .stdout(Stdio::null())
                        .stderr(Stdio::piped())
                        .spawn()
                        .unwrap()
                })
                .collect();
            for c in children {
                let out = c.wait_with_output().unwrap();
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            assert_pki_sound(dir.path());
            assert_eq!(strays(dir.path()), Vec::<PathBuf>::new());
        }
    }
}

#[test]
fn concurrent_renders_without_waiting_fail_cleanly_or_succeed() {
    if !have("openssl") {
        return;
    }
    let dir = project();
    let children: Vec<_> = (0..6)
        .map(|_| {
            paasgen(dir.path(), &["render"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut succeeded = 0;
    for c in children {
        let out = c.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            succeeded += 1;
        } else {
            assert!(stderr.contains("is locked by"), "{stderr}");
        }
    }
    assert!(succeeded >= 1);
    assert_pki_sound(dir.path());
}

/// Runs `render` with the crash hook set to `step`: true when it was killed.
fn render_crashing_at(dir: &Path, step: usize) -> bool {
    let out = paasgen(dir, &["render"])
        .env("PAASGEN_CRASH_AFTER", step.to_string())
        .output()
        .unwrap();
    if out.status.success() {
        return false;
    }
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        out.status.signal(),
        Some(6),
        "failed without being killed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    true
}

/// After a killed run: read-only loads (which check every pair) either see a sound PKI
/// or are told a write is unfinished; the next render finishes or rolls back and
/// succeeds; nothing stray is left. `openssl` re-checks every pair when `deep`.
fn assert_recovers(dir: &Path, deep: bool) {
    let spec = spec::load(&dir.join("cluster.yaml")).unwrap().0;
    if let Err(e) = paasgen::pki::Pki::ensure(&dir.join(".paasgen"), &spec) {
        assert!(
            format!("{e:#}").contains("in progress or was interrupted"),
            "{e:#}"
        );
    }
    let (ok, out) = run(&mut paasgen(dir, &["render"]));
    assert!(ok, "the render after a killed one failed: {out}");
    assert_eq!(strays(dir), Vec::<PathBuf>::new());
    paasgen::pki::Pki::ensure(&dir.join(".paasgen"), &spec).unwrap();
    if deep {
        assert_pki_sound(dir);
    }
}

#[test]
fn a_render_killed_at_any_write_leaves_old_or_new_pairs() {
    if !have("openssl") {
        return;
    }
    // The first render (CAs created), then a re-issue (etcd-2 moved): killed at every
    // write step of each in turn until one runs through.
    for reissue in [false, true] {
        let mut step = 1;
        loop {
            let dir = project();
            if reissue {
                let (ok, out) = run(&mut paasgen(dir.path(), &["render"]));
                assert!(ok, "{out}");
                move_etcd_2(dir.path(), "192.168.0.14");
            }
            let killed = render_crashing_at(dir.path(), step);
            assert_recovers(dir.path(), step % 8 == 1 || !killed);
            if !killed {
                break;
            }
            step += 1;
        }
        assert!(
            step > 10,
            "only {step} write steps: the hook is not reached"
        );
    }
}

#[test]
fn renders_killed_at_random_instants_during_a_reissue_never_break_the_state() {
    let dir = project();
    let (ok, out) = run(&mut paasgen(dir.path(), &["render"]));
    assert!(ok, "{out}");
    let started = Instant::now();
    let mut kills = 0;
    for i in 0..100u64 {
        // Alternate etcd-2's address so every run re-issues its certificates.
        move_etcd_2(
            dir.path(),
            if i % 2 == 0 {
                "192.168.0.14"
            } else {
                "192.168.0.11"
            },
        );
        let mut child = paasgen(dir.path(), &["render"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Spread the kills over a render's lifetime (tens of milliseconds).
        std::thread::sleep(Duration::from_micros((i * 7919) % 60_000));
        let _ = child.kill();
        if !child.wait().unwrap().success() {
            kills += 1;
        }
        let spec = spec::load(&dir.path().join("cluster.yaml")).unwrap().0;
        let (ok, out) = run(&mut paasgen(dir.path(), &["render"]));
        assert!(ok, "run {i}: the render after a kill failed: {out}");
        assert_eq!(strays(dir.path()), Vec::<PathBuf>::new(), "run {i}");
        paasgen::pki::Pki::ensure(&dir.path().join(".paasgen"), &spec)
            .unwrap_or_else(|e| panic!("run {i}: {e:#}"));
    }
    assert!(kills > 10, "only {kills} of 100 renders were killed");
    if have("openssl") {
        assert_pki_sound(dir.path());
    }
    eprintln!("100 killed renders in {:?}", started.elapsed());
}
