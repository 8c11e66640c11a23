//! Integration tests of the admin REST API against a real PostgreSQL and a real HTTP server.
#![allow(clippy::expect_used, reason = "a failed setup step should fail the test loudly")]

mod audit;
mod auth;
mod certificate_bindings;
mod certificates;
mod crud;
mod edge_auth;
mod gateway_config;
mod gitops;
mod hardening;
mod helpers;
mod keys;
mod nodes;
mod openapi;
mod outbox;
mod prune;
mod subscriptions;
mod token_bindings;
mod usage;
