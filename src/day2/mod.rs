//! Day-2 machinery: what the verbs that keep a running cluster (rebuild, recover,
//! upgrade, backup) share, in one place apart from the CLI, so that no verb imports
//! another. The verbs in `commands` parse their arguments, open a `Session` and call in.

pub mod backup;
pub mod copies;
mod handover;
pub mod records;
pub mod recover;
pub mod replace;
mod retire;
pub mod session;
pub mod setup;
pub mod upgrade;
