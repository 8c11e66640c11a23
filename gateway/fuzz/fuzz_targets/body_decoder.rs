//! The body decoder (`Decode`) on arbitrary bytes, fed whole, byte by byte and cut at
//! points the input chooses. Input: a mode byte (low 2 bits: 0-1 chunked, 2 length, 3 until
//! close; bits 2-4: how many cut bytes follow), then for a length body its length (2 bytes,
//! big-endian), the cut bytes (each a fraction of the body's length), then the body.
//!
//! Checks: no panic; the same outcome (data, end state or failure, bytes left, end of
//! stream) every way; no more data out than bytes in, and a length body gives exactly its
//! length; a failed decoder stays failed; a chunked body the decoder completes decodes to
//! the same data, ending at the same byte, with `httparse`'s looser chunk-size parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_gateway::fuzzing::{Decode, Outcome, decode_in_pieces};

/// The decoder fed in pieces ending at `ends`; the facade asserts the per-run invariants
/// (no empty frame, failed stays failed, no more data out than bytes in).
fn run(start: Decode, input: &[u8], ends: &[usize]) -> Outcome {
    let out = decode_in_pieces(start, input, ends);
    if out.end.is_err() {
        assert!(!out.complete_at_eof, "a failed decoder completes at end of stream");
    }
    out
}

/// A chunked decoder as loose as `httparse` (any extension bytes, whitespace after the
/// size, 16 digits): the data and the length of the body, if it is complete.
fn reference_chunked(mut input: &[u8]) -> Option<(Vec<u8>, usize)> {
    let total = input.len();
    let mut data = Vec::new();
    loop {
        let httparse::Status::Complete((at, size)) = httparse::parse_chunk_size(input).ok()? else {
            return None;
        };
        input = &input[at..];
        if size == 0 {
            break;
        }
        let size = usize::try_from(size).ok()?;
        data.extend_from_slice(input.get(..size)?);
        input = input[size..].strip_prefix(b"\r\n")?;
    }
    // Trailer lines, up to an empty one.
    loop {
        let lf = input.iter().position(|b| *b == b'\n')?;
        let line = input[..lf].strip_suffix(b"\r")?;
        input = &input[lf + 1..];
        if line.is_empty() {
            return Some((data, total - input.len()));
        }
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&mode, mut rest)) = input.split_first() else { return };
    let start = match mode & 3 {
        0 | 1 => Decode::CHUNKED,
        2 => {
            let Some((n, after)) = rest.split_first_chunk::<2>() else { return };
            rest = after;
            Decode::Length(u64::from(u16::from_be_bytes(*n)))
        }
        _ => Decode::UntilClose,
    };
    let cuts = usize::from(mode >> 2 & 7).min(rest.len());
    let (cuts, body) = rest.split_at(cuts);
    let mut ends: Vec<usize> = cuts.iter().map(|c| usize::from(*c) * body.len() / 255).collect();
    ends.sort_unstable();

    let whole = run(start, body, &[]);
    assert_eq!(run(start, body, &ends), whole, "cut at {ends:?}");
    let bytewise: Vec<usize> = (1..body.len()).collect();
    assert_eq!(run(start, body, &bytewise), whole, "byte by byte");

    match start {
        Decode::Length(n) => {
            let took = body.len().min(n as usize);
            assert_eq!(whole.data, body[..took]);
            assert_eq!(whole.end == Ok(Decode::Done), took as u64 == n);
        }
        Decode::UntilClose => assert_eq!(whole.data, body),
        _ if whole.end == Ok(Decode::Done) => {
            let Some((data, len)) = reference_chunked(body) else {
                panic!("a body httparse cannot read was decoded to the end");
            };
            assert_eq!(whole.data, data, "httparse reads other data");
            assert_eq!(body.len() - whole.left.len(), len, "httparse ends the body elsewhere");
        }
        _ => {}
    }
});
