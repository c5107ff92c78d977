//! Everything that knows the bucket's keys, ETags and compare-and-swap: the store (S3 or a
//! `file://` directory), the key layout, the pointers, the history records, build resolution,
//! the push lock and the parallel GET helper. Commands and the rollout use these; nothing here
//! prints.

pub(crate) mod fetch_all;
pub(crate) mod history;
pub(crate) mod hosts;
pub(crate) mod layout;
pub(crate) mod lock;
pub(crate) mod pointers;
pub(crate) mod resolve;
pub(crate) mod store;
