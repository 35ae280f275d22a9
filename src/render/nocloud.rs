//! What a cloud's metadata service tells a node besides its user-data, as a NoCloud
//! seed carries it: `meta-data` (instance id, hostname) and `network-config` (its NICs'
//! fixed addresses, the subnet's resolvers, a gateway's public route). The boot lab
//! writes these into each node's disk; on OpenStack the metadata service serves them.

use super::output::{ManifestNetwork, ManifestNode};
use super::Templates;
use crate::spec::Role;
use anyhow::{bail, Result};
use serde::Serialize;

#[derive(Serialize)]
struct NetworkConfig<'a> {
    node: &'a str,
    private_interface: &'a str,
    private_address: String,
    dns_servers: &'a [String],
    public_interface: Option<&'a str>,
    public_address: Option<String>,
    public_gateway: Option<&'a str>,
}

/// The node's `network-config`: its private NIC, and on a gateway the public NIC with
/// the default route through the public network's gateway.
pub fn network_config(net: &ManifestNetwork, node: &ManifestNode) -> Result<String> {
    let mut ctx = NetworkConfig {
        node: &node.name,
        private_interface: &net.private_interface,
        private_address: net.on_private(&node.private_ip)?,
        dns_servers: &net.dns_servers,
        public_interface: None,
        public_address: None,
        public_gateway: None,
    };
    if node.role == Role::Gateway {
        let (Some(gateway), Some(interface), Some(ip)) =
            (&net.public_gateway, &net.public_interface, &node.public_ip)
        else {
            bail!(
                "{}: a gateway's NoCloud seed needs a fixed public address (network.public: fixed)",
                node.name
            );
        };
        ctx.public_interface = Some(interface);
        ctx.public_address = Some(net.on_public(ip)?);
        ctx.public_gateway = Some(gateway);
    }
    Templates::load()?.render_value("lab/network-config.yaml.tera", &ctx)
}

/// The node's `meta-data`: a new `instance_id` makes cloud-init run every module again,
/// as on a server created anew.
pub fn meta_data(node: &str, instance_id: &str) -> Result<String> {
    #[derive(Serialize)]
    struct MetaData<'a> {
        node: &'a str,
        instance_id: &'a str,
    }
    Templates::load()?.render_value("lab/meta-data.tera", &MetaData { node, instance_id })
}
