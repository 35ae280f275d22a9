//! Credentials the OpenStack way: `clouds.yaml` (OS_CLIENT_CONFIG_FILE, ./,
//! ~/.config/openstack/, /etc/openstack/) selected by --os-cloud / OS_CLOUD, or the
//! OS_* environment. Secrets are never printed.

use anyhow::{anyhow, bail, Context, Result};
use osauth::common::IdOrName;
use osauth::identity::{ApplicationCredential, Password};
use osauth::{InterfaceType, Session};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;

#[derive(Deserialize)]
struct CloudsFile {
    clouds: BTreeMap<String, CloudEntry>,
}

#[derive(Deserialize)]
struct CloudEntry {
    #[serde(default)]
    auth_type: Option<String>,
    auth: AuthEntry,
    #[serde(default)]
    region_name: Option<String>,
    #[serde(default)]
    interface: Option<String>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    auth_url: String,
    username: Option<String>,
    password: Option<String>,
    user_domain_name: Option<String>,
    project_name: Option<String>,
    project_id: Option<String>,
    project_domain_name: Option<String>,
    application_credential_id: Option<String>,
    application_credential_secret: Option<String>,
}

fn clouds_yaml_candidates() -> Vec<PathBuf> {
    let mut paths = Vec::new();
    if let Some(p) = std::env::var_os("OS_CLIENT_CONFIG_FILE") {
        paths.push(PathBuf::from(p));
    }
    paths.push(PathBuf::from("clouds.yaml"));
    if let Some(home) = std::env::var_os("HOME") {
        paths.push(PathBuf::from(home).join(".config/openstack/clouds.yaml"));
    }
    paths.push(PathBuf::from("/etc/openstack/clouds.yaml"));
    paths
}

/// An authenticated session for `cloud` (from clouds.yaml), or from OS_* when no cloud
/// is named.
pub async fn connect(cloud: Option<&str>) -> Result<Session> {
    let name = cloud
        .map(str::to_string)
        .or_else(|| std::env::var("OS_CLOUD").ok());
    let Some(name) = name else {
        return Session::from_env()
            .await
            .map_err(|e| anyhow!("authenticating from the OS_* environment: {e}"));
    };
    let path = clouds_yaml_candidates()
        .into_iter()
        .find(|p| p.is_file())
        .ok_or_else(|| anyhow!("no clouds.yaml found (OS_CLIENT_CONFIG_FILE, ./, ~/.config/openstack/, /etc/openstack/)"))?;
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let file: CloudsFile =
        serde_saphyr::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let entry = file
        .clouds
        .get(&name)
        .ok_or_else(|| anyhow!("cloud `{name}` is not in {}", path.display()))?;
    let a = &entry.auth;
    let mut session = match entry.auth_type.as_deref().unwrap_or("password") {
        "password" | "v3password" => {
            let user = a
                .username
                .clone()
                .ok_or_else(|| anyhow!("{name}: auth.username is missing"))?;
            let password = a
                .password
                .clone()
                .ok_or_else(|| anyhow!("{name}: auth.password is missing"))?;
            let domain = a
                .user_domain_name
                .clone()
                .unwrap_or_else(|| "Default".into());
            let project = match (&a.project_id, &a.project_name) {
                (Some(id), _) => IdOrName::from_id(id.clone()),
                (None, Some(n)) => IdOrName::from_name(n.clone()),
                (None, None) => bail!("{name}: auth.project_name or auth.project_id is needed"),
            };
            let project_domain = IdOrName::from_name(
                a.project_domain_name
                    .clone()
                    .unwrap_or_else(|| "Default".into()),
            );
            let auth = Password::new(&a.auth_url, user, password, domain)
                .map_err(|e| anyhow!("{name}: {e}"))?
                .with_project_scope(project, Some(project_domain));
            Session::new(auth).await
        }
        "v3applicationcredential" => {
            let id = a
                .application_credential_id
                .clone()
                .ok_or_else(|| anyhow!("{name}: application_credential_id is missing"))?;
            let secret = a
                .application_credential_secret
                .clone()
                .ok_or_else(|| anyhow!("{name}: application_credential_secret is missing"))?;
            Session::new(
                ApplicationCredential::new(&a.auth_url, id, secret)
                    .map_err(|e| anyhow!("{name}: {e}"))?,
            )
            .await
        }
        other => {
            bail!("{name}: auth_type {other} is not supported (password, v3applicationcredential)")
        }
    }
    .map_err(|e| anyhow!("authenticating to cloud `{name}`: {e}"))?;
    if let Some(region) = &entry.region_name {
        session.set_region(region.clone());
    }
    if let Some(interface) = &entry.interface {
        let i =
            InterfaceType::from_str(interface).map_err(|e| anyhow!("{name}: interface: {e}"))?;
        session.set_endpoint_interface(i);
    }
    Ok(session)
}
