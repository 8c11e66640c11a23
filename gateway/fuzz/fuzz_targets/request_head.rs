//! Request heads as the server reads them: `httparse`, then each field classified
//! (`Field::of`) and noted (`Seen::note`), then the body that framing implies, decoded.
//!
//! Checks: no panic; what `Seen` records, and so the server's framing decision rests on,
//! matches a plain reading of the fields: one `Transfer-Encoding` field whose only coding
//! is `chunked` and nothing else counts as chunked; `Content-Length` is a length only
//! when it is one field of 1-19 digits, and is otherwise flagged bad; `Host` fields are
//! counted; `Connection` tokens and `Expect: 100-continue` are seen as written.
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
