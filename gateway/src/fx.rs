//! The hash of the router's, the snapshot's and the upstream pool's tables: the Fx hash.

use std::hash::{BuildHasherDefault, Hasher};

/// Builds [`FxHasher`]s.
pub(crate) type FxBuildHasher = BuildHasherDefault<FxHasher>;

/// The Fx hash (rustc's): a few cycles per word instead of SipHash's tens. Not DoS-resistant,
/// which is fine here: the keys are the admin's route segments and host names, and a request
/// only probes the table, so a client cannot fill a bucket.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FxHasher(u64);

const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

/// The last 0–7 bytes as a little-endian word, zero-padded: read in 4-, 2- and 1-byte
/// pieces, since copying them into a buffer costs a `memcpy` call per hash.
fn tail_word(rest: &[u8]) -> u64 {
    let (mut word, mut shift, mut rest) = (0, 0, rest);
    if let Some((four, more)) = rest.split_first_chunk::<4>() {
        (word, shift, rest) = (u64::from(u32::from_le_bytes(*four)), 32, more);
    }
    if let Some((two, more)) = rest.split_first_chunk::<2>() {
        (word, shift, rest) = (word | u64::from(u16::from_le_bytes(*two)) << shift, shift + 16, more);
    }
    match rest.first() {
        Some(byte) => word | u64::from(*byte) << shift,
        None => word,
    }
}

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(FX_SEED);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        self.add(tail_word(rest) ^ rest.len() as u64);
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    /// The multiply mixes each word only into the bits above it; the rotation brings the
    /// well-mixed high bits down to where the table takes its bucket index.
    fn finish(&self) -> u64 {
        self.0.rotate_left(26)
    }
}

#[cfg(test)]
mod tests {
    use super::tail_word;

    #[test]
    fn tail_word_packs_bytes_little_endian() {
        let bytes = [1u8, 2, 3, 4, 5, 6, 7];
        for len in 0..=7 {
            let mut padded = [0u8; 8];
            padded[..len].copy_from_slice(&bytes[..len]);
            assert_eq!(tail_word(&bytes[..len]), u64::from_le_bytes(padded), "{len}");
        }
    }
}
