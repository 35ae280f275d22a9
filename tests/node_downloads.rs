//! The nodes' download helper (`fetch` in /usr/local/lib/paasgen/functions.sh), as rendered,
//! run by /bin/sh (dash, as on the nodes) and curl against a server on loopback that counts
//! what it is asked: a missing file fails at once, a server error is retried, a wrong
//! checksum is refused.

mod common;

use common::{example_spec, file, files_of, render_in, run};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

const BODY: &[u8] = b"a release tarball\n";

/// Serves on 127.0.0.1: /ok (200), /missing (404), /flaky (503 once, then 200). Returns
/// its port and the count of requests per path.
fn serve() -> (u16, Arc<Mutex<HashMap<String, usize>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let asked: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let counts = asked.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = String::new();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            // The rest of the head, so curl sees its request read before the answer.
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let path = request.split(' ').nth(1).unwrap_or("").to_string();
            let seen = {
                let mut asked = counts.lock().unwrap();
                let n = asked.entry(path.clone()).or_insert(0);
                *n += 1;
                *n
            };
            let (status, body): (&str, &[u8]) = match (path.as_str(), seen) {
                ("/ok", _) | ("/flaky", 2..) => ("200 OK", BODY),
                ("/flaky", _) => ("503 Service Unavailable", b"busy\n"),
                _ => ("404 Not Found", b"no such file\n"),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(body);
        }
    });
    (port, asked)
}

/// `fetch URL SHA256 DEST` with the rendered functions: (succeeded, output).
fn fetch(functions: &Path, url: &str, sha256: &str, dest: &Path) -> (bool, String) {
    run(Command::new("/bin/sh")
        .args(["-c", ". \"$0\" && fetch \"$1\" \"$2\" \"$3\""])
        .arg(functions)
        .args([url, sha256])
        .arg(dest)
        // Bounds a wrong answer (a retried 404) at one minute instead of half an hour.
        .env("PAASGEN_RETRY_FOR", "60"))
}

#[test]
fn fetch_fails_at_once_on_a_missing_file_and_retries_a_server_error() {
    let dir = tempfile::tempdir().unwrap();
    let (_, docs) = render_in(&dir.path().join("state"), &example_spec());
    let master = docs.iter().find(|d| d.name == "master-1").unwrap();
    let functions = dir.path().join("functions.sh");
    let files = files_of(master);
    std::fs::write(
        &functions,
        &file(&files, "/usr/local/lib/paasgen/functions.sh").bytes,
    )
    .unwrap();
    let sum = format!("{:x}", Sha256::digest(BODY));
    let (port, asked) = serve();
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
    let count = |path: &str| asked.lock().unwrap().get(path).copied().unwrap_or(0);

    let dest = dir.path().join("cache/missing.tar.gz");
    let (ok, out) = fetch(&functions, &url("/missing"), &sum, &dest);
    assert!(!ok, "a 404 was taken as a download: {out}");
    assert!(
        out.contains("HTTP 404") && out.contains("failed for good"),
        "{out}"
    );
    assert_eq!(count("/missing"), 1, "a 404 was asked again: {out}");
    assert!(!dest.exists() && !dest.with_extension("gz.part").exists());

    let dest = dir.path().join("cache/flaky.tar.gz");
    let (ok, out) = fetch(&functions, &url("/flaky"), &sum, &dest);
    assert!(ok, "a 503 then 200 did not end in the file: {out}");
    assert!(
        out.contains("HTTP 503") && out.contains("retrying"),
        "{out}"
    );
    assert_eq!(count("/flaky"), 2);
    assert_eq!(std::fs::read(&dest).unwrap(), BODY);

    let dest = dir.path().join("cache/wrong.tar.gz");
    let wrong = format!("{:x}", Sha256::digest(b"another release"));
    let (ok, out) = fetch(&functions, &url("/ok"), &wrong, &dest);
    assert!(!ok && out.contains("checksum mismatch"), "{out}");
    assert!(!dest.exists(), "a file of the wrong checksum was kept");

    // Already there with the right checksum: nothing is asked.
    let dest = dir.path().join("cache/ok.tar.gz");
    assert!(fetch(&functions, &url("/ok"), &sum, &dest).0);
    assert!(fetch(&functions, &url("/ok"), &sum, &dest).0);
    assert_eq!(
        count("/ok"),
        2,
        "one download each for wrong.tar.gz and ok.tar.gz"
    );
}
