//! The API-key format: `tg_`, 40 base62 characters of secret (238 bits), then 6 base62
//! characters of CRC-32 over everything before them. The prefix lets secret scanners spot a
//! leaked key; the checksum lets them (and the gateway) tell a key from a typo without a
//! lookup. Keys issued before the checksum existed (`tg_` + 43 base64url characters) have
//! a different length and are looked up as before.

/// Prefix of every API key.
pub const PREFIX: &str = "tg_";
/// Base62 characters of secret after the prefix.
pub const BODY_LEN: usize = 40;
/// Base62 characters of checksum at the end.
pub const CHECKSUM_LEN: usize = 6;
/// Length of a key in this format.
pub const KEY_LEN: usize = PREFIX.len() + BODY_LEN + CHECKSUM_LEN;

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A key built from `body` (exactly [`BODY_LEN`] base62 characters), or `None` when the body
/// is not that.
pub fn assemble(body: &str) -> Option<String> {
    if body.len() != BODY_LEN || !body.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    let mut key = String::with_capacity(KEY_LEN);
    key.push_str(PREFIX);
    key.push_str(body);
    let sum = checksum(key.as_bytes());
    key.extend(sum.iter().map(|&b| char::from(b)));
    Some(key)
}

/// The base62 character for `n % 62`.
pub fn base62_digit(n: u8) -> char {
    char::from(ALPHABET[usize::from(n % 62)])
}

/// Whether `key` has this format's shape (prefix, length, alphabet) but a checksum that does
/// not match: a mistyped or truncated-and-padded key, refused without a lookup.
pub fn is_mistyped(key: &[u8]) -> bool {
    if key.len() != KEY_LEN || !key.starts_with(PREFIX.as_bytes()) {
        return false;
    }
    let (head, sum) = key.split_at(KEY_LEN - CHECKSUM_LEN);
    if !key[PREFIX.len()..].iter().all(u8::is_ascii_alphanumeric) {
        return false;
    }
    checksum(head) != sum
}

/// CRC-32 of `head` in [`CHECKSUM_LEN`] base62 digits, most significant first.
fn checksum(head: &[u8]) -> [u8; CHECKSUM_LEN] {
    let mut n = crc32fast::hash(head);
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        // `n % 62` is below 62: the index is in range.
        *slot = ALPHABET[(n % 62) as usize];
        n /= 62;
    }
    out
}

/// A displayable API key prefix: the type prefix and six characters (base62, or base64url
/// for keys of the older format), as the admin's key listings show them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyPrefix([u8; KeyPrefix::LEN]);

impl KeyPrefix {
    /// `tg_` and six characters, as the admin's key listings show.
    pub const LEN: usize = PREFIX.len() + 6;

    /// The prefix of a presented key, when it looks like one of ours.
    pub fn of(key: &[u8]) -> Option<Self> {
        let head = key.get(..Self::LEN)?;
        let ok = head.starts_with(PREFIX.as_bytes())
            && head[PREFIX.len()..].iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
        ok.then(|| {
            let mut p = [0u8; Self::LEN];
            p.copy_from_slice(head);
            Self(p)
        })
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = "0123456789abcdefghijABCDEFGHIJklmnopqrst";

    #[test]
    fn assembled_keys_check_and_every_single_typo_is_caught() {
        let key = assemble(BODY).unwrap_or_default();
        assert_eq!(key.len(), KEY_LEN);
        assert!(key.starts_with("tg_0123"));
        assert!(!is_mistyped(key.as_bytes()));
        let bytes = key.as_bytes();
        for i in PREFIX.len()..bytes.len() {
            for c in ALPHABET.iter().filter(|&&c| c != bytes[i]) {
                let mut typo = bytes.to_vec();
                typo[i] = *c;
                assert!(is_mistyped(&typo), "a typo at {i} ({}) passed", char::from(*c));
            }
        }
        // Two neighbours swapped.
        let mut swapped = bytes.to_vec();
        swapped.swap(10, 11);
        assert!(is_mistyped(&swapped));
    }

    #[test]
    fn other_shapes_are_left_to_the_lookup() {
        assert!(!is_mistyped(b"tg_old-format-key-with-base64url_chars-0123456"));
        assert!(!is_mistyped(b"anything"));
        assert!(!is_mistyped(&[b'x'; KEY_LEN]));
        let mut other = assemble(BODY).unwrap_or_default().into_bytes();
        other[20] = b'-';
        assert!(!is_mistyped(&other), "not base62: not this format");
        assert_eq!(assemble("short"), None);
        assert_eq!(assemble(&"é".repeat(20)), None);
    }
}
