//! Request heads as the server reads them: `httparse`, then each field classified
//! (`Field::of`) and noted (`Seen::note`), then the body that framing implies, decoded.
//!
//! Checks: no panic; what `Seen` records, and so the server's framing decision rests on,
//! matches a plain reading of the fields: one `Transfer-Encoding` field whose only coding
//! is `chunked` and nothing else counts as chunked; `Content-Length` is a length only
//! when it is one field of 1-19 digits, and is otherwise flagged bad; `Host` fields are
//! counted; `Connection` tokens and `Expect: 100-continue` are seen as written. Then the
//! server's own decision (method, target, `Host`, framing) admits only what it promises:
//! an upper-case method other than CONNECT/TRACE, an origin- or absolute-form target, one
//! non-empty `Host` (HTTP/1.1), chunked only alone and without a length, a length only
//! alone and as one number.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_gateway::fuzzing::{self, Decode, Step, Transfer};

fn is(name: &[u8], known: &str) -> bool {
    name.eq_ignore_ascii_case(known.as_bytes())
}

fn trim(s: &[u8]) -> &[u8] {
    let s = &s[s.iter().take_while(|b| b" \t".contains(b)).count()..];
    &s[..s.len() - s.iter().rev().take_while(|b| b" \t".contains(b)).count()]
}

fn values<'a>(fields: &'a [(Vec<u8>, Vec<u8>)], name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
    fields.iter().filter(move |(n, _)| is(n, name)).map(|(_, v)| &v[..])
}

fuzz_target!(|input: &[u8]| {
    let Ok(Some(head)) = fuzzing::request_head(input) else { return };
    assert!(head.len <= input.len());
    let (seen, fields) = (&head.seen, &head.fields);

    // Transfer-Encoding: chunked only when it is the one coding of the one field.
    let te: Vec<&[u8]> = values(fields, "transfer-encoding").collect();
    let codings: Vec<&[u8]> = te.iter().flat_map(|v| v.split(|b| *b == b',')).map(trim).collect();
    assert_eq!(seen.transfer.is_some(), !te.is_empty());
    let chunked_alone = codings.len() == 1 && is(codings[0], "chunked");
    assert_eq!(seen.transfer == Some(Transfer::Chunked), chunked_alone, "{te:?}");
    if seen.transfer == Some(Transfer::ChunkedLast) {
        assert!(codings.last().is_some_and(|c| is(c, "chunked")), "{te:?}");
    }

    // Content-Length: one field, one decimal number.
    let cl: Vec<&[u8]> = values(fields, "content-length").collect();
    let number = |v: &[u8]| {
        let v = trim(v);
        let digits = !v.is_empty() && v.len() <= 19 && v.iter().all(u8::is_ascii_digit);
        digits.then(|| std::str::from_utf8(v).ok()?.parse::<u64>().ok()).flatten()
    };
    let length = if cl.len() == 1 { number(cl[0]) } else { None };
    assert_eq!(seen.length.filter(|_| seen.bad_length.is_none()), length, "{cl:?}");
    assert_eq!(seen.bad_length.is_some(), !cl.is_empty() && length.is_none(), "{cl:?}");

    assert_eq!(usize::from(seen.hosts), values(fields, "host").count().min(255));
    let tokens: Vec<&[u8]> = values(fields, "connection").flat_map(|v| v.split(|b| *b == b',')).map(trim).collect();
    assert_eq!(seen.close, tokens.iter().any(|t| is(t, "close")));
    assert_eq!(seen.keep_alive, tokens.iter().any(|t| is(t, "keep-alive")));
    let other = |t: &&[u8]| !t.is_empty() && !is(t, "close") && !is(t, "keep-alive");
    assert_eq!(seen.names_others, tokens.iter().any(other));
    assert_eq!(seen.expect_continue, values(fields, "expect").any(|v| is(v, "100-continue")));

    // The server's decision admits only what it promises.
    if let Ok(decided) = fuzzing::server_decision(&head) {
        let m = &head.method;
        assert!(!m.is_empty() && m.iter().all(|b| b.is_ascii_uppercase() || b"-_".contains(b)), "{m:?}");
        assert!(m != b"CONNECT" && m != b"TRACE");
        let t = &head.target;
        let scheme = |s: &[u8]| t.len() > s.len() && t[..s.len()].eq_ignore_ascii_case(s);
        assert!(t.starts_with(b"/") || scheme(b"http://") || scheme(b"https://"), "{t:?}");
        let hosts: Vec<&[u8]> = values(fields, "host").collect();
        assert!(hosts.len() <= 1 && hosts.iter().all(|h| !h.is_empty() && !h.contains(&b'/')), "{hosts:?}");
        if head.version == fuzzing::Version::HTTP_11 {
            assert_eq!(hosts.len(), 1);
        }
        match decided {
            Decode::Length(n) => assert!(te.is_empty() && length == Some(n) && n > 0),
            Decode::Done => assert!(te.is_empty() && length.unwrap_or(0) == 0 && seen.bad_length.is_none()),
            d => {
                assert!(d == Decode::CHUNKED && chunked_alone && cl.is_empty());
                assert_eq!(head.version, fuzzing::Version::HTTP_11);
            }
        }
    }

    // The body the framing implies (where the server would accept it), decoded.
    let mut state = match (seen.transfer, seen.length, seen.bad_length) {
        (Some(Transfer::Chunked), None, None) => Decode::CHUNKED,
        (None, Some(n), None) => Decode::Length(n),
        _ => return,
    };
    let mut body = bytes::BytesMut::from(&input[head.len..]);
    let mut out = 0;
    while let Ok(Step::Data(d)) = state.step(&mut body) {
        out += d.len();
    }
    assert!(out <= input.len() - head.len);
});
