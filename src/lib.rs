//! paasgen: one cluster spec in, a self-configuring Kubernetes platform out.
//!
//! The pipeline, one module per step:
//! `spec` (parse + validate) -> `pki` (keys and certs, kept in the state dir) ->
//! `render` (one cloud-init document per node) -> `commands` (what the CLI verbs do).
//! `day2` holds what the verbs that keep a running cluster stand on (sessions,
//! replacements, backups), so that verbs do not import each other.

pub mod api_certs;
pub mod cloud;
pub mod commands;
pub mod day2;
pub mod etcd_admin;
pub mod fsutil;
pub mod http;
pub mod kube_admin;
pub mod liveness;
pub mod lock;
pub mod pki;
pub mod render;
pub mod retention;
pub mod snapshot;
pub mod spec;
pub mod tempurl;
