//! The request pipeline: routing, the edge phases and forwarding ([`forward`]).
pub mod forward;

pub use crate::wire::{ConnInfo, GwBody};
pub use forward::{HEALTH_PATH, Limits, Pipeline, READY_PATH};
