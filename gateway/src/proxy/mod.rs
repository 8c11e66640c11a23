//! Forwarding a routed request to its upstream and the answer back.
pub mod headers;
