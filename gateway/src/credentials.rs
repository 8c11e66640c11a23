//! The API-key index of a snapshot: SHA-256 of the key → who it belongs to. The index is the
//! configuration's own ([`crate::config::keys`]): the snapshot shares it.

pub use crate::config::keys::{KeyEntry, KeyIndex};
