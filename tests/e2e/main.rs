//! End-to-end tests of the whole platform: the real `tollgate` binary, real PostgreSQL, real
//! HTTP. One test binary (modules below) so the link step happens once.

mod cold_start;
mod demo;
mod dev;
mod gitops;
mod live_config;
mod outage;
mod plans;
mod propagation;
mod rolling;
mod shutdown;
mod support;
mod tls;
mod usage;
