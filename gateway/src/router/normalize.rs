//! Request path normalisation: the one canonical form the router matches on and the upstream
//! receives, so that no encoding trick can make the gateway route one path while the upstream
//! serves another.
//!
//! The canonical form: starts with `/`; no empty segments except a trailing slash; no `.` or
//! `..` segments; unreserved characters (`A-Z a-z 0-9 - . _ ~`) never percent-encoded; every
//! other escape in uppercase hex; bytes outside RFC 3986 `pchar` (e.g. space, `"`, `{`, or
//! non-ASCII) percent-encoded. Encoded slashes and backslashes, NUL, raw backslashes and
//! control characters are refused: upstreams disagree about what they mean.

use std::borrow::Cow;

/// Why a request path was refused; the caller answers 400 with [`PathError::reason`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path must start with '/'")]
    NotAbsolute,
    #[error("encoded slash (%2F) in path")]
    EncodedSlash,
    #[error("encoded backslash (%5C) in path")]
    EncodedBackslash,
    #[error("encoded NUL (%00) in path")]
    EncodedNul,
    #[error("backslash in path")]
    Backslash,
    #[error("control character in path")]
    ControlChar,
    #[error("malformed percent-encoding in path")]
    MalformedPercent,
    #[error("path climbs above the root")]
    AboveRoot,
}

impl PathError {
    /// A short, stable, client-safe reason.
    pub fn reason(self) -> &'static str {
        match self {
            Self::NotAbsolute => "path must start with '/'",
            Self::EncodedSlash => "encoded slash in path",
            Self::EncodedBackslash => "encoded backslash in path",
            Self::EncodedNul => "encoded NUL in path",
            Self::Backslash => "backslash in path",
            Self::ControlChar => "control character in path",
            Self::MalformedPercent => "malformed percent-encoding in path",
            Self::AboveRoot => "path climbs above the root",
        }
    }
}

/// Normalises a request path (without its query string) into the canonical form described in
/// the module docs. Returns `Cow::Borrowed` without allocating when `raw` is already canonical.
pub fn normalize_path(raw: &str) -> Result<Cow<'_, str>, PathError> {
    if needs_rewrite(raw.as_bytes())? { rewrite(raw).map(Cow::Owned) } else { Ok(Cow::Borrowed(raw)) }
}

/// How one input byte (or `%XX` escape) is written in canonical form.
enum Unit {
    /// Kept as is (a raw `pchar`, or an escape already canonical).
    Keep,
    /// Written as this decoded unreserved character.
    Decoded(u8),
    /// Written as `%XX` with uppercase hex.
    Encoded(u8),
}

/// Reads the unit starting at `b[i]` (never `/`); returns it and its length in bytes.
fn read_unit(b: &[u8], i: usize) -> Result<(Unit, usize), PathError> {
    let c = b[i];
    match c {
        b'%' => read_escape(b, i),
        b'\\' => Err(PathError::Backslash),
        0..0x20 | 0x7f => Err(PathError::ControlChar),
        _ if is_pchar(c) => Ok((Unit::Keep, 1)),
        _ => Ok((Unit::Encoded(c), 1)),
    }
}

fn read_escape(b: &[u8], i: usize) -> Result<(Unit, usize), PathError> {
    let (Some(&hi), Some(&lo)) = (b.get(i + 1), b.get(i + 2)) else {
        return Err(PathError::MalformedPercent);
    };
    let (Some(h), Some(l)) = (hex_val(hi), hex_val(lo)) else {
        return Err(PathError::MalformedPercent);
    };
    let v = h << 4 | l;
    match v {
        b'/' => Err(PathError::EncodedSlash),
        b'\\' => Err(PathError::EncodedBackslash),
        0 => Err(PathError::EncodedNul),
        _ if is_unreserved(v) => Ok((Unit::Decoded(v), 3)),
        _ if hi.is_ascii_lowercase() || lo.is_ascii_lowercase() => Ok((Unit::Encoded(v), 3)),
        _ => Ok((Unit::Keep, 3)),
    }
}

/// Validates `b` and tells whether its canonical form differs from it (the fast path).
fn needs_rewrite(b: &[u8]) -> Result<bool, PathError> {
    if b.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    let mut changed = false;
    let mut seg_start = 1;
    let mut i = 1;
    while i <= b.len() {
        if i == b.len() || b[i] == b'/' {
            // An empty segment before another `/` is a `//` run; a trailing one is kept.
            let seg = &b[seg_start..i];
            changed |= seg == b"." || seg == b".." || (seg.is_empty() && i < b.len());
            seg_start = i + 1;
            i += 1;
            continue;
        }
        let (unit, len) = read_unit(b, i)?;
        changed |= !matches!(unit, Unit::Keep);
        i += len;
    }
    Ok(changed)
}

/// Builds the canonical form of `raw` (RFC 3986 §5.2.4 on decoded segments).
fn rewrite(raw: &str) -> Result<String, PathError> {
    let mut out = String::with_capacity(raw.len());
    let mut segments = raw.get(1..).unwrap_or_default().split('/').peekable();
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        let mark = out.len();
        out.push('/');
        canonical_segment(seg.as_bytes(), &mut out)?;
        let written = &out[mark + 1..];
        if written == ".." {
            out.truncate(mark);
            let parent = out.rfind('/').ok_or(PathError::AboveRoot)?;
            out.truncate(parent);
        } else if written.is_empty() || written == "." {
            out.truncate(mark);
        } else {
            continue;
        }
        if last {
            out.push('/');
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// Appends the canonical form of one raw segment (no `/` in it) to `out`.
fn canonical_segment(seg: &[u8], out: &mut String) -> Result<(), PathError> {
    let mut i = 0;
    while i < seg.len() {
        let (unit, len) = read_unit(seg, i)?;
        match unit {
            Unit::Keep => seg[i..i + len].iter().for_each(|&c| out.push(char::from(c))),
            Unit::Decoded(c) => out.push(char::from(c)),
            Unit::Encoded(c) => push_escape(out, c),
        }
        i += len;
    }
    Ok(())
}

fn push_escape(out: &mut String, c: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(char::from(HEX[usize::from(c >> 4)]));
    out.push(char::from(HEX[usize::from(c & 0xf)]));
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// RFC 3986 unreserved characters: never need encoding, so always decoded.
fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
}

/// RFC 3986 `pchar` minus `%`: allowed raw in a path segment.
fn is_pchar(c: u8) -> bool {
    is_unreserved(c)
        || matches!(c, b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=' | b':' | b'@')
}

#[cfg(test)]
#[path = "normalize_tests.rs"]
mod tests;
