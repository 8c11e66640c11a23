//! Parsing of the admin's route patterns: path patterns (`/exact`, `/prefix/*`,
//! `/users/{id}`), host patterns (`api.example.com`, `*.example.com`) and rewrite templates
//! (`/v2/users/{id}`). The admin validates them at save time; the router checks them again
//! because a bad pattern must never widen what a route matches.

use std::sync::Arc;

use super::normalize::normalize_path;

/// Longest accepted path pattern, in segments; bounds the trie depth and thus the recursion
/// of a lookup.
pub(super) const MAX_SEGMENTS: usize = 64;

/// One segment of a path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Seg {
    /// Matches this canonical segment exactly; `""` is a trailing slash. Shared with the
    /// trie, which keys its children by it.
    Literal(Arc<str>),
    /// Matches exactly one non-empty segment.
    Param,
}

/// A parsed path pattern.
#[derive(Debug, Clone)]
pub(super) struct PathPattern {
    /// The pattern as written by the admin.
    pub text: Box<str>,
    /// Segments to match; a prefix pattern leaves out its final `*`.
    pub segs: Vec<Seg>,
    /// Template parameter names and the index of the segment each one captures.
    pub params: Vec<(Box<str>, usize)>,
    /// `true` for `/prefix/*`: matches the segments and anything below them.
    pub prefix: bool,
}

/// A parsed host pattern, lower-cased.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum HostPattern {
    Exact(Arc<str>),
    /// `*.example.com`, stored as the suffix `.example.com`.
    Wildcard(Arc<str>),
}

/// One piece of a rewrite template.
#[derive(Debug, Clone)]
pub(super) enum RewritePart {
    Literal(Box<str>),
    Param(Box<str>),
}

/// A parsed `rewrite_path`.
#[derive(Debug, Clone)]
pub(super) struct Rewrite {
    pub text: Box<str>,
    pub parts: Vec<RewritePart>,
    /// Whether a parameter shares its segment with other text (`/v2/item-{id}`): only then
    /// can a rendering be a path no request normalises to (see [`Rewrite::fits`]).
    pub spliced: bool,
}

/// Parses a path pattern; the error is a short reason.
pub(super) fn parse_path(text: &str) -> Result<PathPattern, &'static str> {
    let rest = text.strip_prefix('/').ok_or("must start with '/'")?;
    let parts: Vec<&str> = rest.split('/').collect();
    if parts.len() > MAX_SEGMENTS {
        return Err("too many segments");
    }
    let mut pattern = PathPattern { text: text.into(), segs: Vec::new(), params: Vec::new(), prefix: false };
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        match *part {
            "*" if last => pattern.prefix = true,
            "*" => return Err("'*' is only allowed as the last segment"),
            "" if last => pattern.segs.push(Seg::Literal("".into())),
            "" => return Err("empty segment"),
            _ if part.starts_with('{') => add_param(&mut pattern, part)?,
            _ => pattern.segs.push(Seg::Literal(literal_segment(part)?)),
        }
    }
    Ok(pattern)
}

fn add_param(pattern: &mut PathPattern, part: &str) -> Result<(), &'static str> {
    let name = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')).ok_or("'{' must enclose a whole segment")?;
    if !is_param_name(name) {
        return Err("parameter names are letters, digits and '_'");
    }
    if pattern.params.iter().any(|(n, _)| &**n == name) {
        return Err("duplicate parameter name");
    }
    pattern.params.push((name.into(), pattern.segs.len()));
    pattern.segs.push(Seg::Param);
    Ok(())
}

/// The canonical form of a literal segment, as [`normalize_path`] would leave it in a request.
fn literal_segment(part: &str) -> Result<Arc<str>, &'static str> {
    if part.contains(['{', '}', '*']) {
        return Err("'{', '}' and '*' must be whole segments");
    }
    let with_slash = format!("/{part}");
    let canonical = normalize_path(&with_slash).map_err(|e| e.reason())?;
    match canonical.strip_prefix('/') {
        Some(seg) if !seg.is_empty() && !seg.contains('/') => Ok(seg.into()),
        _ => Err("'.' and '..' segments are not allowed"),
    }
}

fn is_param_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// Parses a host pattern: lower-cased, a trailing dot dropped, `*.` only as the first label.
pub(super) fn parse_host(text: &str) -> Result<HostPattern, &'static str> {
    let lower = text.to_ascii_lowercase();
    let host = lower.strip_suffix('.').unwrap_or(&lower);
    if let Some(suffix) = host.strip_prefix("*.") {
        check_host_name(suffix)?;
        return Ok(HostPattern::Wildcard(format!(".{suffix}").into()));
    }
    if host.starts_with('[') && host.ends_with(']') && host.len() > 2 {
        let inner = &host[1..host.len() - 1];
        if inner.bytes().all(|c| c.is_ascii_hexdigit() || c == b':' || c == b'.') {
            return Ok(HostPattern::Exact(host.into()));
        }
        return Err("invalid IPv6 literal");
    }
    check_host_name(host)?;
    Ok(HostPattern::Exact(host.into()))
}

fn check_host_name(host: &str) -> Result<(), &'static str> {
    if host.contains('*') {
        return Err("'*' is only allowed as a leading '*.' label");
    }
    if host.contains(':') {
        return Err("hosts have no port");
    }
    let label_ok = |l: &str| !l.is_empty() && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_');
    if host.len() > 253 || !host.split('.').all(label_ok) {
        return Err("not a valid host name");
    }
    Ok(())
}

/// Parses a rewrite template: a canonical path with whole or embedded `{name}` parameters.
pub(super) fn parse_rewrite(text: &str) -> Result<Rewrite, &'static str> {
    let mut parts = Vec::new();
    let mut probe = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find(['{', '}']) {
        let (literal, tail) = rest.split_at(open);
        let close = tail.find('}').filter(|_| tail.starts_with('{')).ok_or("unbalanced '{' or '}'")?;
        let name = &tail[1..close];
        if !is_param_name(name) {
            return Err("parameter names are letters, digits and '_'");
        }
        push_literal(&mut parts, &mut probe, literal);
        parts.push(RewritePart::Param(name.into()));
        probe.push('p');
        rest = &tail[close + 1..];
    }
    push_literal(&mut parts, &mut probe, rest);
    match normalize_path(&probe) {
        Ok(canonical) if canonical == probe => Ok(Rewrite { text: text.into(), parts, spliced: is_spliced(text) }),
        Ok(_) => Err("not a canonical path (empty, '.' or '..' segments, or needless escapes)"),
        Err(e) => Err(e.reason()),
    }
}

fn is_spliced(text: &str) -> bool {
    let whole = |seg: &str| seg.starts_with('{') && seg.ends_with('}') && seg.matches('{').count() == 1;
    text.split('/').any(|seg| seg.contains('{') && !whole(seg))
}

fn push_literal(parts: &mut Vec<RewritePart>, probe: &mut String, literal: &str) {
    if !literal.is_empty() {
        parts.push(RewritePart::Literal(literal.into()));
        probe.push_str(literal);
    }
}

impl Rewrite {
    /// Names of the parameters the template uses.
    pub fn param_names(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            RewritePart::Param(name) => Some(&**name),
            RewritePart::Literal(_) => None,
        })
    }

    /// Whether the template rendered with `params` is a canonical path, as a request's path
    /// is. A parameter is a canonical segment, so a whole-segment one always fits; spliced
    /// into text, it may not: `..{id}` with `;x` makes the dot segment `..;x`, `%25{id}` with
    /// `2e` the double encoding `%252e`, which upstreams would resolve against the route.
    /// (The remainder of a prefix match is canonical and starts a segment: it always fits.)
    pub fn fits(&self, params: &[(&str, &str)]) -> bool {
        if !self.spliced {
            return true;
        }
        let rendered = self.render(params, "");
        normalize_path(&rendered).is_ok_and(|canonical| canonical == rendered)
    }

    /// Renders the template with `params`, then appends `remainder` (the part of the path
    /// below a prefix pattern) without doubling the slash between them.
    pub fn render(&self, params: &[(&str, &str)], remainder: &str) -> String {
        let mut out = String::with_capacity(self.text.len() + remainder.len() + 16);
        for part in &self.parts {
            match part {
                RewritePart::Literal(text) => out.push_str(text),
                RewritePart::Param(name) => {
                    out.push_str(params.iter().find(|(n, _)| n == &&**name).map_or("", |(_, v)| v));
                }
            }
        }
        let remainder = if out.ends_with('/') { remainder.strip_prefix('/').unwrap_or(remainder) } else { remainder };
        out.push_str(remainder);
        out
    }
}
