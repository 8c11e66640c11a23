//! Portal integration tests: a real portal and admin on a fresh PostgreSQL database each,
//! driven over HTTP like a browser without JavaScript (cookies, forms, CSRF tokens taken
//! from the page), mail read from the outbox or from an in-process SMTP server.
#![allow(clippy::expect_used, reason = "a failed setup step should fail the test loudly")]

mod accounts;
mod admin_ui;
mod admin_ui_browser;
mod apps;
mod catalog;
mod chrome;
mod health;
mod helpers;
mod journey;
mod mail;
mod pages;
mod reference;
mod security;
mod team;
