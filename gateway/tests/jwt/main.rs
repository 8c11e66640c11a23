//! JWT validation against independent implementations: the Wycheproof JWS vectors, tokens
//! minted by PyJWT (valid ones and attack vectors), and a JWKS served over real HTTP on
//! `127.0.0.1:0` (refresh, rate-limited refetch, SSRF policy).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;

mod jwks;
mod pyjwt;
mod wycheproof;
