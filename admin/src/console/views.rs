//! Templates shared by several handlers.

use askama::Template;
use askama_web::WebTemplate;

use super::web::Chrome;

/// An error page.
#[derive(Template, WebTemplate)]
#[template(path = "admin/error.html")]
pub struct ErrorPage {
    pub chrome: Chrome,
    pub status: u16,
    pub message: String,
}
