//! The OpenStack lab (scripts/openstack-lab) for the tests that launch on it: paasgen
//! run as the non-admin member `lab`, and what the cloud holds read back as the lab's
//! admin through python-openstackclient, not through paasgen's own code.
//! Include it beside `mod common;` (its `run` is used).
#![allow(dead_code)]

use crate::common::run;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The lab's clouds.yaml when the lab answers; None (a skip, outside CI) when it is down.
pub fn clouds_yaml() -> Option<PathBuf> {
    let dir =
        std::env::var("OSLAB_DIR").unwrap_or_else(|_| "/var/tmp/paasgen-openstack-lab".into());
    let path = Path::new(&dir).join("clouds.yaml");
    let up = path.exists()
        && Command::new("curl")
            .args(["-sf", "-o", "/dev/null", "http://127.0.0.1:5000/v3"])
            .status()
            .is_ok_and(|s| s.success());
    if !up {
        assert!(
            std::env::var_os("CI").is_none(),
            "the OpenStack lab is not running: .ci/run starts it"
        );
        eprintln!("SKIPPED: no OpenStack lab (scripts/openstack-lab start)");
        return None;
    }
    Some(path)
}

pub struct Lab {
    pub clouds: PathBuf,
    pub dir: tempfile::TempDir,
    /// The cluster's name: every resource of it is named `<cluster>-...`.
    pub cluster: String,
}

impl Lab {
    /// A spec dir holding `spec` as cluster.yaml, with its name set to `cluster`.
    pub fn new(clouds: PathBuf, spec: &str, cluster: &str) -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let spec = spec.replacen("name: demo", &format!("name: {cluster}"), 1);
        std::fs::write(dir.path().join("cluster.yaml"), spec).unwrap();
        Lab {
            clouds,
            dir,
            cluster: cluster.to_string(),
        }
    }

    pub fn paasgen(&self, args: &[&str]) -> (bool, String) {
        run(Command::new(env!("CARGO_BIN_EXE_paasgen"))
            .current_dir(self.dir.path())
            .env("OS_CLIENT_CONFIG_FILE", &self.clouds)
            .args(args))
    }

    /// `launch --cloud openstack --os-cloud CLOUD --output json EXTRA...`, which must
    /// succeed: its report (node -> server, ports, status), the JSON document of stdout
    /// (spec warnings on stderr may follow it).
    pub fn launch_json(&self, cloud: &str, extra: &[&str]) -> Value {
        let mut args = vec!["launch", "--cloud", "openstack", "--os-cloud", cloud];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--output", "json"]);
        let (ok, out) = self.paasgen(&args);
        assert!(ok, "{out}");
        let start = out
            .find('{')
            .unwrap_or_else(|| panic!("no JSON report: {out}"));
        serde_json::Deserializer::from_str(&out[start..])
            .into_iter()
            .next()
            .expect("a JSON document")
            .unwrap()
    }

    /// `openstack` as the lab's admin, JSON out.
    pub fn admin(&self, args: &[&str]) -> Value {
        let out = Command::new("openstack")
            .env("OS_CLIENT_CONFIG_FILE", &self.clouds)
            .args([
                "--os-cloud",
                "lab-admin",
                "--os-compute-api-version",
                "2.74",
            ])
            .args(args)
            .args(["-f", "json"])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "openstack {args:?}: {stdout}{stderr}");
        // The first JSON document of stdout: warnings go to stderr.
        let mut docs = serde_json::Deserializer::from_str(&stdout).into_iter::<Value>();
        match docs.next() {
            Some(Ok(v)) => v,
            other => panic!("openstack {args:?}: {other:?}: {stdout}"),
        }
    }

    /// The user-data Nova holds for server `id` (read as admin: Nova's default policy
    /// shows it to admins only), decoded.
    pub fn user_data(&self, id: &str) -> Vec<u8> {
        use base64::Engine;
        let server = self.admin(&["server", "show", id]);
        let b64 = server["OS-EXT-SRV-ATTR:user_data"]
            .as_str()
            .unwrap_or_else(|| panic!("{id}: no user_data: {server}"));
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap()
    }

    pub fn admin_do(&self, args: &[&str]) {
        let (ok, out) = run(Command::new("openstack")
            .env("OS_CLIENT_CONFIG_FILE", &self.clouds)
            .args(["--os-cloud", "lab-admin"])
            .args(args));
        assert!(ok, "openstack {args:?}: {out}");
    }

    /// The cluster's entries of an admin listing, by their `field` (Name, Description).
    pub fn named(&self, list: &[&str], field: &str) -> Vec<String> {
        let prefix = format!("{}-", self.cluster);
        self.admin(list)
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r[field].as_str().map(str::to_string))
            .filter(|n| n.starts_with(&prefix))
            .collect()
    }

    pub fn names(&self, list: &[&str]) -> Vec<String> {
        self.named(list, "Name")
    }

    /// Everything of the cluster the cloud still holds, routers and floating IPs too.
    pub fn leftovers(&self) -> Vec<String> {
        let mut all = Vec::new();
        for list in [
            &["server", "list", "--all-projects"][..],
            &["port", "list"],
            &["network", "list"],
            &["subnet", "list"],
            &["router", "list"],
            &["security", "group", "list"],
            &["server", "group", "list", "--all-projects"],
        ] {
            all.extend(self.names(list));
        }
        all.extend(self.named(&["floating", "ip", "list", "--long"], "Description"));
        all
    }

    /// `.paasgen/launch.json`.
    pub fn launched(&self) -> Value {
        serde_json::from_str(
            &std::fs::read_to_string(self.dir.path().join(".paasgen/launch.json")).unwrap(),
        )
        .unwrap()
    }
}
