//! Edge authentication building blocks: JWT validation ([`jwt`]) with static keys or a JWKS
//! URL, and the SSRF policy ([`ssrf`]) every operator-supplied URL (JWKS, introspection)
//! passes at save time and again at connect time; an API's compiled settings ([`settings`]).

pub mod introspect;
pub mod jwt;
pub mod settings;
pub mod ssrf;
