//! Integration tests of the gateway's data plane, end to end: an in-process gateway
//! (`tollgate_gateway::serve` on `127.0.0.1:0`, DB-less, from a declarative file) in front of
//! real upstream servers, driven by real HTTP/1.1, HTTP/2 and raw TCP clients.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;

mod access_log;
mod auth;
mod balancing;
mod bodies;
mod hardening;
mod headers;
mod http1;
mod limits;
mod live_config;
mod mtls;
mod paths;
mod resilience;
mod reuse;
mod routing;
mod shutdown;
mod tls;
mod traces;
mod upgrade;
mod upstream_tls;
