//! Integration tests of the admin REST API against a real PostgreSQL and a real HTTP server.

mod audit;
mod auth;
mod crud;
mod helpers;
mod keys;
mod openapi;
mod subscriptions;
