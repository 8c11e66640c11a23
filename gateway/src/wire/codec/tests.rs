//! The codec's framing at its boundaries: whole, byte by byte, split everywhere.

use super::pieces::{Outcome, decode_in_pieces};
use super::*;

fn decode_all(mut state: Decode, input: &[u8]) -> Result<(Vec<u8>, Decode, usize), &'static str> {
    let mut buf = BytesMut::from(input);
    let mut out = Vec::new();
    loop {
        match state.step(&mut buf)? {
            Step::Data(d) => out.extend_from_slice(&d),
            Step::More | Step::Done => return Ok((out, state, buf.len())),
        }
    }
}

#[test]
fn chunk_sizes_and_lengths_parse_strictly() {
    assert_eq!(parse_length(b"0012"), Some(12));
    assert_eq!(parse_length(b"+1"), None);
    assert_eq!(parse_length(b"99999999999999999999"), None, "overflow");
}

#[test]
fn chunked_bodies_decode_and_stop_at_their_end() -> Result<(), &'static str> {
    let (data, state, left) = decode_all(Decode::CHUNKED, b"3\r\nabc\r\na;x=y\r\n0123456789\r\n0\r\nT: v\r\n\r\nNEXT")?;
    assert_eq!((data.as_slice(), state, left), (&b"abc0123456789"[..], Decode::Done, 4));
    // Incomplete input asks for more, keeping its place.
    let (data, state, _) = decode_all(Decode::CHUNKED, b"5\r\nab")?;
    assert_eq!((data.as_slice(), state), (&b"ab"[..], Decode::ChunkData(3)));
    assert!(decode_all(Decode::CHUNKED, b"3\r\nabcXY").is_err(), "chunk without CRLF");
    assert!(decode_all(Decode::CHUNKED, &[b'1'; 5000]).is_err(), "endless size line");
    let (data, state, left) = decode_all(Decode::Length(3), b"abcdef")?;
    assert_eq!((data.as_slice(), state, left), (&b"abc"[..], Decode::Done, 3));
    Ok(())
}

#[test]
fn end_of_stream_completes_only_until_close_bodies() {
    assert!(Decode::UntilClose.at_eof());
    assert!(!Decode::Length(3).at_eof());
    let mut chunked = Decode::CHUNKED;
    assert!(!chunked.at_eof());
    let mut out = Vec::new();
    put_chunk(&mut out, &[b'x'; 300], true);
    assert!(out.starts_with(b"12c\r\nxx") && out.ends_with(b"x\r\n"));
}

#[test]
fn field_names_are_recognised_in_any_case() {
    let cases: [(&[u8], Field); 14] = [
        (b"Content-Length", Field::ContentLength),
        (b"TRANSFER-ENCODING", Field::TransferEncoding),
        (b"connection", Field::Connection),
        (b"Host", Field::Host),
        (b"te", Field::HopByHop),
        (b"Keep-Alive", Field::HopByHop),
        (b"Proxy-Authorization", Field::HopByHop),
        (b"upgrade", Field::Upgrade),
        (b"X-Request-Id", Field::GatewaySet),
        (b"RateLimit-Reset", Field::GatewaySet),
        (b"x-ratelimit-limit-minute", Field::GatewaySet),
        (b"ratelimit-", Field::Other),
        (b"x-hosts", Field::Other),
        (b"content-type", Field::Other),
    ];
    for (name, field) in cases {
        assert_eq!(Field::of(name), field, "{}", String::from_utf8_lossy(name));
    }
}

#[test]
fn transfer_codings_are_classified() {
    let seen = |values: &[&'static str]| {
        let mut s = Seen::default();
        values.iter().for_each(|v| s.note(Field::of(b"Transfer-Encoding"), v.as_bytes()));
        s.transfer
    };
    assert_eq!(seen(&["chunked"]), Some(Transfer::Chunked));
    assert_eq!(seen(&["Chunked "]), Some(Transfer::Chunked));
    assert_eq!(seen(&["gzip, chunked"]), Some(Transfer::ChunkedLast));
    assert_eq!(seen(&["gzip", "chunked"]), Some(Transfer::ChunkedLast));
    assert_eq!(seen(&["chunked, gzip"]), Some(Transfer::Other));
    assert_eq!(seen(&["gzip"]), Some(Transfer::Other));
    assert_eq!(seen(&[]), None);
}

/// Feeds `input` in pieces cut at `cuts` (ascending offsets), as a connection would.
fn decode_split(state: Decode, input: &[u8], cuts: &[usize]) -> Outcome {
    decode_in_pieces(state, input, cuts)
}

/// Every framing case: the input, and the body it decodes to (or `None`: refused).
const CASES: &[(&[u8], Option<&[u8]>)] = &[
    (b"3\r\nabc\r\n0\r\n\r\n", Some(b"abc")),
    (b"3;ext=1;b=\"q\\\"\"\r\nabc\r\n0;z\r\nT: v\r\nU:\tw \r\n\r\n", Some(b"abc")),
    (b"A\r\n0123456789\r\n1\r\nx\r\n00\r\n\r\n", Some(b"0123456789x")),
    (b"3\nabc\r\n0\r\n\r\n", None),
    (b"3\r\nabc\n0\r\n\r\n", None),
    (b"3\r\nabc\r\n0\r\n\n", None),
    (b"3 \r\nabc\r\n0\r\n\r\n", None),
    (b"3\x0c\r\nabc\r\n0\r\n\r\n", None),
    (b"3\r\nabcd\r\n0\r\n\r\n", None),
    (b"2f\nx\r\n0\r\n\r\nGET /INNER HTTP/1.1\r\n\r\n", None),
    (b"3\r\nabc\r\n0\r\n folded: x\r\n\r\n", None),
    (b"3\r\nabc\r\n0\r\nno-colon\r\n\r\n", None),
    (b"-1\r\n", None),
    (b"3\r\nabc\r\n0\r\nT: v\rw\r\n\r\n", None),
];

#[test]
fn every_framing_case_decodes_the_same_whole_byte_by_byte_and_split_anywhere() {
    for (input, body) in CASES {
        let name = String::from_utf8_lossy(input);
        let whole = decode_split(Decode::CHUNKED, input, &[]);
        let expect = |r: &Outcome| match body {
            Some(b) => r.end == Ok(Decode::Done) && r.data == *b,
            None => r.end.is_err(),
        };
        assert!(expect(&whole), "{name}: {whole:?}");
        let bytewise: Vec<usize> = (1..input.len()).collect();
        let r = decode_split(Decode::CHUNKED, input, &bytewise);
        assert!(expect(&r), "byte by byte, {name}: {r:?}");
        for cut in 1..input.len() {
            let r = decode_split(Decode::CHUNKED, input, &[cut]);
            assert!(expect(&r), "split at {cut}, {name}: {r:?}");
        }
    }
}

#[test]
fn a_failed_decoder_stays_failed() {
    let mut state = Decode::CHUNKED;
    let mut buf = BytesMut::from(&b"2f\nx\r\n0\r\n\r\n"[..]);
    assert!(state.step(&mut buf).is_err());
    assert_eq!(state, Decode::Failed);
    // What follows the broken line is never decoded as a body end (nor as anything else).
    let mut rest = BytesMut::from(&b"0\r\n\r\n"[..]);
    assert!(state.step(&mut rest).is_err());
    assert_eq!(state.remaining(), None);
    let mut cut = Decode::CHUNKED;
    assert!(!cut.at_eof());
    assert_eq!(cut, Decode::Failed);
}

#[test]
fn trailers_are_bounded_exactly_at_the_limit() {
    // One field line of n bytes takes n + 2 of the section.
    let line = |n: usize| {
        let mut l = b"x: ".to_vec();
        l.resize(n, b'a');
        l.extend_from_slice(b"\r\n");
        l
    };
    let body = |lines: &[Vec<u8>]| {
        let mut b = b"0\r\n".to_vec();
        lines.iter().for_each(|l| b.extend_from_slice(l));
        b.extend_from_slice(b"\r\n");
        b
    };
    let at_limit = body(&[line(MAX_TRAILERS - 2)]);
    assert_eq!(decode_split(Decode::CHUNKED, &at_limit, &[]).end, Ok(Decode::Done));
    let over = body(&[line(MAX_TRAILERS - 1)]);
    assert!(decode_split(Decode::CHUNKED, &over, &[]).end.is_err());
    // Two lines summing to the limit pass; one byte more fails on the second.
    let half = MAX_TRAILERS / 2;
    assert_eq!(decode_split(Decode::CHUNKED, &body(&[line(half - 2), line(half - 2)]), &[]).end, Ok(Decode::Done));
    assert!(decode_split(Decode::CHUNKED, &body(&[line(half - 2), line(half - 1)]), &[]).end.is_err());
    let many: Vec<Vec<u8>> = (0..=MAX_TRAILER_FIELDS).map(|_| line(4)).collect();
    assert!(decode_split(Decode::CHUNKED, &body(&many), &[]).end.is_err(), "too many fields");
    assert_eq!(decode_split(Decode::CHUNKED, &body(&many[1..]), &[]).end, Ok(Decode::Done));
}

#[test]
fn an_endless_trailer_line_after_a_full_section_fails_fast() {
    // The attack: a trailer line exactly filling the section, then a line that never ends.
    let mut state = Decode::CHUNKED;
    let mut buf = BytesMut::from(&b"0\r\n"[..]);
    let mut first = b"a: ".to_vec();
    first.resize(MAX_TRAILERS - 2, b'a');
    buf.extend_from_slice(&first);
    buf.extend_from_slice(b"\r\n");
    assert!(matches!(state.step(&mut buf), Ok(Step::More)));
    let mut fed = 0;
    let failed = loop {
        buf.extend_from_slice(&[b'a'; 1024]);
        fed += 1024;
        match state.step(&mut buf) {
            Ok(Step::More) if fed < 64 * 1024 => {}
            other => break other.is_err(),
        }
    };
    assert!(failed && fed <= 2048, "fed {fed} bytes");
}

#[test]
fn a_trickled_line_is_searched_once() {
    // 4 KiB of size-line arriving a byte at a time: each step looks at the new byte only,
    // which the saved offset shows.
    let mut state = Decode::CHUNKED;
    let mut buf = BytesMut::from(&b"1"[..]);
    for i in 1..MAX_CHUNK_LINE {
        assert!(matches!(state.step(&mut buf), Ok(Step::More)));
        assert_eq!(state, Decode::ChunkSize { scanned: short(i) });
        buf.extend_from_slice(b"0");
    }
}

#[test]
fn content_length_is_one_number_in_one_field() {
    let seen = |values: &[&'static str]| {
        let mut s = Seen::default();
        values.iter().for_each(|v| s.note(Field::ContentLength, v.as_bytes()));
        (s.length, s.bad_length.is_some())
    };
    assert_eq!(seen(&["5"]), (Some(5), false));
    assert!(seen(&["5, 5"]).1);
    assert!(seen(&["5", "5"]).1);
    assert!(seen(&["5", "6"]).1);
    assert!(seen(&[""]).1);
}

#[test]
fn transfer_coding_lists_with_empty_elements_are_unknown_codings() {
    let seen = |v: &'static str| {
        let mut s = Seen::default();
        s.note(Field::TransferEncoding, v.as_bytes());
        s.transfer
    };
    assert_eq!(seen("chunked,"), Some(Transfer::Other));
    assert_eq!(seen(", chunked"), Some(Transfer::Other));
    assert_eq!(seen("gzip,,chunked"), Some(Transfer::Other));
}
