//! Markdown of API documents (written by API owners, possibly hostile) to safe HTML:
//! CommonMark with tables, then ammonia's allow-list — no script, no style, no event
//! handlers, no `javascript:` or `data:` URLs, no images; links open without referrer or
//! opener.

use std::sync::LazyLock;

use pulldown_cmark::{Options, Parser, html};

static CLEANER: LazyLock<ammonia::Builder<'static>> = LazyLock::new(|| {
    let mut b = ammonia::Builder::default();
    b.url_schemes(["http", "https", "mailto"].into_iter().collect());
    b.link_rel(Some("noopener noreferrer nofollow"));
    // The pages' CSP loads images from the portal only, so a document's images could not
    // show anyway; dropping them also keeps unlabelled images out.
    b.rm_tags(["img"]);
    b
});

/// Safe HTML for `markdown` (empty for empty input).
pub fn to_html(markdown: &str) -> String {
    if markdown.trim().is_empty() {
        return String::new();
    }
    let mut raw = String::with_capacity(markdown.len() * 2);
    html::push_html(&mut raw, Parser::new_ext(markdown, Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH));
    CLEANER.clean(&raw).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_markdown_renders_inert() {
        let hostile = "Hi <script>alert(1)</script> <img src=x onerror=alert(2)> [x](javascript:alert(3)) \
            <a href=\"JaVaScRiPt:alert(4)\">y</a> <iframe src=//evil></iframe> <style>*{}</style> \
            <svg onload=alert(5)></svg> [d](data:text/html,<script>alert(6)</script>) <form action=//evil><button>go</button></form>";
        let out = to_html(hostile).to_ascii_lowercase();
        for bad in ["<script", "onerror", "onload", "javascript:", "<iframe", "<style", "data:text", "<form", "<svg"] {
            assert!(!out.contains(bad), "{bad} survived: {out}");
        }
        assert!(out.contains("hi "));
    }

    #[test]
    fn ordinary_markdown_keeps_its_shape() {
        let out =
            to_html("# Title\n\n*Forecasts* with [docs](https://example.com).\n\n| a | b |\n|---|---|\n| 1 | 2 |\n");
        assert!(out.contains("<em>Forecasts</em>"));
        assert!(out.contains(r#"href="https://example.com""#) && out.contains("noopener"));
        assert!(out.contains("<table>"));
    }
}
