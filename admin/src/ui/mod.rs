//! What the two server-rendered faces (the developer portal and the admin UI) share: static
//! assets served from the binary, browser sessions in PostgreSQL, CSRF protection, security
//! headers and the flash message. Templates live in `web/templates`, assets in `web/static`.

pub mod assets;
pub mod chart;
pub mod csrf;
pub mod error;
pub mod form;
pub mod format;
pub mod headers;
pub mod session;

/// Form fields longer than this are refused before they reach a handler.
pub const FORM_LIMIT: usize = 256 * 1024;
