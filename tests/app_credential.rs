//! `auth_type: v3applicationcredential` against the REAL Keystone of the OpenStack lab
//! (scripts/openstack-lab, 127.0.0.1):
//! 1. the lab's project user (clouds.yaml `lab`, a member) creates an application
//!    credential through Keystone's API, with a secret chosen here;
//! 2. a clouds.yaml of our own holds only its id and secret (no username, no password);
//! 3. a wrong secret: `launch` fails naming the cloud and Keystone, creates nothing and
//!    writes no state; Keystone itself refuses that secret too;
//! 4. `init`, `launch`, `plan` (nothing to create), `destroy --yes` with the credential,
//!    checked through the API with the credential's own token: 10 ACTIVE servers, then
//!    nothing of the cluster left;
//! 5. the credential is deleted at the end, also on failure (a Drop guard), after the
//!    cluster (another guard destroys it if the test failed half-way).
//!
//! Every HTTP request goes to 127.0.0.1.

mod common;
#[path = "common/lab.rs"]
mod labkit;
#[path = "common/swift.rs"]
mod swiftkit;

use labkit::text;
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Stdio};
use swiftkit::{auth_url, curl, keystone_up, random_hex, token_body, OpenStackLab};

const GOOD: &str = "appcred";
const WRONG: &str = "appcred-wrong-secret";

fn cannot_run() -> bool {
    if !common::have("curl") {
        assert!(
            std::env::var_os("CI").is_none(),
            "app_credential needs curl"
        );
        eprintln!("SKIPPED: no curl");
        return true;
    }
    if !keystone_up() && !common::is_root() {
        assert!(
            std::env::var_os("CI").is_none(),
            "app_credential: no OpenStack lab and not root to start it"
        );
        eprintln!("SKIPPED: no OpenStack lab and not root (scripts/openstack-lab start)");
        return true;
    }
    false
}

/// An application credential of the lab's user, deleted (with the user's password token)
/// when dropped, whatever happened.
struct AppCred {
    keystone: String,
    user_token: String,
    user_id: String,
    id: String,
    secret: String,
}
impl AppCred {
    fn url(&self) -> String {
        format!(
            "{}/users/{}/application_credentials/{}",
            self.keystone, self.user_id, self.id
        )
    }
}
impl Drop for AppCred {
    fn drop(&mut self) {
        // No panics here (this may run while unwinding): say what happened.
        let status = Command::new("curl")
            .args(["-sS", "-m", "30", "-o", "/dev/null", "-w", "%{http_code}"])
            .args(["-X", "DELETE", "-H"])
            .arg(format!("X-Auth-Token: {}", self.user_token))
            .arg(self.url())
            .stdin(Stdio::null())
            .output();
        match status {
            Ok(o) => eprintln!(
                "deleted application credential {}: HTTP {}",
                self.id,
                text(&o.stdout)
            ),
            Err(e) => eprintln!("could not delete application credential {}: {e}", self.id),
        }
    }
}

/// A launched cluster: destroyed with the credential when dropped, unless the test did.
struct Cluster<'a> {
    dir: &'a Path,
    clouds: &'a Path,
    destroyed: bool,
}
impl Drop for Cluster<'_> {
    fn drop(&mut self) {
        if !self.destroyed {
            let (ok, out) = paasgen(
                self.dir,
                self.clouds,
                &["destroy", "--yes", "--os-cloud", GOOD],
            );
            eprintln!("cleanup: paasgen destroy: ok={ok}\n{out}");
        }
    }
}

/// paasgen in `dir` with only our clouds.yaml: no other OS_* of the caller's environment.
fn paasgen(dir: &Path, clouds: &Path, args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_paasgen"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("OS_") {
            cmd.env_remove(k);
        }
    }
    let t0 = std::time::Instant::now();
    let r = common::run(
        cmd.current_dir(dir)
            .env("OS_CLIENT_CONFIG_FILE", clouds)
            .stdin(Stdio::null())
            .args(args),
    );
    println!(
        "paasgen {} -> ok={} in {:.1}s",
        args.join(" "),
        r.0,
        t0.elapsed().as_secs_f64()
    );
    r
}

fn post_json(url: &str, token: Option<&str>, body: &Value) -> swiftkit::Resp {
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let mut args = vec![
        "-X".to_string(),
        "POST".into(),
        "-H".into(),
        "Content-Type: application/json".into(),
        "--data-binary".into(),
        body.to_string(),
    ];
    if let Some(t) = token {
        args.extend(["-H".into(), format!("X-Auth-Token: {t}")]);
    }
    args.push(url.into());
    curl(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

fn get_json(url: &str, token: &str) -> (u16, Value) {
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let r = curl(&["-H", &format!("X-Auth-Token: {token}"), url]);
    (
        r.code,
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    )
}

/// Every item of a listing, following the next-page links (the lab's Nova pages at 8).
fn get_all(url: &str, key: &str, token: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut next = Some(url.to_string());
    while let Some(url) = next.take() {
        let (code, v) = get_json(&url, token);
        assert_eq!(code, 200, "GET {url}: {v}");
        items.extend(
            v[key]
                .as_array()
                .unwrap_or_else(|| panic!("{url}: {v}"))
                .clone(),
        );
        next = v[format!("{key}_links")]
            .as_array()
            .into_iter()
            .flatten()
            .find(|l| l["rel"] == "next")
            .and_then(|l| l["href"].as_str())
            .map(str::to_string);
    }
    items
}

/// A token of the application credential: (HTTP status, token, Keystone's answer).
fn app_cred_token(keystone: &str, id: &str, secret: &str) -> (u16, Option<String>, Value) {
    let body = json!({"auth": {"identity": {
        "methods": ["application_credential"],
        "application_credential": {"id": id, "secret": secret}}}});
    let r = post_json(&format!("{keystone}/auth/tokens"), None, &body);
    (
        r.code,
        r.header("X-Subject-Token"),
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    )
}

fn endpoint(catalog: &Value, kind: &str) -> String {
    let url = catalog
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["type"] == kind)
        .and_then(|s| {
            s["endpoints"]
                .as_array()?
                .iter()
                .find(|e| e["interface"] == "public")?["url"]
                .as_str()
        })
        .unwrap_or_else(|| panic!("no public {kind} endpoint in {catalog}"))
        .trim_end_matches('/')
        .to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{kind}: {url}");
    url
}

/// What the credential's token sees of the cluster, by name: kind/name.
fn cluster_resources(catalog: &Value, token: &str, cluster: &str) -> Vec<String> {
    let nova = endpoint(catalog, "compute");
    let neutron = endpoint(catalog, "network");
    let prefix = format!("{cluster}-");
    let mut found = Vec::new();
    for (url, key, inner) in [
        (format!("{nova}/servers"), "servers", None),
        (format!("{nova}/os-keypairs"), "keypairs", Some("keypair")),
        (format!("{nova}/os-server-groups"), "server_groups", None),
        (format!("{neutron}/v2.0/networks"), "networks", None),
        (format!("{neutron}/v2.0/subnets"), "subnets", None),
        (format!("{neutron}/v2.0/ports"), "ports", None),
        (
            format!("{neutron}/v2.0/security-groups"),
            "security_groups",
            None,
        ),
    ] {
        for item in &get_all(&url, key, token) {
            let item = inner.map_or(item, |k| &item[k]);
            let name = item["name"].as_str().unwrap_or("");
            if name.starts_with(&prefix) {
                found.push(format!("{key}/{name}"));
            }
        }
    }
    found
}

fn init_cluster(dir: &Path, clouds: &Path, cluster: &str) {
    let (ok, out) = paasgen(dir, clouds, &["init"]);
    assert!(ok, "init: {out}");
    let path = dir.join("cluster.yaml");
    // A project member's credential launches in floating mode: under the lab's default
    // policies fixed public IPs on the shared provider network are the admin's
    // (tests/openstack_floating.rs shows the refusal).
    let edited =
        paasgen::spec::FLOATING_EXAMPLE.replacen("name: demo\n", &format!("name: {cluster}\n"), 1);
    assert!(edited.contains(&format!("name: {cluster}\n")));
    std::fs::write(&path, edited).unwrap();
    let (ok, out) = paasgen(dir, clouds, &["validate", "-f", "cluster.yaml"]);
    assert!(ok, "validate: {out}");
}

#[test]
fn launch_plan_and_destroy_with_an_application_credential() {
    if cannot_run() {
        return;
    }
    let _openstack = OpenStackLab::ensure();
    let keystone = auth_url();
    let run_id = format!("{}-{}", std::process::id(), random_hex(3));

    // 1. The project user creates an application credential, with our secret.
    let (user_token, v) = token_body();
    let user_id = v["token"]["user"]["id"].as_str().unwrap().to_string();
    let project_id = v["token"]["project"]["id"].as_str().unwrap().to_string();
    let secret = format!("s3cret-{}", random_hex(24));
    let name = format!("paasgen-test-{run_id}");
    let r = post_json(
        &format!("{keystone}/users/{user_id}/application_credentials"),
        Some(&user_token),
        &json!({"application_credential": {
            "name": name, "secret": secret,
            "description": "tests/app_credential.rs, deleted at the end"}}),
    );
    let created: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    assert_eq!(
        r.code, 201,
        "creating the application credential: {created}"
    );
    let cred = AppCred {
        keystone: keystone.clone(),
        user_token: user_token.clone(),
        user_id: user_id.clone(),
        id: created["application_credential"]["id"]
            .as_str()
            .unwrap()
            .to_string(),
        secret: secret.clone(),
    };
    assert_eq!(created["application_credential"]["secret"], secret.as_str());
    assert_eq!(
        created["application_credential"]["project_id"],
        project_id.as_str()
    );
    println!("application credential {name}: {}", cred.id);

    // Keystone takes its secret and refuses another.
    let (code, tok, ans) = app_cred_token(&keystone, &cred.id, &cred.secret);
    assert_eq!(code, 201, "{ans}");
    let tok = tok.expect("X-Subject-Token");
    assert_eq!(ans["token"]["methods"], json!(["application_credential"]));
    assert_eq!(ans["token"]["user"]["id"], user_id.as_str());
    assert_eq!(ans["token"]["project"]["id"], project_id.as_str());
    let catalog = ans["token"]["catalog"].clone();
    let wrong = format!("wrong-{}", random_hex(24));
    let (code, _, ans) = app_cred_token(&keystone, &cred.id, &wrong);
    assert_eq!(code, 401, "Keystone took a wrong secret: {ans}");

    // 2. Our clouds.yaml: the credential only.
    let tmp = tempfile::tempdir().unwrap();
    let clouds = tmp.path().join("clouds.yaml");
    let cloud = |secret: &str| {
        format!(
            "    auth_type: v3applicationcredential\n    auth:\n      auth_url: {keystone}\n      application_credential_id: {}\n      application_credential_secret: {secret}\n    region_name: RegionOne\n    interface: public\n",
            cred.id
        )
    };
    let yaml = format!(
        "clouds:\n  {GOOD}:\n{}  {WRONG}:\n{}",
        cloud(&cred.secret),
        cloud(&wrong)
    );
    std::fs::write(&clouds, &yaml).unwrap();
    for word in ["username", "password", "project", "user_domain"] {
        assert!(!yaml.contains(word), "{word} in {yaml}");
    }

    // 3. A wrong secret: a clear error, nothing created, no state written.
    let bad_cluster = format!("acbad-{run_id}");
    let bad_dir = tmp.path().join("bad");
    std::fs::create_dir(&bad_dir).unwrap();
    init_cluster(&bad_dir, &clouds, &bad_cluster);
    let (ok, out) = paasgen(
        &bad_dir,
        &clouds,
        &["launch", "--cloud", "openstack", "--os-cloud", WRONG],
    );
    println!("wrong secret:\n{out}");
    assert!(!ok, "launch with a wrong secret succeeded: {out}");
    assert!(
        out.contains(&format!("`{WRONG}`")),
        "the cloud is not named: {out}"
    );
    assert!(out.contains("Keystone"), "Keystone is not named: {out}");
    assert!(
        out.contains(&keystone),
        "Keystone's URL is not named: {out}"
    );
    assert!(
        !out.contains(&wrong) && !out.contains(&cred.secret),
        "a secret is printed: {out}"
    );
    let mut left: Vec<_> = std::fs::read_dir(&bad_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        vec!["cluster.yaml".to_string()],
        "a failed launch wrote state"
    );
    let (ok, out) = paasgen(&bad_dir, &clouds, &["plan", "--os-cloud", WRONG]);
    assert!(
        !ok && out.contains(&format!("`{WRONG}`")),
        "plan with a wrong secret: {out}"
    );
    assert_eq!(
        cluster_resources(&catalog, &tok, &bad_cluster),
        Vec::<String>::new()
    );

    // 4. init, launch, plan, destroy with the credential.
    let cluster = format!("appcred-{run_id}");
    let dir = tmp.path().join("good");
    std::fs::create_dir(&dir).unwrap();
    init_cluster(&dir, &clouds, &cluster);
    let mut guard = Cluster {
        dir: &dir,
        clouds: &clouds,
        destroyed: false,
    };
    let (ok, out) = paasgen(
        &dir,
        &clouds,
        &["launch", "--cloud", "openstack", "--os-cloud", GOOD],
    );
    assert!(ok, "launch with the application credential: {out}");
    assert!(!out.contains(&cred.secret), "the secret is printed: {out}");
    let nova = endpoint(&catalog, "compute");
    let servers = get_all(&format!("{nova}/servers/detail"), "servers", &tok);
    let mut ours: Vec<(String, String)> = servers
        .iter()
        .filter_map(|s| {
            let n = s["name"].as_str()?.strip_prefix(&format!("{cluster}-"))?;
            assert_eq!(s["user_id"], user_id.as_str(), "{n}");
            Some((
                n.to_string(),
                s["status"].as_str().unwrap_or("").to_string(),
            ))
        })
        .collect();
    ours.sort();
    let mut want: Vec<(String, String)> = [
        "etcd-1", "etcd-2", "etcd-3", "gw-1", "gw-2", "master-1", "master-2", "master-3",
        "worker-1", "worker-2",
    ]
    .iter()
    .map(|n| (n.to_string(), "ACTIVE".to_string()))
    .collect();
    want.sort();
    assert_eq!(ours, want, "servers of {cluster}");
    let (ok, out) = paasgen(&dir, &clouds, &["plan", "--os-cloud", GOOD]);
    assert!(ok && out.contains("Plan: 0 to create"), "plan: {out}");
    let (ok, out) = paasgen(
        &dir,
        &clouds,
        &["launch", "--cloud", "openstack", "--os-cloud", GOOD],
    );
    assert!(
        ok && out.contains("created 0 resource(s)"),
        "second launch: {out}"
    );

    let (ok, out) = paasgen(&dir, &clouds, &["destroy", "--yes", "--os-cloud", GOOD]);
    assert!(ok, "destroy with the application credential: {out}");
    guard.destroyed = true;
    drop(guard);
    assert_eq!(
        cluster_resources(&catalog, &tok, &cluster),
        Vec::<String>::new(),
        "left after destroy"
    );

    // 5. The credential goes (the guard); Keystone no longer knows it.
    let url = cred.url();
    let id = cred.id.clone();
    drop(cred);
    let (code, v) = get_json(&url, &user_token);
    assert_eq!(code, 404, "application credential {id} still there: {v}");
    let (code, _, ans) = app_cred_token(&keystone, &id, &secret);
    // Keystone (Zed) answers 404 "Could not find Application Credential".
    assert!(
        matches!(code, 401 | 404),
        "a deleted credential authenticates: {code} {ans}"
    );
    // ... and Keystone revoked the tokens it issued (services may cache a token a while).
    let r = curl(&[
        "-H",
        &format!("X-Auth-Token: {user_token}"),
        "-H",
        &format!("X-Subject-Token: {tok}"),
        &format!("{keystone}/auth/tokens"),
    ]);
    assert_eq!(
        r.code,
        404,
        "a token of the deleted credential is valid: {}",
        text(&r.body)
    );
}
