//! Request path normalisation: the one canonical form the router matches on and the upstream
//! receives, so that no encoding trick can make the gateway route one path while the upstream
//! serves another.
//!
//! The canonical form: starts with `/`; no empty segments except a trailing slash; no `.` or
//! `..` segments; unreserved characters (`A-Z a-z 0-9 - . _ ~`) never percent-encoded; every
//! other escape in uppercase hex; bytes outside RFC 3986 `pchar` (e.g. space, `"`, `{`, or
//! non-ASCII) percent-encoded.
//!
//! Refused, because upstreams disagree about what they mean and some resolve them into
//! another path than the one routed (docs/gateway.md, "Request paths"): encoded slashes and
//! backslashes, raw backslashes, raw or encoded NUL and control characters; a `.` or `..`
//! segment carrying a `;` parameter (`..;x=1`, which Tomcat, Spring and Jetty resolve as
//! `..`); double encoding (`%25` followed by two hex digits, as in `%252e`), which an upstream
//! decoding twice would turn into a dot segment or a slash the gateway never saw; and
//! escapes that do not decode to UTF-8 (overlong `%C0%AE` is a dot to some decoders).

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
    #[error("encoded control character in path")]
    EncodedControlChar,
    #[error("'.' or '..' segment with a ';' parameter in path")]
    DotSegmentParam,
    #[error("double percent-encoding (%25 and two hex digits) in path")]
    DoubleEncoded,
    #[error("percent-encoded bytes in path are not UTF-8")]
    NotUtf8,
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
            Self::EncodedControlChar => "encoded control character in path",
            Self::DotSegmentParam => "dot segment with a parameter in path",
            Self::DoubleEncoded => "double percent-encoding in path",
            Self::NotUtf8 => "percent-encoded path is not UTF-8",
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
        1..0x20 | 0x7f => Err(PathError::EncodedControlChar),
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
    // Whether the segment has a `%` or `;`, without which `check_segment` finds nothing:
    // ordinary paths skip its second pass.
    let mut suspect = false;
    let mut i = 1;
    while i <= b.len() {
        if i == b.len() || b[i] == b'/' {
            // An empty segment before another `/` is a `//` run; a trailing one is kept.
            let seg = &b[seg_start..i];
            if suspect {
                check_segment(seg)?;
            }
            changed |= seg == b"." || seg == b".." || (seg.is_empty() && i < b.len());
            (seg_start, suspect) = (i + 1, false);
            i += 1;
            continue;
        }
        // Most bytes of most paths are kept as they are: one table lookup, no `read_unit`.
        if KEPT[usize::from(b[i])] {
            i += 1;
            continue;
        }
        suspect |= matches!(b[i], b'%' | b';');
        let (unit, len) = read_unit(b, i)?;
        changed |= !matches!(unit, Unit::Keep);
        i += len;
    }
    Ok(changed)
}

/// The checks on what a segment decodes to, whatever its encoding (the bytes decoded are
/// the same in the raw and the canonical form, so checking the raw input is enough; a
/// segment a later `..` removes is refused too). `seg` passed [`read_unit`] already.
fn check_segment(seg: &[u8]) -> Result<(), PathError> {
    let mut dots = Some(0u8); // leading dots so far; `None` once something else came
    let mut hex_after_percent = None; // hex digits since a decoded `%`, i.e. a `%25`
    let mut utf8 = Utf8::default();
    for c in decoded(seg) {
        if c == b';' && dots.is_some_and(|n| n > 0) {
            return Err(PathError::DotSegmentParam);
        }
        dots = dots.filter(|n| c == b'.' && *n < 2).map(|n| n + 1);
        hex_after_percent = match (c, hex_after_percent) {
            (b'%', _) => Some(0),
            (_, Some(1)) if c.is_ascii_hexdigit() => return Err(PathError::DoubleEncoded),
            (_, Some(n)) if c.is_ascii_hexdigit() => Some(n + 1),
            _ => None,
        };
        if !utf8.push(c) {
            return Err(PathError::NotUtf8);
        }
    }
    if utf8.need > 0 { Err(PathError::NotUtf8) } else { Ok(()) }
}

/// The bytes a segment decodes to: `%XX` as its byte, anything else as itself.
fn decoded(seg: &[u8]) -> impl Iterator<Item = u8> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        let c = *seg.get(i)?;
        let escaped = match (c, seg.get(i + 1).copied().and_then(hex_val), seg.get(i + 2).copied().and_then(hex_val)) {
            (b'%', Some(h), Some(l)) => Some(h << 4 | l),
            _ => None,
        };
        i += if escaped.is_some() { 3 } else { 1 };
        Some(escaped.unwrap_or(c))
    })
}

/// A streaming UTF-8 check (RFC 3629 §4), so that escapes are validated without decoding
/// them into a buffer. Raw non-ASCII input is UTF-8 already, but may mix with escapes.
#[derive(Default)]
struct Utf8 {
    /// Continuation bytes still expected.
    need: u8,
    /// Bounds of the next continuation byte: narrower than [`Utf8::CONT`] right after some
    /// lead bytes, which rules out overlong forms, surrogates and code points past U+10FFFF.
    next: (u8, u8),
}

impl Utf8 {
    const CONT: (u8, u8) = (0x80, 0xBF);

    /// Takes the next byte; `false` when the bytes so far cannot be UTF-8.
    fn push(&mut self, c: u8) -> bool {
        if self.need > 0 {
            let (lo, hi) = self.next;
            (self.need, self.next) = (self.need - 1, Self::CONT);
            return (lo..=hi).contains(&c);
        }
        (self.need, self.next) = match c {
            0x00..=0x7F => (0, Self::CONT),
            0xC2..=0xDF => (1, Self::CONT),
            0xE0 => (2, (0xA0, 0xBF)),
            0xED => (2, (0x80, 0x9F)),
            0xE1..=0xEF => (2, Self::CONT),
            0xF0 => (3, (0x90, 0xBF)),
            0xF1..=0xF3 => (3, Self::CONT),
            0xF4 => (3, (0x80, 0x8F)),
            _ => return false,
        };
        true
    }
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
const fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
}

/// The bytes [`read_unit`] keeps as they are, other than `;` (which makes a segment
/// suspect): the raw `pchar`s.
static KEPT: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b != b';' && is_pchar(b);
        c += 1;
    }
    t
};

/// RFC 3986 `pchar` minus `%`: allowed raw in a path segment.
const fn is_pchar(c: u8) -> bool {
    is_unreserved(c)
        || matches!(c, b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=' | b':' | b'@')
}

#[cfg(test)]
#[path = "normalize_tests.rs"]
mod tests;
