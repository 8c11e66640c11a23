//! Usage analytics in the control plane: the roll-up job ([`rollup`]) and the read API
//! ([`api`]: series, top-N, and a subscription's quota as the gateways count it).

pub mod api;
pub mod quota;
pub mod rollup;

pub use rollup::Retention;
