//! Forwarding a routed request to its upstream and the answer back.
pub mod client;
pub mod forward;
pub mod h1;
pub mod headers;
pub mod pool;
pub mod upgrade;

pub use forward::{ConnInfo, GwBody, Limits, Pipeline};
