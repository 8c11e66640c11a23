//! A body decoder fed in pieces, as a connection would: shared by the codec's tests, its
//! property tests and the fuzz targets (through `crate::fuzzing`).

use bytes::BytesMut;

use super::{Decode, Step};

/// Everything a decoder run shows: the data it gave, how it stopped (its state, or that it
/// failed), the bytes left in its buffer, and what end of stream would make of it.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    pub data: Vec<u8>,
    pub end: Result<Decode, ()>,
    pub left: Vec<u8>,
    pub complete_at_eof: bool,
}

/// Feeds `input` to a decoder in pieces ending at `ends` (sorted offsets), stepping until it
/// asks for more after each, as a connection reading the pieces would. It asserts what must
/// hold of every run (no empty data frame, a failed decoder stays failed, no more data out
/// than bytes in): for the fuzz targets and tests, never for traffic.
pub fn decode_in_pieces(start: Decode, input: &[u8], ends: &[usize]) -> Outcome {
    let mut state = start;
    let mut buf = BytesMut::new();
    let mut data = Vec::new();
    let mut from = 0;
    let ends = ends.iter().copied().chain([input.len()]);
    'feed: for end in ends {
        buf.extend_from_slice(&input[from..end]);
        from = end;
        loop {
            match state.step(&mut buf) {
                Ok(Step::Data(d)) => {
                    assert!(!d.is_empty(), "an empty data frame");
                    data.extend_from_slice(&d);
                }
                Ok(Step::More) => break,
                Ok(Step::Done) => break 'feed,
                Err(_) => {
                    assert_eq!(state, Decode::Failed, "an error leaves the decoder failed");
                    assert!(state.step(&mut BytesMut::from(&b"0\r\n\r\n"[..])).is_err(), "failed stays failed");
                    break 'feed;
                }
            }
        }
    }
    assert!(data.len() <= input.len(), "more data out than bytes in");
    // The rest arrives too (the next message, on a connection that goes on).
    buf.extend_from_slice(&input[from..]);
    let end = if state == Decode::Failed { Err(()) } else { Ok(state) };
    // What end of stream would make of it, on a copy (the outcome keeps the state).
    let complete_at_eof = state.at_eof();
    Outcome { data, end, left: buf.to_vec(), complete_at_eof }
}
