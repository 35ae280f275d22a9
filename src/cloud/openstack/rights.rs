//! What the credential may do, asked before anything is created: a launch that fails
//! half-way on a policy refusal leaves resources behind and tells the user little.
//!
//! OpenStack has no "may I?" call, so this reads who the token is (Keystone's own view
//! of it: project and roles) and who owns the provider network, and applies the default
//! Neutron policy: choosing fixed IPs and allowed-address-pairs on a network is for its
//! owner, an admin, or an advanced-service role.

use super::OpenStack;
use crate::spec::Spec;
use anyhow::{anyhow, bail, Context, Result};
use osauth::services::NETWORK;
use reqwest::Method;
use serde_json::Value;

/// Who the token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub project_id: String,
    pub project_name: String,
    pub roles: Vec<String>,
}

impl Credential {
    fn may_override_network_policy(&self) -> bool {
        self.roles.iter().any(|r| r == "admin" || r == "advsvc")
    }
}

/// Reads Keystone's answer to "what is this token" (GET /v3/auth/tokens).
pub fn credential_from_token(body: &Value) -> Result<Credential> {
    let token = &body["token"];
    let project = &token["project"];
    let field = |v: &Value, what: &str| {
        v.as_str().map(str::to_string).ok_or_else(|| {
            anyhow!("Keystone's token has no {what}: is the credential project-scoped?")
        })
    };
    Ok(Credential {
        project_id: field(&project["id"], "project id")?,
        project_name: field(&project["name"], "project name")?,
        roles: token["roles"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|r| r["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
    })
}

/// Why `network.public: fixed` cannot work with `network` (Neutron's view of
/// `openstack.public_network`) for `who`, if it cannot.
pub fn fixed_mode_refusal(spec: &Spec, network: &Value, who: &Credential) -> Option<String> {
    if spec.network.is_floating() {
        return None;
    }
    let owner = network["project_id"].as_str().unwrap_or_default();
    if owner == who.project_id || who.may_override_network_policy() {
        return None;
    }
    let name = network["name"].as_str().unwrap_or_default();
    Some(format!(
        "network.public: fixed needs fixed public IPs and the public VIP's allowed-address-pairs on network `{name}` (openstack.public_network), which belongs to another project: under OpenStack's default policy only its owner or an admin may choose addresses there, and this credential is project `{}` with roles [{}]. Use `network.public: floating` (a router and a floating IP on the VIP port, which project members may create), or ask the cloud's admin for ports with fixed IPs on `{name}` (Neutron policy create_port:fixed_ips:ip_address and create_port:allowed_address_pairs for your project, or a network your project owns). Nothing was created.",
        who.project_name,
        who.roles.join(", ")
    ))
}

/// Why `network.public: floating` cannot work with `network`, if it cannot.
pub fn floating_mode_refusal(spec: &Spec, network: &Value) -> Option<String> {
    if !spec.network.is_floating() || network["router:external"] == true {
        return None;
    }
    let name = network["name"].as_str().unwrap_or_default();
    Some(format!(
        "network.public: floating needs an external network for the router's gateway and the floating IP, and `{name}` (openstack.public_network) is not external: name the cloud's external network (`openstack network list --external`). Nothing was created."
    ))
}

impl OpenStack {
    /// Keystone's view of the token: project, roles, catalog (GET /v3/auth/tokens).
    pub(super) async fn token_info(&self) -> Result<Value> {
        let client = self.session.client().inner();
        // The token goes out as osauth puts it on every request (never printed), once
        // as the caller's and once as the subject.
        let mut request = self
            .session
            .auth_type()
            .authenticate(client, client.get(&self.token_endpoint))
            .await
            .map_err(|e| anyhow!("authenticating: {e}"))?
            .timeout(self.timeout)
            .build()?;
        let token = request
            .headers()
            .get("x-auth-token")
            .cloned()
            .ok_or_else(|| anyhow!("no token to look at"))?;
        request.headers_mut().insert("x-subject-token", token);
        let resp = client
            .execute(request)
            .await
            .map_err(|e| anyhow!("GET {}: {e}", self.token_endpoint))?;
        if !resp.status().is_success() {
            bail!("GET {}: {}", self.token_endpoint, resp.status());
        }
        resp.json().await.context("Keystone's token answer")
    }

    /// Who the token is, as Keystone sees it.
    pub async fn credential(&self) -> Result<Credential> {
        credential_from_token(&self.token_info().await?)
    }

    /// Refuses, before anything is created, a spec this cloud cannot serve or this
    /// credential cannot launch.
    pub async fn check_rights(&self, spec: &Spec) -> Result<()> {
        let refusals = self.capabilities().await?.refusals(spec);
        if !refusals.is_empty() {
            bail!(
                "this cloud cannot build the spec (`paasgen plan -v` lists what it offers):\n  - {}\nNothing was created.",
                refusals.join("\n  - ")
            );
        }
        let Some(os) = &spec.openstack else {
            return Ok(());
        };
        let id = self.lookup("network", &os.public_network).await?;
        let network = self
            .call(NETWORK, Method::GET, &["networks", &id], &[], None)
            .await?;
        let network = &network["network"];
        if let Some(why) = floating_mode_refusal(spec, network) {
            bail!(why);
        }
        let who = self.credential().await?;
        if let Some(why) = fixed_mode_refusal(spec, network, &who) {
            bail!(why);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(text: &str) -> Spec {
        crate::spec::parse("c.yaml", text).unwrap().0
    }

    fn member(project: &str) -> Credential {
        Credential {
            project_id: project.into(),
            project_name: "paasgen".into(),
            roles: vec!["member".into(), "reader".into()],
        }
    }

    #[test]
    fn fixed_mode_on_another_projects_network_is_refused_with_a_way_out() {
        let fixed = spec(crate::spec::EXAMPLE);
        let public = json!({"name": "public", "project_id": "p-admin", "shared": true, "router:external": true});
        let why = fixed_mode_refusal(&fixed, &public, &member("p-paasgen")).unwrap();
        assert!(why.contains("network `public`"), "{why}");
        assert!(why.contains("network.public: floating"), "{why}");
        assert!(why.contains("roles [member, reader]"), "{why}");
        // Its owner, or an admin, may.
        assert_eq!(
            fixed_mode_refusal(&fixed, &public, &member("p-admin")),
            None
        );
        let mut admin = member("p-paasgen");
        admin.roles.push("admin".into());
        assert_eq!(fixed_mode_refusal(&fixed, &public, &admin), None);
        // Floating mode asks no such right.
        let floating = spec(crate::spec::FLOATING_EXAMPLE);
        assert_eq!(
            fixed_mode_refusal(&floating, &public, &member("p-paasgen")),
            None
        );
    }

    #[test]
    fn floating_mode_needs_an_external_network() {
        let floating = spec(crate::spec::FLOATING_EXAMPLE);
        let internal = json!({"name": "private-net", "router:external": false});
        let why = floating_mode_refusal(&floating, &internal).unwrap();
        assert!(why.contains("not external"), "{why}");
        let external = json!({"name": "public", "router:external": true});
        assert_eq!(floating_mode_refusal(&floating, &external), None);
    }

    #[test]
    fn keystone_token_body_gives_project_and_roles() {
        let body = json!({"token": {
            "project": {"id": "abc", "name": "paasgen", "domain": {"id": "default"}},
            "roles": [{"id": "1", "name": "member"}, {"id": "2", "name": "reader"}]
        }});
        assert_eq!(
            credential_from_token(&body).unwrap(),
            Credential {
                project_id: "abc".into(),
                project_name: "paasgen".into(),
                roles: vec!["member".into(), "reader".into()]
            }
        );
        assert!(credential_from_token(&json!({"token": {}})).is_err());
    }
}
