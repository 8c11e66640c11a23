//! Form handling shared by the portal and the admin UI: reading a form body once for the
//! CSRF check (URL-encoded or multipart), field errors shown next to their fields, and
//! the small helpers of links and redirects.

use axum::body::Bytes;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use http_body_util::BodyExt;

use crate::error::ApiError;
use crate::ui::csrf;

/// `q` with the wildcards of SQL `LIKE` escaped, for a search term.
pub fn escape_like(q: &str) -> String {
    q.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

/// `s` percent-encoded for a query value.
pub fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A local path to return to after login: only `/…` paths of this site, else `fallback`.
pub fn safe_next<'a>(next: &'a str, fallback: &'a str) -> &'a str {
    let local = next.starts_with('/') && !next.starts_with("//") && !next.contains('\\');
    if local && next.len() < 2000 { next } else { fallback }
}

/// Problems with form fields, in field order, shown next to each field and in a summary.
#[derive(Debug, Default, Clone)]
pub struct FieldErrors(pub Vec<(String, String)>);

impl FieldErrors {
    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        let field = field.into();
        if self.get(&field).is_none() {
            self.0.push((field, message.into()));
        }
    }

    pub fn check(&mut self, ok: bool, field: &'static str, message: &str) -> &mut Self {
        if !ok {
            self.add(field, message);
        }
        self
    }

    /// The message of `field`, or "".
    pub fn get(&self, field: &str) -> Option<&str> {
        self.0.iter().find(|(f, _)| *f == field).map(|(_, m)| m.as_str())
    }

    /// `get` for templates: "" when the field is fine.
    pub fn of(&self, field: &str) -> &str {
        self.get(field).unwrap_or("")
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Takes over the field errors of an admin operation's refusal; `None` if it had none
    /// for the given fields (then it is an error of the whole request).
    pub fn from_api(err: &ApiError, fields: &[&'static str]) -> Option<Self> {
        let mut out = Self::default();
        for e in err.field_errors() {
            let name = e.pointer.trim_start_matches('/');
            if let Some(f) = fields.iter().find(|f| **f == name) {
                out.add(*f, e.detail.clone());
            }
        }
        (!out.is_empty()).then_some(out)
    }
}

/// Why a form was refused before its handler ran (nothing was changed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    CrossSite,
    TooLarge,
    BadToken,
}

impl Refusal {
    pub fn status(self) -> StatusCode {
        match self {
            Refusal::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::CrossSite | Refusal::BadToken => StatusCode::FORBIDDEN,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Refusal::CrossSite => "This form was sent from another site; nothing was changed.",
            Refusal::TooLarge => "This form is too large.",
            Refusal::BadToken => {
                "This form has expired or did not come from this site; nothing was changed. Go back, reload the page and try again."
            }
        }
    }
}

/// Reads a state-changing request's body (at most `limit` bytes) and lets it through only
/// when it comes from this site and carries `expected` in its `csrf` field. Multipart
/// forms (file uploads) are searched for the field too. The body is handed on unchanged.
pub async fn check(req: Request, expected: &str, limit: usize) -> Result<Request, Refusal> {
    if csrf::cross_site(req.headers()) {
        return Err(Refusal::CrossSite);
    }
    let boundary = multipart_boundary(req.headers());
    let (parts, body) = req.into_parts();
    let bytes = match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Err(Refusal::TooLarge),
    };
    let token = match boundary {
        Some(b) => multipart_token(bytes.clone(), b).await,
        None => csrf::form_token(&bytes),
    };
    if !csrf::matches(token.as_deref(), expected) {
        return Err(Refusal::BadToken);
    }
    Ok(Request::from_parts(parts, axum::body::Body::from(bytes)))
}

fn multipart_boundary(headers: &axum::http::HeaderMap) -> Option<String> {
    let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    multer::parse_boundary(ct).ok()
}

/// The `csrf` field of a multipart body.
async fn multipart_token(bytes: Bytes, boundary: String) -> Option<String> {
    let stream = futures_util::stream::once(async move { Ok::<_, std::convert::Infallible>(bytes) });
    let mut form = multer::Multipart::new(stream, boundary);
    while let Ok(Some(field)) = form.next_field().await {
        if field.name() == Some(csrf::FIELD) {
            return field.text().await.ok();
        }
    }
    None
}
