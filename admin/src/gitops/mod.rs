//! GitOps: the configuration gateways enforce as a declarative file — written from the
//! database ([`export`]), compared with it and applied to it in one transaction through
//! the admin's own operations ([`apply`]).

pub mod apply;
pub mod export;
