//! Edge authentication building blocks: JWT validation ([`jwt`]) with static keys or a JWKS
//! URL, client certificates judged against an API's CAs ([`mtls`]), and the SSRF policy ([`ssrf`]) every operator-supplied URL (JWKS, introspection)
//! passes at save time and again at connect time; an API's compiled settings ([`settings`]).

pub mod introspect;
pub mod jwt;
pub mod mtls;
pub mod settings;
pub mod ssrf;
