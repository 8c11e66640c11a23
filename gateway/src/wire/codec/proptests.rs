//! Property tests of the codec (bounded: a few hundred cases each, well under a second):
//! chunk-size lines against `httparse`, and the body decoder against its own input split
//! every way. The fuzz targets in `gateway/fuzz` go further (see `docs/fuzzing.md`).

use std::cell::Cell;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use super::pieces::{Outcome, decode_in_pieces as run};
use super::*;

const CASES: u32 = 256;

fn config() -> Config {
    Config { cases: CASES, failure_persistence: None, ..Config::default() }
}

// ---- Generators ------------------------------------------------------------------------

const TCHARS: &[u8] = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

fn token() -> impl Strategy<Value = Vec<u8>> {
    vec(prop::sample::select(TCHARS), 1..8)
}

/// Bad whitespace: nothing most of the time, else spaces and tabs.
fn bws() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![4 => Just(Vec::new()), 1 => vec(prop::sample::select(&b" \t"[..]), 1..3)]
}

/// A quoted string: visible characters, spaces, obs-text and escapes.
fn quoted() -> impl Strategy<Value = Vec<u8>> {
    let qdtext = prop_oneof![
        4 => prop::sample::select(&b"abc =;,\t"[..]).prop_map(|b| vec![b]),
        1 => (0x80u8..=0xff).prop_map(|b| vec![b]),
        1 => prop::sample::select(&b"\"\\a; "[..]).prop_map(|b| vec![b'\\', b]),
    ];
    vec(qdtext, 0..6).prop_map(|parts| [&b"\""[..], &parts.concat(), b"\""].concat())
}

/// One chunk extension: `BWS ";" BWS name [BWS "=" BWS (token / quoted-string)]`.
fn extension() -> impl Strategy<Value = Vec<u8>> {
    let value = prop_oneof![token(), quoted()];
    (bws(), bws(), token(), prop::option::of((bws(), bws(), value))).prop_map(|(w1, w2, name, value)| {
        let mut ext = [w1, b";".to_vec(), w2, name].concat();
        if let Some((w3, w4, v)) = value {
            ext.extend([w3, b"=".to_vec(), w4, v].concat());
        }
        ext
    })
}

/// A chunk size written `digits` wide (leading zeros), hex digits in either case.
fn hex(size: u64, digits: usize, upper: bool) -> Vec<u8> {
    let s = if upper { format!("{size:0digits$X}") } else { format!("{size:0digits$x}") };
    s.into_bytes()
}

/// A valid chunk-size line (without its CRLF) for `size`.
fn size_line(size: u64) -> impl Strategy<Value = Vec<u8>> {
    let min = format!("{size:x}").len();
    (min..=15usize.max(min), any::<bool>(), vec(extension(), 0..3))
        .prop_map(move |(digits, upper, exts)| [hex(size, digits, upper), exts.concat()].concat())
}

/// A change to a byte string: replace, insert or remove one byte, at a position given
/// as a fraction of its length.
#[derive(Debug, Clone)]
enum Corruption {
    Set(prop::sample::Index, u8),
    Insert(prop::sample::Index, u8),
    Remove(prop::sample::Index),
}

/// Bytes that matter to the grammar, more often than the rest.
fn interesting_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        3 => prop::sample::select(&b"\r\n \t;=\"\\:0aF,xg\x00\x7f\xff"[..]),
        1 => any::<u8>(),
    ]
}

fn corruption() -> impl Strategy<Value = Corruption> {
    prop_oneof![
        (any::<prop::sample::Index>(), interesting_byte()).prop_map(|(i, b)| Corruption::Set(i, b)),
        (any::<prop::sample::Index>(), interesting_byte()).prop_map(|(i, b)| Corruption::Insert(i, b)),
        any::<prop::sample::Index>().prop_map(Corruption::Remove),
    ]
}

fn corrupt(mut bytes: Vec<u8>, how: &Corruption) -> Vec<u8> {
    match how {
        Corruption::Set(i, b) if !bytes.is_empty() => {
            let i = i.index(bytes.len());
            bytes[i] = *b;
        }
        Corruption::Insert(i, b) => bytes.insert(i.index(bytes.len() + 1), *b),
        Corruption::Remove(i) if !bytes.is_empty() => {
            bytes.remove(i.index(bytes.len()));
        }
        _ => {}
    }
    bytes
}

/// A chunk-size line from the grammar, or from a mistake near it: both paths get hit.
fn any_size_line() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        // Valid, possibly with 16 digits (one more than allowed).
        3 => any::<u64>().prop_map(|n| n >> (4 * (n % 16))).prop_flat_map(size_line),
        // Valid, then one byte changed, added or removed.
        3 => (any::<u32>(), corruption()).prop_flat_map(|(size, how)| {
            size_line(u64::from(size)).prop_map(move |line| corrupt(line, &how))
        }),
        // Pieces of the grammar in any order.
        2 => vec(prop_oneof![
            vec(prop::sample::select(&b"0123456789abcdefABCDEF"[..]), 1..4),
            bws(),
            Just(b";".to_vec()),
            Just(b"=".to_vec()),
            token(),
            quoted(),
        ], 1..6).prop_map(|parts| parts.concat()),
        // Anything (no line end: the line is what precedes it).
        1 => vec(any::<u8>().prop_filter("no LF", |b| *b != b'\n'), 0..12),
    ]
}

/// A valid chunked body of `chunks` (each non-empty), with extensions and trailers.
fn chunked_body() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    let chunk = vec(any::<u8>(), 1..40).prop_flat_map(|data| {
        size_line(data.len() as u64).prop_map(move |line| [line, b"\r\n".to_vec(), data.clone(), b"\r\n".to_vec()])
    });
    let field_value = vec(prop_oneof![prop::sample::select(&b"abc \t:;\""[..]), 0x80u8..=0xff], 0..10);
    let trailer = (token(), bws(), field_value).prop_map(|(name, ws, value)| [name, b":".to_vec(), ws, value].concat());
    (vec(chunk, 0..5), size_line(0), vec(trailer, 0..3)).prop_map(|(chunks, last, trailers)| {
        let data: Vec<u8> = chunks.iter().map(|c| c[2].clone()).collect::<Vec<_>>().concat();
        let mut body: Vec<u8> = chunks.concat().concat();
        body.extend([last, b"\r\n".to_vec()].concat());
        for t in trailers {
            body.extend([t, b"\r\n".to_vec()].concat());
        }
        body.extend_from_slice(b"\r\n");
        (body, data)
    })
}

/// Where to cut an input of any length: each cut a fraction of it.
fn cuts() -> impl Strategy<Value = Vec<prop::sample::Index>> {
    vec(any::<prop::sample::Index>(), 0..8)
}

// ---- Running the decoder ---------------------------------------------------------------

/// The input cut at `cuts` (fractions of its length), sorted.
fn ends(input: &[u8], cuts: &[prop::sample::Index]) -> Vec<usize> {
    let mut ends: Vec<usize> = cuts.iter().map(|c| c.index(input.len() + 1)).collect();
    ends.sort_unstable();
    ends
}

/// Every way of feeding `input` gives the same outcome as feeding it whole; returns it.
fn same_every_way(start: Decode, input: &[u8], cuts: &[prop::sample::Index]) -> Result<Outcome, TestCaseError> {
    let whole = run(start, input, &[]);
    let bytewise: Vec<usize> = (1..input.len()).collect();
    prop_assert_eq!(&run(start, input, &bytewise), &whole, "byte by byte");
    prop_assert_eq!(&run(start, input, &ends(input, cuts)), &whole, "split at {:?}", ends(input, cuts));
    Ok(whole)
}

// ---- Properties ------------------------------------------------------------------------

/// Ours is stricter than `httparse`, never looser: a chunk-size line we accept, it accepts
/// with the same size. Both outcomes must be common, or the test proves nothing.
#[test]
fn size_lines_we_accept_httparse_accepts_with_the_same_size() {
    let (accepted, refused) = (Cell::new(0u32), Cell::new(0u32));
    let mut runner = TestRunner::new(config());
    let result = runner.run(&any_size_line(), |line| {
        let Ok(size) = chunk::parse_size_line(&line) else {
            refused.set(refused.get() + 1);
            return Ok(());
        };
        accepted.set(accepted.get() + 1);
        let crlf = [&line[..], b"\r\n"].concat();
        prop_assert_eq!(
            httparse::parse_chunk_size(&crlf),
            Ok(httparse::Status::Complete((crlf.len(), size))),
            "{:?}",
            String::from_utf8_lossy(&line)
        );
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let (accepted, refused) = (accepted.get(), refused.get());
    assert!(accepted >= CASES / 5 && refused >= CASES / 5, "accepted {accepted}, refused {refused}");
}

proptest! {
    #![proptest_config(config())]

    /// A valid chunked body, with what follows it, decodes to its data and stops at its
    /// end, however it arrives.
    #[test]
    fn valid_bodies_decode_alike_however_split(
        (body, data) in chunked_body(),
        next in vec(any::<u8>(), 0..8),
        cuts in cuts(),
    ) {
        let input = [&body[..], &next].concat();
        let out = same_every_way(Decode::CHUNKED, &input, &cuts)?;
        prop_assert_eq!(out, Outcome { data, end: Ok(Decode::Done), left: next, complete_at_eof: true });
    }

    /// A body with a byte changed, added or removed decodes the same however it arrives.
    #[test]
    fn corrupted_bodies_decode_alike_however_split(
        (body, _) in chunked_body(),
        how in vec(corruption(), 1..3),
        cuts in cuts(),
    ) {
        let input = how.iter().fold(body, corrupt);
        same_every_way(Decode::CHUNKED, &input, &cuts)?;
    }

    /// Random data, in random chunks written by the codec's own encoder (or with leading
    /// zeros and upper-case digits), decodes to exactly that data.
    #[test]
    fn chunked_encodings_decode_to_their_data(
        data in vec(any::<u8>(), 0..600),
        cuts in cuts(),
        padded in any::<bool>(),
    ) {
        let mut input = Vec::new();
        let mut from = 0;
        for end in ends(&data, &cuts).into_iter().chain([data.len()]) {
            if padded && end > from {
                input.extend([hex((end - from) as u64, 8, true), b"\r\n".to_vec()].concat());
                put(&mut input, &[&data[from..end], b"\r\n"]);
            } else {
                put_chunk(&mut input, &data[from..end], true);
            }
            from = end;
        }
        input.extend_from_slice(b"0\r\n\r\n");
        let out = same_every_way(Decode::CHUNKED, &input, &cuts)?;
        prop_assert_eq!(out, Outcome { data, end: Ok(Decode::Done), left: Vec::new(), complete_at_eof: true });
    }

    /// A length-delimited body gives exactly its length, however it arrives.
    #[test]
    fn length_bodies_give_their_length(input in vec(any::<u8>(), 0..200), n in 0u64..300, cuts in cuts()) {
        let out = same_every_way(Decode::Length(n), &input, &cuts)?;
        let took = input.len().min(n as usize);
        prop_assert_eq!(&out.data[..], &input[..took]);
        prop_assert_eq!(out.complete_at_eof, took as u64 == n);
    }
}
