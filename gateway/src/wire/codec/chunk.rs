//! The lines of chunked transfer coding (RFC 9112 §7.1), parsed strictly: a chunk-size line
//! is hex digits and then only well-formed chunk extensions (`BWS ";" BWS token [BWS "="
//! BWS (token / quoted-string)]`), with no whitespace left at its end; a trailer line is a
//! field line (`token ":" OWS value OWS`, no obs-fold, no control characters). Lines end in
//! CRLF; a bare LF, or a CR anywhere else, is an error. Nothing two parsers could read two
//! ways is accepted.

use bytes::BytesMut;

/// Most hex digits of a chunk size (as `httparse` allows; 2^60 bytes is plenty).
const MAX_SIZE_DIGITS: usize = 15;

/// The result of looking for a line at the front of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A complete line, without its CRLF (which has been consumed too).
    Done(BytesMut),
    /// No line end yet; the buffer's bytes up to `scanned` hold none, so the next search
    /// starts there (searching a line costs its length once, however it trickles in).
    More { scanned: usize },
}

/// Takes the next CRLF-terminated line of at most `max` bytes from the front of `buf`,
/// searching from `scanned`.
pub fn take_line(buf: &mut BytesMut, scanned: usize, max: usize) -> Result<Line, &'static str> {
    let from = scanned.min(buf.len());
    match memchr_lf(&buf[from..]).map(|i| i + from) {
        Some(lf) if lf == 0 || buf[lf - 1] != b'\r' => Err("a line ends in a bare LF"),
        Some(lf) if lf - 1 > max => Err("a chunk line is too long"),
        Some(lf) => {
            let line = buf.split_to(lf - 1);
            let _ = buf.split_to(2);
            Ok(Line::Done(line))
        }
        // The CRLF may still come: a CR at the very end is not yet a line's content.
        None if buf.len().saturating_sub(1) > max => Err("a chunk line is too long"),
        None => Ok(Line::More { scanned: buf.len() }),
    }
}

fn memchr_lf(hay: &[u8]) -> Option<usize> {
    hay.iter().position(|b| *b == b'\n')
}

/// A chunk-size line (without its CRLF): the size, once its extensions are found valid.
pub fn parse_size_line(line: &[u8]) -> Result<u64, &'static str> {
    const BAD: &str = "a chunk size is invalid";
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > MAX_SIZE_DIGITS {
        return Err(BAD);
    }
    let size = line[..digits].iter().fold(0u64, |n, d| (n << 4) | u64::from(hex_value(*d)));
    extensions(&line[digits..]).ok_or("a chunk extension is invalid")?;
    Ok(size)
}

fn hex_value(d: u8) -> u8 {
    match d {
        b'0'..=b'9' => d - b'0',
        b'a'..=b'f' => d - b'a' + 10,
        b'A'..=b'F' => d - b'A' + 10,
        _ => 0,
    }
}

/// `*( BWS ";" BWS name [ BWS "=" BWS value ] )`, and nothing after it.
fn extensions(mut rest: &[u8]) -> Option<()> {
    while !rest.is_empty() {
        rest = skip_ws(rest).strip_prefix(b";")?;
        let (name, after) = token(skip_ws(rest));
        if name.is_empty() {
            return None;
        }
        rest = after;
        let value_start = skip_ws(rest);
        if let Some(value) = value_start.strip_prefix(b"=") {
            rest = ext_value(skip_ws(value))?;
        }
    }
    Some(())
}

fn skip_ws(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|b| matches!(b, b' ' | b'\t')).count();
    &s[n..]
}

/// A token at the front of `s`, and what follows it.
fn token(s: &[u8]) -> (&[u8], &[u8]) {
    let n = s.iter().take_while(|b| is_tchar(**b)).count();
    s.split_at(n)
}

/// A token or a quoted string at the front of `s`; what follows it.
fn ext_value(s: &[u8]) -> Option<&[u8]> {
    let Some(quoted) = s.strip_prefix(b"\"") else {
        let (value, rest) = token(s);
        return (!value.is_empty()).then_some(rest);
    };
    let mut i = 0;
    while i < quoted.len() {
        match quoted[i] {
            b'"' => return Some(&quoted[i + 1..]),
            b'\\' => {
                let escaped = *quoted.get(i + 1)?;
                if !(escaped == b'\t' || escaped == b' ' || is_visible(escaped)) {
                    return None;
                }
                i += 2;
            }
            b if b == b'\t' || b == b' ' || is_visible(b) => i += 1,
            _ => return None,
        }
    }
    None
}

/// VCHAR or obs-text.
fn is_visible(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) || b >= 0x80
}

/// A `tchar` of RFC 9110 §5.6.2.
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A trailer field line (without its CRLF): `token ":" OWS value OWS`, where the value has
/// no control character but HTAB. Continuation lines (obs-fold) are refused.
pub fn check_field_line(line: &[u8]) -> Result<(), &'static str> {
    const BAD: &str = "a trailer field is malformed";
    let (name, rest) = token(line);
    let value = rest.strip_prefix(b":").ok_or(BAD)?;
    if name.is_empty() || !value.iter().all(|b| *b == b'\t' || *b == b' ' || is_visible(*b)) {
        return Err(BAD);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_lines_follow_the_grammar_exactly() {
        let ok: [(&[u8], u64); 10] = [
            (b"0", 0),
            (b"1aF", 0x1af),
            (b"000000000000010", 16),
            (b"10;name=value", 16),
            (b"10 ; name = value", 16),
            (b"5;a;b=c;d=\"q;\\\"x\"", 5),
            (b"5;a=\"\"", 5),
            (b"5;\tname", 5),
            (b"fffffffffffffff", 0xfff_ffff_ffff_ffff),
            (b"5;a=b ;c", 5),
        ];
        for (line, size) in ok {
            assert_eq!(parse_size_line(line), Ok(size), "{}", String::from_utf8_lossy(line));
        }
        let bad: [&[u8]; 20] = [
            b"",
            b" 5",
            b"5 ",
            b"5\t",
            b"5\x0c",
            b"5;",
            b"5;a=",
            b"5;=b",
            b"5;a b",
            b"5;a=\"unterminated",
            b"5;a=\"bad\rquote\"",
            b"5;a=b c",
            b"5 a",
            b"+5",
            b"0x5",
            b"5;a=b;",
            b"5;a ",
            b"g",
            b"1000000000000000",
            b"5\r",
        ];
        for line in bad {
            assert!(parse_size_line(line).is_err(), "{}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn lines_end_in_crlf_only_and_are_searched_once() {
        let mut buf = BytesMut::from(&b"5;a=b\r\nrest"[..]);
        assert_eq!(take_line(&mut buf, 0, 100), Ok(Line::Done(BytesMut::from(&b"5;a=b"[..]))));
        assert_eq!(&buf[..], b"rest");
        assert!(take_line(&mut BytesMut::from(&b"2f\nx"[..]), 0, 100).is_err(), "bare LF");
        assert!(take_line(&mut BytesMut::from(&b"\n"[..]), 0, 100).is_err(), "bare LF first");
        let mut partial = BytesMut::from(&b"abc\r"[..]);
        assert_eq!(take_line(&mut partial, 0, 3), Ok(Line::More { scanned: 4 }));
        partial.extend_from_slice(b"\n");
        assert_eq!(take_line(&mut partial, 4, 3), Ok(Line::Done(BytesMut::from(&b"abc"[..]))));
        assert!(take_line(&mut BytesMut::from(&b"abcde"[..]), 0, 3).is_err(), "too long, no end yet");
        assert!(take_line(&mut BytesMut::from(&b"abcd\r\n"[..]), 0, 3).is_err(), "too long");
    }

    #[test]
    fn trailer_lines_are_field_lines() {
        for ok in [&b"Expires: never"[..], b"x:", b"x: a\tb ", b"x:\xff"] {
            assert_eq!(check_field_line(ok), Ok(()), "{}", String::from_utf8_lossy(ok));
        }
        for bad in [&b" folded: x"[..], b"\tx: y", b"no colon", b": anon", b"x y: z", b"x: a\x00b", b"x: a\rb"] {
            assert!(check_field_line(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
