//! Upstream response heads, parsed as the upstream codec does. Input: a byte whose low bit
//! says the request was `HEAD`, then the bytes from the upstream.
//!
//! Checks: no panic; a head takes no more bytes than it has, parses the same from exactly
//! those bytes, and is incomplete one byte short; the fields kept for the client are
//! well-formed `name: value` lines (they re-parse as a head) with no hop-by-hop field (but
//! after `101`) and no `Content-Length` beside a transfer coding; the framing follows the
//! head (`HEAD`, 1xx, 204 and 304 have no body; chunked only with `Transfer-Encoding`; a
//! length only from `Content-Length`); a body read until close never keeps the connection.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_gateway::fuzzing::{self, Field, Framing};

fuzz_target!(|input: &[u8]| {
    let Some((&flags, bytes)) = input.split_first() else { return };
    let head_request = flags & 1 == 1;
    let Ok(Some(head)) = fuzzing::response_head(bytes, head_request) else { return };
    let len = head.consumed;
    assert!(len > 0 && len <= bytes.len());
    let again = fuzzing::response_head(&bytes[..len], head_request);
    let again = again.ok().flatten().expect("the head alone parses");
    assert_eq!((again.status, again.framing, again.keep_alive), (head.status, head.framing, head.keep_alive));
    assert_eq!(again.block, head.block);
    assert!(matches!(fuzzing::response_head(&bytes[..len - 1], head_request), Ok(None)), "one byte short");

    // The fields as received, for comparison.
    let mut fields = [httparse::EMPTY_HEADER; 100];
    let mut res = httparse::Response::new(&mut fields);
    assert!(matches!(res.parse(&bytes[..len]), Ok(httparse::Status::Complete(n)) if n == len));
    let has = |name: &str| res.headers.iter().any(|f| f.name.eq_ignore_ascii_case(name));

    // The kept fields re-parse, and leave out what must not reach the client.
    let reparse = [&b"HTTP/1.1 200 OK\r\n"[..], &head.block, b"\r\n"].concat();
    let mut kept = [httparse::EMPTY_HEADER; 100];
    let mut out = httparse::Response::new(&mut kept);
    assert!(matches!(out.parse(&reparse), Ok(httparse::Status::Complete(_))), "the kept fields are malformed");
    assert!(out.headers.len() <= res.headers.len());
    for f in out.headers.iter() {
        let field = Field::of(f.name.as_bytes());
        assert!(head.status == 101 || !field.is_hop_by_hop(), "hop-by-hop {} kept", f.name);
        if has("transfer-encoding") && head.status != 101 {
            assert!(field != Field::ContentLength, "Content-Length kept beside Transfer-Encoding");
        }
    }

    let no_body = head_request || (100..200).contains(&head.status) || head.status == 204 || head.status == 304;
    match head.framing {
        Framing::Chunked => assert!(!no_body && has("transfer-encoding")),
        Framing::Length(n) => assert!(!no_body && n > 0 && has("content-length") && !has("transfer-encoding")),
        Framing::UntilClose => assert!(!no_body && !head.keep_alive && !has("transfer-encoding")),
        Framing::None => {}
    }
});
