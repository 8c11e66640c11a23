//! Edge authentication building blocks: JWT validation ([`jwt`]) with static keys or a JWKS
//! URL, and the SSRF policy ([`ssrf`]) every operator-supplied URL (JWKS, introspection)
//! passes at save time and again at connect time.

pub mod introspect;
pub mod jwt;
pub mod ssrf;
