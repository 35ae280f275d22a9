//! Credentials the OpenStack way: `clouds.yaml` (OS_CLIENT_CONFIG_FILE, ./,
//! ~/.config/openstack/, /etc/openstack/) selected by --os-cloud / OS_CLOUD, or the
//! OS_* environment. Secrets are never printed. Every call has connect and read timeouts.
//! A cloud entry's `<service_type>_endpoint_override` keys (openstacksdk's) replace the
//! catalog's endpoint of that service.

use anyhow::{anyhow, bail, Context, Result};
use osauth::common::IdOrName;
use osauth::identity::{ApplicationCredential, Password};
use osauth::{InterfaceType, Session};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

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
    /// Every other key: ignored (as before), except `<service_type>_endpoint_override`.
    #[serde(flatten)]
    other: BTreeMap<String, OtherValue>,
}

/// The value of a key paasgen does not know: kept only when it is a string.
#[derive(Deserialize)]
#[serde(untagged)]
enum OtherValue {
    Text(String),
    #[allow(dead_code)]
    Ignored(serde::de::IgnoredAny),
}

impl CloudEntry {
    /// openstacksdk's `<service_type>_endpoint_override` keys, by catalog type
    /// (`object_store_endpoint_override` -> `object-store`).
    fn endpoint_overrides(&self, name: &str) -> Result<BTreeMap<String, reqwest::Url>> {
        let mut out = BTreeMap::new();
        for (key, value) in &self.other {
            let Some(service) = key.strip_suffix("_endpoint_override") else {
                continue;
            };
            let OtherValue::Text(text) = value else {
                bail!("{name}: {key} must be a URL string");
            };
            let url = reqwest::Url::parse(text)
                .ok()
                .filter(|u| !u.cannot_be_a_base() && u.has_host())
                .ok_or_else(|| {
                    anyhow!(
                        "{name}: {key}: `{}` is not an http(s) URL",
                        crate::spec::shown(text, 64)
                    )
                })?;
            if service.is_empty() {
                bail!("{name}: {key} names no service");
            }
            out.insert(service.replace('_', "-"), url);
        }
        Ok(out)
    }
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

/// The cloud entry the OS_* environment describes, as clouds.yaml would.
fn entry_from_env() -> Result<CloudEntry> {
    let var = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
    let auth_url = var("OS_AUTH_URL").ok_or_else(|| {
        anyhow!("no cloud credentials: pass --os-cloud, set OS_CLOUD, or set OS_AUTH_URL and the other OS_* variables")
    })?;
    Ok(CloudEntry {
        auth_type: var("OS_AUTH_TYPE"),
        auth: AuthEntry {
            auth_url,
            username: var("OS_USERNAME"),
            password: var("OS_PASSWORD"),
            user_domain_name: var("OS_USER_DOMAIN_NAME"),
            project_name: var("OS_PROJECT_NAME"),
            project_id: var("OS_PROJECT_ID"),
            project_domain_name: var("OS_PROJECT_DOMAIN_NAME"),
            application_credential_id: var("OS_APPLICATION_CREDENTIAL_ID"),
            application_credential_secret: var("OS_APPLICATION_CREDENTIAL_SECRET"),
        },
        region_name: var("OS_REGION_NAME"),
        interface: var("OS_INTERFACE"),
        other: BTreeMap::new(),
    })
}

/// The cloud entry named by `cloud` (or $OS_CLOUD) in clouds.yaml, else the OS_* one.
fn entry(cloud: Option<&str>) -> Result<(String, CloudEntry)> {
    let name = cloud
        .map(str::to_string)
        .or_else(|| std::env::var("OS_CLOUD").ok());
    let Some(name) = name else {
        return Ok(("from the OS_* environment".into(), entry_from_env()?));
    };
    let path = clouds_yaml_candidates()
        .into_iter()
        .find(|p| p.is_file())
        .ok_or_else(|| anyhow!("no clouds.yaml found (OS_CLIENT_CONFIG_FILE, ./, ~/.config/openstack/, /etc/openstack/)"))?;
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut file: CloudsFile =
        serde_saphyr::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let entry = file.clouds.remove(&name).ok_or_else(|| {
        anyhow!(
            "cloud `{}` is not in {}",
            crate::spec::shown(&name, 64),
            path.display()
        )
    })?;
    Ok((format!("`{name}`"), entry))
}

/// The HTTP client of every call: connect and read timeouts, and a total per call, so a
/// cloud that accepts connections and never answers cannot hang paasgen.
fn http_client(timeout: Duration) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(timeout)
        .read_timeout(timeout)
        .timeout(timeout * 4)
        .build()
        .context("building the HTTP client")
}

/// Why a request did not get an answer, in words (reqwest keeps the cause in its sources).
pub fn why_no_answer(e: &reqwest::Error, timeout: Duration) -> String {
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return "connection refused".into(),
                std::io::ErrorKind::TimedOut if e.is_connect() => {
                    return format!("no connection within {}s", timeout.as_secs())
                }
                _ => {}
            }
        }
        source = s.source();
    }
    if e.is_timeout() && e.is_connect() {
        format!("no connection within {}s", timeout.as_secs())
    } else if e.is_timeout() {
        format!("connected, but no answer within {}s", timeout.as_secs())
    } else if e.is_connect() {
        let mut text = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            text = format!("{text}: {s}");
            source = s.source();
        }
        format!("cannot connect: {text}")
    } else {
        e.to_string()
    }
}

/// One unauthenticated GET of Keystone before authenticating: osauth's errors lose the
/// cause, and "connection refused" or "no answer in 30s" is what the user needs to know.
async fn reach(client: &reqwest::Client, auth_url: &str, timeout: Duration) -> Result<()> {
    match client.get(auth_url).send().await {
        Ok(_) => Ok(()),
        Err(e) => bail!("Keystone at {auth_url}: {}", why_no_answer(&e, timeout)),
    }
}

/// An authenticated session for `cloud` (from clouds.yaml), or from OS_* when no cloud
/// is named. Every HTTP call of the session uses `timeout`.
/// Where Keystone answers about tokens (as osauth derives it from auth_url).
pub fn token_endpoint(auth_url: &str) -> String {
    let base = auth_url.trim_end_matches('/');
    match base.ends_with("/v3") {
        true => format!("{base}/auth/tokens"),
        false => format!("{base}/v3/auth/tokens"),
    }
}

/// A session of the cloud.
pub async fn connect(cloud: Option<&str>, timeout: Duration) -> Result<Session> {
    Ok(connect_keystone(cloud, timeout).await?.0)
}

/// A session of the cloud, and its Keystone token endpoint.
pub async fn connect_keystone(cloud: Option<&str>, timeout: Duration) -> Result<(Session, String)> {
    let (name, entry) = entry(cloud)?;
    let overrides = entry.endpoint_overrides(&name)?;
    let client = http_client(timeout)?;
    let a = &entry.auth;
    reach(&client, &a.auth_url, timeout).await?;
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
            Session::new_with_client(client, auth).await
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
            Session::new_with_client(
                client,
                ApplicationCredential::new(&a.auth_url, id, secret)
                    .map_err(|e| anyhow!("{name}: {e}"))?,
            )
            .await
        }
        other => {
            bail!("{name}: auth_type {other} is not supported (password, v3applicationcredential)")
        }
    }
    .map_err(|e| {
        // Who was refused, never with what: the id or user name, no secret.
        let who = match (&a.application_credential_id, &a.username) {
            (Some(id), _) if entry.auth_type.as_deref() == Some("v3applicationcredential") => {
                format!("application credential {}", crate::spec::shown(id, 64))
            }
            (_, Some(user)) => format!("user {}", crate::spec::shown(user, 64)),
            _ => "the credentials".into(),
        };
        anyhow!(
            "authenticating to cloud {name}: Keystone at {} did not accept {who}: {e}",
            a.auth_url
        )
    })?;
    if let Some(region) = &entry.region_name {
        session.set_region(region.clone());
    }
    if let Some(interface) = &entry.interface {
        let i =
            InterfaceType::from_str(interface).map_err(|e| anyhow!("{name}: interface: {e}"))?;
        session.set_endpoint_interface(i);
    }
    // Keystone itself is reached at auth_url; `identity_endpoint_override` is honoured too.
    if !overrides.is_empty() {
        session.endpoint_overrides_mut().extend(overrides);
    }
    Ok((session, token_endpoint(&a.auth_url)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<CloudEntry> {
        let mut file: CloudsFile = serde_saphyr::from_str(yaml)?;
        Ok(file.clouds.remove("c").expect("cloud c"))
    }

    const BASE: &str = "clouds:\n  c:\n    auth:\n      auth_url: http://127.0.0.1:5000/v3\n";

    #[test]
    fn endpoint_overrides_are_read_by_service_type() {
        let e = parse(&format!(
            "{BASE}    identity_api_version: 3\n    some_list: [1, 2]\n    some_map: {{a: 1}}\n    compute_endpoint_override: http://127.0.0.1:18774/v2.1\n    network_endpoint_override: http://127.0.0.1:19696\n    object_store_endpoint_override: https://swift.example/v1/AUTH_x\n    region_name: R\n"
        ))
        .unwrap();
        assert_eq!(e.region_name.as_deref(), Some("R"));
        let o = e.endpoint_overrides("`c`").unwrap();
        let got: Vec<(&str, &str)> = o.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            got,
            vec![
                ("compute", "http://127.0.0.1:18774/v2.1"),
                ("network", "http://127.0.0.1:19696/"),
                ("object-store", "https://swift.example/v1/AUTH_x"),
            ]
        );
    }

    #[test]
    fn unknown_keys_stay_ignored_and_no_override_is_none() {
        let e = parse(&format!(
            "{BASE}    verify: false\n    whatever: {{x: [1]}}\n"
        ))
        .unwrap();
        assert!(e.endpoint_overrides("`c`").unwrap().is_empty());
    }

    #[test]
    fn a_bad_override_is_an_error_naming_the_key() {
        for bad in [
            "image_endpoint_override: 42",
            "image_endpoint_override: not a url",
        ] {
            let e = parse(&format!("{BASE}    {bad}\n")).unwrap();
            let err = e.endpoint_overrides("`c`").unwrap_err().to_string();
            assert!(err.contains("image_endpoint_override"), "{err}");
        }
    }
}
