//! Templates shared by several handlers.

use askama::Template;
use askama_web::WebTemplate;

use crate::web::Chrome;

/// An error page.
#[derive(Template, WebTemplate)]
#[template(path = "portal/error.html")]
pub struct ErrorPage {
    pub chrome: Chrome,
    pub status: u16,
    pub message: String,
}

/// A page with a heading, a message and an optional link onwards.
#[derive(Template, WebTemplate)]
#[template(path = "portal/message.html")]
pub struct MessagePage {
    pub chrome: Chrome,
    pub message: String,
    /// Shown when mail is only logged: where to find the link.
    pub log_hint: bool,
    pub link: Option<(String, String)>,
}
