//! Static assets compiled into the binary, served under content-hashed names
//! (`/assets/app.3f2a9c1e.css`) with a year-long immutable cache and gzip when the browser
//! takes it. Names and compressed bodies are computed once, at first use.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use flate2::Compression;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};
use std::io::Write;

/// Where assets are served.
pub const PREFIX: &str = "/assets/";

struct Source {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const SOURCES: &[Source] = &[
    Source {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../../web/static/app.css"),
    },
    Source {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../../web/static/app.js"),
    },
    Source { name: "icon.svg", content_type: "image/svg+xml", body: include_bytes!("../../../web/static/icon.svg") },
];

struct Asset {
    logical: &'static str,
    hashed: String,
    content_type: &'static str,
    body: &'static [u8],
    gzip: Vec<u8>,
}

static ASSETS: LazyLock<Vec<Asset>> = LazyLock::new(|| SOURCES.iter().map(build).collect());

fn build(s: &Source) -> Asset {
    let digest = hex::encode(&Sha256::digest(s.body)[..5]);
    let hashed = match s.name.rsplit_once('.') {
        Some((stem, ext)) => format!("{stem}.{digest}.{ext}"),
        None => format!("{}.{digest}", s.name),
    };
    let mut gz = GzEncoder::new(Vec::new(), Compression::best());
    // Writing to a Vec cannot fail; an empty gzip body is never served (see `serve_asset`).
    let gzip = gz.write_all(s.body).and_then(|()| gz.finish()).unwrap_or_default();
    Asset { logical: s.name, hashed, content_type: s.content_type, body: s.body, gzip }
}

/// The URL of asset `name` (`app.css`), with its content hash; `/assets/missing` for an
/// unknown name, which the tests of every page would catch.
pub fn url(name: &str) -> String {
    match ASSETS.iter().find(|a| a.logical == name) {
        Some(a) => format!("{PREFIX}{}", a.hashed),
        None => format!("{PREFIX}missing"),
    }
}

/// `GET /assets/{name}`: an asset by its hashed name.
pub async fn serve_asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.hashed == name) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    let gzip_ok = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
    let use_gzip = gzip_ok && !asset.gzip.is_empty() && asset.gzip.len() < asset.body.len();
    let body = if use_gzip { asset.gzip.clone() } else { asset.body.to_vec() };
    let mut res = body.into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=31536000, immutable"));
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    if use_gzip {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_content_hash() {
        let css = url("app.css");
        assert!(
            css.starts_with("/assets/app.") && css.ends_with(".css") && css.len() == "/assets/app.0123456789.css".len()
        );
        assert_eq!(url("nope.css"), "/assets/missing");
    }
}
