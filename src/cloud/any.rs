//! One value for whichever provider the user chose (`--cloud`), so every verb is
//! written once against the `Cloud` trait.

use super::lab::LabCloud;
use super::openstack::OpenStack;
use super::{Cloud, Existing, Ids, Kind, Resource, ServerState};
use anyhow::Result;
use std::collections::BTreeMap;

pub enum AnyCloud {
    OpenStack(Box<OpenStack>),
    Lab(LabCloud),
}

macro_rules! each {
    ($self:ident, $c:ident => $call:expr) => {
        match $self {
            AnyCloud::OpenStack($c) => $call,
            AnyCloud::Lab($c) => $call,
        }
    };
}

impl Cloud for AnyCloud {
    async fn inventory(&self, cluster: &str) -> Result<Vec<Existing>> {
        each!(self, c => c.inventory(cluster).await)
    }
    async fn create(&self, cluster: &str, resource: &Resource, ids: &Ids) -> Result<String> {
        each!(self, c => c.create(cluster, resource, ids).await)
    }
    async fn server_state(&self, id: &str) -> Result<ServerState> {
        each!(self, c => c.server_state(id).await)
    }
    async fn server_states(&self, cluster: &str) -> Result<BTreeMap<String, ServerState>> {
        each!(self, c => c.server_states(cluster).await)
    }
    async fn delete(&self, kind: Kind, id: &str) -> Result<()> {
        each!(self, c => c.delete(kind, id).await)
    }
    async fn stop_server(&self, id: &str) -> Result<()> {
        each!(self, c => c.stop_server(id).await)
    }
    async fn server_user_data(&self, id: &str) -> Result<Option<String>> {
        each!(self, c => c.server_user_data(id).await)
    }
}

impl AnyCloud {
    /// At most `parallel` calls in flight where one operation makes several.
    pub fn set_parallel(&mut self, parallel: usize) {
        if let AnyCloud::OpenStack(c) = self {
            c.set_parallel(parallel);
        }
    }

    /// What the cloud offers (the boot lab: None, it builds whatever the spec says).
    pub async fn capabilities(&self) -> Result<Option<super::openstack::Capabilities>> {
        match self {
            AnyCloud::OpenStack(c) => Ok(Some(c.capabilities().await?.clone())),
            AnyCloud::Lab(_) => Ok(None),
        }
    }

    /// Refuses, before anything is created, a spec the credential cannot launch (the
    /// boot lab has no policies).
    pub async fn check_rights(&self, spec: &crate::spec::Spec) -> Result<()> {
        match self {
            AnyCloud::OpenStack(c) => c.check_rights(spec).await,
            AnyCloud::Lab(_) => Ok(()),
        }
    }
}
