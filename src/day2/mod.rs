//! Day-2 machinery: what the verbs that keep a running cluster (rebuild, recover,
//! upgrade, backup) share, in one place apart from the CLI, so that no verb imports
//! another. The verbs in `commands` parse their arguments, open a `Session` and call in.

pub(crate) mod backup;
pub(crate) mod copies;
mod handover;
pub(crate) mod records;
pub(crate) mod recover;
pub(crate) mod replace;
mod retire;
pub mod session;
pub mod setup;
pub mod upgrade;
