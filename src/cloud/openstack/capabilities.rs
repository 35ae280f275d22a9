//! What the cloud offers, asked once per run and kept in one place: Neutron's extensions
//! (`GET /v2.0/extensions`), the microversions Nova speaks, and the service types of the
//! catalog. Listings, creates and `plan`'s refusals all read it, so a cloud without the
//! L3 router plugin is never asked for routers, and a mode it cannot serve is refused
//! in words before anything is created.

use super::OpenStack;
use crate::spec::Spec;
use anyhow::{anyhow, Result};
use osauth::services::{COMPUTE, NETWORK};
use reqwest::Method;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeSet;
use std::fmt;

/// The Nova microversion every compute call asks for: 2.52+ takes tags at create,
/// 2.57+ returns user_data to those allowed to see it, 2.64+ takes a server group's
/// `policy`. It is the one paasgen is tested with, so it is asked for, not a lower one.
pub const NOVA_MICROVERSION: (u16, u16) = (2, 74);

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    /// Neutron's extension aliases (`router`, `allowed-address-pairs`, ...).
    pub network_extensions: BTreeSet<String>,
    /// The microversions Nova speaks, lowest and highest (None: no microversions).
    pub compute_microversions: Option<(String, String)>,
    /// Service types in the token's catalog, and those given an endpoint override.
    pub services: BTreeSet<String>,
}

/// How the cluster's tags reach Neutron resources (tags are how an operator finds
/// them; paasgen itself finds them by name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tagging {
    /// `tag-creation`: in the create request of every resource.
    OnCreate,
    /// `tag-ports-during-bulk-creation`: in the create request of ports, by a second
    /// call elsewhere.
    PortsOnCreate,
    /// `standard-attr-tag` only: a second call after each create.
    Afterwards,
    /// No tag extension: resources go untagged.
    None,
}

impl Tagging {
    /// Whether a `collection` resource's create request carries its tags.
    pub fn on_create(self, collection: &str) -> bool {
        taggable(collection)
            && match self {
                Tagging::OnCreate => true,
                Tagging::PortsOnCreate => collection == "ports",
                Tagging::Afterwards | Tagging::None => false,
            }
    }

    /// Whether a `collection` resource is tagged by a second call after its create.
    pub fn afterwards(self, collection: &str) -> bool {
        taggable(collection) && self != Tagging::None && !self.on_create(collection)
    }
}

/// Security group rules take no tags (they are found by their description).
fn taggable(collection: &str) -> bool {
    collection != "security-group-rules"
}

impl Capabilities {
    pub fn has_extension(&self, alias: &str) -> bool {
        self.network_extensions.contains(alias)
    }

    /// Routers and floating IPs (both come with Neutron's L3 router plugin).
    pub fn routers(&self) -> bool {
        self.has_extension("router")
    }

    pub fn has_service(&self, service_type: &str) -> bool {
        self.services.contains(service_type)
    }

    pub fn tagging(&self) -> Tagging {
        if !self.has_extension("standard-attr-tag") {
            Tagging::None
        } else if self.has_extension("tag-creation") {
            Tagging::OnCreate
        } else if self.has_extension("tag-ports-during-bulk-creation") {
            Tagging::PortsOnCreate
        } else {
            Tagging::Afterwards
        }
    }

    /// Why this cloud cannot build `spec`, one sentence each; empty when it can.
    pub fn refusals(&self, spec: &Spec) -> Vec<String> {
        let mut why = Vec::new();
        if spec.network.is_floating() && !self.routers() {
            why.push("network.public: floating needs a router and a floating IP, and this cloud's network service has no routers: use `network.public: fixed`, or ask the operator for the L3 router plugin".to_string());
        }
        if !self.has_extension("allowed-address-pairs") {
            why.push("the gateways share their VIPs through allowed-address-pairs on their ports, and this cloud's network service lacks the `allowed-address-pairs` extension: a VIP could not move to the other gateway. Ask the operator to enable it (ML2's port_security extension driver brings it)".to_string());
        }
        if !self.has_extension("security-group") {
            why.push("this cloud's network service has no security groups (`security-group` extension): etcd and the API would be open to every address that reaches the ports, so paasgen does not launch there".to_string());
        }
        match self.compute_microversions.as_ref().map(|(_, max)| parse_version(max)) {
            None => why.push(format!(
                "the compute service (Nova) announces no microversions: paasgen needs {}",
                show_version(NOVA_MICROVERSION)
            )),
            Some(Some(max)) if max >= NOVA_MICROVERSION => {}
            Some(_) => why.push(format!(
                "the compute service (Nova) speaks microversions up to {}, and paasgen needs {} (server group policies, tags at create; Nova of OpenStack Train or later)",
                self.compute_microversions.as_ref().map(|(_, m)| m.as_str()).unwrap_or("?"),
                show_version(NOVA_MICROVERSION)
            )),
        }
        if !self.has_service("image") {
            why.push("this cloud's service catalog has no image service (Glance): servers boot from an image paasgen finds (or uploads) there".to_string());
        }
        why
    }
}

/// One line per fact, for `plan -v`.
impl fmt::Display for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |set: &BTreeSet<String>| set.iter().cloned().collect::<Vec<_>>().join(", ");
        writeln!(f, "cloud capabilities:")?;
        writeln!(f, "  services: {}", list(&self.services))?;
        match &self.compute_microversions {
            Some((min, max)) => writeln!(f, "  compute microversions: {min} to {max}")?,
            None => writeln!(f, "  compute microversions: none announced")?,
        }
        writeln!(
            f,
            "  routers and floating IPs: {}",
            if self.routers() {
                "yes"
            } else {
                "no (no `router` extension)"
            }
        )?;
        writeln!(f, "  tagging: {:?}", self.tagging())?;
        write!(
            f,
            "  network extensions: {}",
            list(&self.network_extensions)
        )
    }
}

fn parse_version(v: &str) -> Option<(u16, u16)> {
    let (major, minor) = v.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

pub fn show_version((major, minor): (u16, u16)) -> String {
    format!("{major}.{minor}")
}

/// The service types of a Keystone token's catalog.
pub fn catalog_services(token: &Value) -> BTreeSet<String> {
    token["token"]["catalog"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["type"].as_str().map(str::to_string))
        .collect()
}

impl OpenStack {
    /// What the cloud offers, asked on first use and kept for the run.
    pub async fn capabilities(&self) -> Result<&Capabilities> {
        self.capabilities.get_or_try_init(|| self.discover()).await
    }

    async fn discover(&self) -> Result<Capabilities> {
        let (extensions, versions, token) = tokio::try_join!(
            self.call(NETWORK, Method::GET, &["extensions"], &[], None),
            async {
                self.session
                    .get_api_versions(COMPUTE)
                    .await
                    .map_err(|e| anyhow!("asking the compute service (Nova) for its versions: {e}"))
            },
            self.token_info(),
        )?;
        let network_extensions = extensions["extensions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["alias"].as_str().map(str::to_string))
            .collect();
        let mut services = catalog_services(&token);
        services.extend(self.session.endpoint_overrides().keys().cloned());
        Ok(Capabilities {
            network_extensions,
            compute_microversions: versions.map(|(min, max)| (min.to_string(), max.to_string())),
            services,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> Spec {
        crate::spec::parse("c.yaml", text).unwrap().0
    }

    /// A cloud like the lab's full one: ML2 with the router plugin, Nova 2.93.
    fn full() -> Capabilities {
        Capabilities {
            network_extensions: [
                "router",
                "external-net",
                "allowed-address-pairs",
                "port-security",
                "security-group",
                "standard-attr-tag",
                "tag-ports-during-bulk-creation",
            ]
            .into_iter()
            .map(String::from)
            .collect(),
            compute_microversions: Some(("2.1".into(), "2.93".into())),
            services: ["compute", "network", "image", "identity"]
                .into_iter()
                .map(String::from)
                .collect(),
        }
    }

    fn without(mut c: Capabilities, alias: &str) -> Capabilities {
        c.network_extensions.remove(alias);
        c
    }

    #[test]
    fn a_full_cloud_serves_both_modes() {
        assert!(full().refusals(&spec(crate::spec::EXAMPLE)).is_empty());
        assert!(full()
            .refusals(&spec(crate::spec::FLOATING_EXAMPLE))
            .is_empty());
    }

    #[test]
    fn without_routers_fixed_mode_is_served_and_floating_mode_refused_in_words() {
        let c = without(full(), "router");
        assert!(!c.routers());
        assert!(c.refusals(&spec(crate::spec::EXAMPLE)).is_empty());
        let why = c.refusals(&spec(crate::spec::FLOATING_EXAMPLE));
        assert_eq!(why.len(), 1, "{why:?}");
        assert!(
            why[0].contains("this cloud's network service has no routers: use `network.public: fixed`, or ask the operator for the L3 router plugin"),
            "{}",
            why[0]
        );
    }

    #[test]
    fn the_vip_needs_allowed_address_pairs_and_the_ports_security_groups() {
        let why = without(full(), "allowed-address-pairs").refusals(&spec(crate::spec::EXAMPLE));
        assert!(
            why.iter().any(|w| w.contains("`allowed-address-pairs`")),
            "{why:?}"
        );
        let why = without(full(), "security-group").refusals(&spec(crate::spec::EXAMPLE));
        assert!(
            why.iter().any(|w| w.contains("no security groups")),
            "{why:?}"
        );
    }

    #[test]
    fn an_old_nova_or_no_glance_is_refused() {
        let mut c = full();
        c.compute_microversions = Some(("2.1".into(), "2.60".into()));
        let why = c.refusals(&spec(crate::spec::EXAMPLE));
        assert!(
            why.iter()
                .any(|w| w.contains("up to 2.60") && w.contains("needs 2.74")),
            "{why:?}"
        );
        c.compute_microversions = None;
        assert_eq!(c.refusals(&spec(crate::spec::EXAMPLE)).len(), 1);
        let mut c = full();
        c.services.remove("image");
        let why = c.refusals(&spec(crate::spec::EXAMPLE));
        assert!(why.iter().any(|w| w.contains("Glance")), "{why:?}");
    }

    #[test]
    fn tags_go_where_the_cloud_takes_them() {
        let c = full();
        assert_eq!(c.tagging(), Tagging::PortsOnCreate);
        assert!(c.tagging().on_create("ports"));
        assert!(!c.tagging().on_create("networks"));
        assert!(c.tagging().afterwards("networks"));
        assert!(!c.tagging().afterwards("ports"));
        assert!(!c.tagging().afterwards("security-group-rules"));
        let mut newer = full();
        newer.network_extensions.insert("tag-creation".into());
        assert_eq!(newer.tagging(), Tagging::OnCreate);
        assert!(!newer.tagging().afterwards("networks"));
        assert_eq!(
            without(full(), "tag-ports-during-bulk-creation").tagging(),
            Tagging::Afterwards
        );
        let untagged = without(full(), "standard-attr-tag");
        assert_eq!(untagged.tagging(), Tagging::None);
        assert!(!untagged.tagging().afterwards("networks"));
        assert!(!untagged.tagging().on_create("ports"));
    }

    #[test]
    fn the_catalog_gives_service_types() {
        let token = serde_json::json!({"token": {"catalog": [
            {"type": "compute", "endpoints": []}, {"type": "object-store"}, {"name": "x"}]}});
        assert_eq!(
            catalog_services(&token).into_iter().collect::<Vec<_>>(),
            ["compute", "object-store"]
        );
    }
}
