//! clusterview: the data model every stolon-rs component shares, and the etcd store.
//!
//! - `spec`: the operator's cluster spec (Stolon's fields), defaults and validation;
//! - `data`: ClusterData, the authoritative clusterview the leading sentinel writes;
//! - `info`: what keepers, sentinels and proxies publish about themselves;
//! - `duration`: Go-style durations (`"1m30s"`) used in specs and infos;
//! - `store`: the only code that talks to etcd (keys, CAS, leases, election, watch).
//!
//! Everything that crosses a process or etcd boundary is defined here, so the components cannot
//! disagree about a field's name or meaning.
#![forbid(unsafe_code)]

pub mod data;
pub mod duration;
pub mod info;
pub mod spec;
pub mod store;

pub use data::ClusterData;
pub use spec::ClusterSpec;
pub use store::{Store, StoreConfig, StoreError};

/// A new random uid, short like Stolon's (8 hex chars) so it stays readable in status tables.
pub fn new_uid() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_string()
}

/// A new random id for info publications and boot ids.
pub fn new_info_uid() -> String {
    uuid::Uuid::new_v4().to_string()
}
