//! Secrets at rest: values the database must hold but must not hold in clear (certificate
//! private keys) are sealed with AES-256-GCM under a key the operator gives every admin and
//! gateway process (`--secrets-key`, `TOLLGATE_SECRETS_KEY`). A sealed value names the key
//! that sealed it, so keys can be rotated: the new key seals, the old ones (listed in
//! `--secrets-old-keys`) still open, and `tollgate secrets rotate` reseals what the old
//! ones sealed. The associated data binds a sealed value to its row and column, so a
//! ciphertext copied to another row does not open.
//!
//! Format: `tg1:<key id, 16 hex digits>:<base64 of 12-byte nonce ‖ ciphertext ‖ tag>`; the
//! key id is the first 8 bytes of the key's SHA-256.

use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

/// Why a key or a sealed value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("a secrets key must be 32 bytes in base64 (generate one with `tollgate secrets generate-key`)")]
    BadKey,
    #[error("the value is not a sealed secret")]
    Malformed,
    #[error("the value was sealed with key {0}, which is not among the configured secrets keys")]
    UnknownKey(String),
    #[error("the sealed value does not open with its key (corrupted, or moved from another row)")]
    Corrupt,
    #[error("sealing failed")]
    Failed,
}

const PREFIX: &str = "tg1:";

struct Key {
    id: [u8; 8],
    key: LessSafeKey,
}

/// The secrets keys of a process: the first seals, all open.
pub struct Keyring {
    keys: Vec<Key>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring").field("keys", &self.keys.iter().map(|k| hex(&k.id)).collect::<Vec<_>>()).finish()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Keyring {
    /// The keyring of `current` (which seals) and `old` (which only open), each 32 bytes in
    /// base64; blank entries of `old` are skipped.
    pub fn new(current: &str, old: &[&str]) -> Result<Self, SealError> {
        let mut keys = vec![Self::key(current)?];
        for k in old.iter().map(|k| k.trim()).filter(|k| !k.is_empty()) {
            keys.push(Self::key(k)?);
        }
        Ok(Self { keys })
    }

    fn key(text: &str) -> Result<Key, SealError> {
        let raw = STANDARD.decode(text.trim()).map_err(|_| SealError::BadKey)?;
        if raw.len() != 32 {
            return Err(SealError::BadKey);
        }
        let digest = Sha256::digest(&raw);
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &raw).map_err(|_| SealError::BadKey)?);
        Ok(Key { id, key })
    }

    /// A new random key, in the form [`Keyring::new`] takes.
    pub fn generate_key() -> String {
        let mut raw = [0u8; 32];
        fill_random(&mut raw);
        STANDARD.encode(raw)
    }

    /// The id of the key that seals, as sealed values name it.
    pub fn current_id(&self) -> String {
        self.keys.first().map(|k| hex(&k.id)).unwrap_or_default()
    }

    /// Seals `plain` for the place `aad` names (e.g. `certificates.key:<id>`).
    pub fn seal(&self, plain: &[u8], aad: &[u8]) -> Result<String, SealError> {
        let key = self.keys.first().ok_or(SealError::Failed)?;
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce);
        let mut out = plain.to_vec();
        key.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut out)
            .map_err(|_| SealError::Failed)?;
        let mut blob = Vec::with_capacity(NONCE_LEN + out.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&out);
        Ok(format!("{PREFIX}{}:{}", hex(&key.id), STANDARD.encode(blob)))
    }

    /// Opens a value [`Keyring::seal`] sealed for `aad`.
    pub fn open(&self, sealed: &str, aad: &[u8]) -> Result<Vec<u8>, SealError> {
        let (id, blob) = split(sealed)?;
        let key = self.keys.iter().find(|k| hex(&k.id) == id).ok_or_else(|| SealError::UnknownKey(id.to_owned()))?;
        let mut blob = STANDARD.decode(blob).map_err(|_| SealError::Malformed)?;
        if blob.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(SealError::Malformed);
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&blob[..NONCE_LEN]);
        let plain = key
            .key
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut blob[NONCE_LEN..])
            .map_err(|_| SealError::Corrupt)?;
        Ok(plain.to_vec())
    }

    /// Whether `sealed` was sealed by the current key (else rotation reseals it).
    pub fn is_current(&self, sealed: &str) -> bool {
        split(sealed).is_ok_and(|(id, _)| id == self.current_id())
    }
}

fn split(sealed: &str) -> Result<(&str, &str), SealError> {
    let rest = sealed.strip_prefix(PREFIX).ok_or(SealError::Malformed)?;
    let (id, blob) = rest.split_once(':').ok_or(SealError::Malformed)?;
    if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(SealError::Malformed);
    }
    Ok((id, blob))
}

fn fill_random(buf: &mut [u8]) {
    use aws_lc_rs::rand::SecureRandom;
    // The system's random source failing is not something a process can go on without.
    if aws_lc_rs::rand::SystemRandom::new().fill(buf).is_err() {
        std::process::abort();
    }
}

/// The associated data of a certificate's private key.
pub fn certificate_key_aad(id: uuid::Uuid) -> Vec<u8> {
    format!("certificates.key:{id}").into_bytes()
}

/// The secrets inside an API's settings that are sealed at rest, by their place: every
/// `jwt.keys[].secret` (HMAC keys) and `introspection.client_secret`.
pub const JWT_SECRET: &str = "jwt.secret";
pub const INTROSPECTION_SECRET: &str = "introspection.client_secret";

/// Associated data of a secret of API `api` at `place` ([`JWT_SECRET`],
/// [`INTROSPECTION_SECRET`]): a value copied to another API or setting does not open.
pub fn api_secret_aad(api: uuid::Uuid, place: &str) -> Vec<u8> {
    format!("apis.{place}:{api}").into_bytes()
}

/// Whether a stored value is sealed; otherwise it is in clear (a DB-less file, or an admin
/// without a secrets key, wrote it).
pub fn is_sealed(value: &str) -> bool {
    value.starts_with(PREFIX)
}

/// Calls `f` with the place and value of each secret in an API's `jwt` and `introspection`
/// settings (JSON, as stored).
pub fn api_secrets(
    jwt: Option<&mut serde_json::Value>,
    introspection: Option<&mut serde_json::Value>,
    mut f: impl FnMut(&'static str, &mut String) -> Result<(), String>,
) -> Result<(), String> {
    if let Some(keys) = jwt.and_then(|j| j.get_mut("keys")).and_then(|k| k.as_array_mut()) {
        for key in keys {
            if let Some(serde_json::Value::String(secret)) = key.get_mut("secret") {
                f(JWT_SECRET, secret)?;
            }
        }
    }
    if let Some(serde_json::Value::String(secret)) = introspection.and_then(|i| i.get_mut("client_secret")) {
        f(INTROSPECTION_SECRET, secret)?;
    }
    Ok(())
}

/// Opens, in place, every sealed secret of API `api`'s settings (clear ones stay).
pub fn open_api_secrets(
    api: uuid::Uuid,
    jwt: Option<&mut serde_json::Value>,
    introspection: Option<&mut serde_json::Value>,
    keyring: Option<&Keyring>,
) -> Result<(), String> {
    api_secrets(jwt, introspection, |place, value| {
        if !is_sealed(value) {
            return Ok(());
        }
        let ring =
            keyring.ok_or_else(|| format!("{place} is sealed and this node has no secrets key (--secrets-key)"))?;
        let plain = ring.open(value, &api_secret_aad(api, place)).map_err(|e| format!("{place}: {e}"))?;
        *value = String::from_utf8(plain).map_err(|_| format!("{place}: not text once opened"))?;
        Ok(())
    })
}

#[cfg(test)]
mod api_secret_tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn api_secrets_open_only_for_their_api_and_place() -> Result<(), String> {
        let ring = Keyring::new(&Keyring::generate_key(), &[]).map_err(|e| e.to_string())?;
        let (api, other) = (uuid::Uuid::from_u128(1), uuid::Uuid::from_u128(2));
        let mut jwt = json!({"keys": [{"alg": "HS256", "secret": "aGVsbG8"}, {"alg": "RS256", "pem": "x"}]});
        let mut intro = json!({"url": "https://idp", "client_id": "gw", "client_secret": "s3cr3t"});
        api_secrets(Some(&mut jwt), Some(&mut intro), |place, v| {
            *v = ring.seal(v.as_bytes(), &api_secret_aad(api, place)).map_err(|e| e.to_string())?;
            Ok(())
        })?;
        assert!(is_sealed(jwt["keys"][0]["secret"].as_str().unwrap_or_default()));
        assert!(is_sealed(intro["client_secret"].as_str().unwrap_or_default()));
        assert_eq!(jwt["keys"][1]["pem"], "x", "public keys stay as they are");

        let (mut j, mut i) = (jwt.clone(), intro.clone());
        open_api_secrets(api, Some(&mut j), Some(&mut i), Some(&ring))?;
        assert_eq!((j["keys"][0]["secret"].clone(), i["client_secret"].clone()), (json!("aGVsbG8"), json!("s3cr3t")));
        let (mut j, mut i) = (jwt.clone(), intro.clone());
        assert!(open_api_secrets(other, Some(&mut j), Some(&mut i), Some(&ring)).is_err(), "copied to another API");
        let mut swapped = json!({"client_secret": jwt["keys"][0]["secret"].clone()});
        assert!(open_api_secrets(api, None, Some(&mut swapped), Some(&ring)).is_err(), "moved to another setting");
        assert!(open_api_secrets(api, Some(&mut jwt.clone()), None, None).is_err(), "no key, no secret");
        let mut clear = json!({"client_secret": "plain"});
        open_api_secrets(api, None, Some(&mut clear), None)?;
        assert_eq!(clear["client_secret"], "plain", "clear values (DB-less files) stay");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_place() {
        let (a, b) = (Keyring::generate_key(), Keyring::generate_key());
        let ring = Keyring::new(&a, &[]).unwrap();
        let sealed = ring.seal(b"private key", b"row-1").unwrap();
        assert!(sealed.starts_with("tg1:") && !sealed.contains("private"), "{sealed}");
        assert_eq!(ring.open(&sealed, b"row-1").unwrap(), b"private key");
        assert_eq!(ring.open(&sealed, b"row-2"), Err(SealError::Corrupt), "moved to another row");
        // Two seals of the same value differ (random nonce).
        assert_ne!(ring.seal(b"private key", b"row-1").unwrap(), sealed);
        // Another key does not open it and says which key it needs.
        let other = Keyring::new(&b, &[]).unwrap();
        assert!(matches!(other.open(&sealed, b"row-1"), Err(SealError::UnknownKey(id)) if id == ring.current_id()));
        // A flipped byte is caught.
        let mut bytes = sealed.clone().into_bytes();
        let last = bytes.len() - 3;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        assert!(ring.open(&String::from_utf8(bytes).unwrap(), b"row-1").is_err());
        for bad in ["", "tg1:", "tg1:zz:AAAA", "tg2:0011223344556677:AAAA", "tg1:0011223344556677:!!"] {
            assert!(ring.open(bad, b"row-1").is_err(), "{bad}");
        }
    }

    #[test]
    fn rotation_keeps_old_values_readable_and_reseals_with_the_new_key() {
        let (old, new) = (Keyring::generate_key(), Keyring::generate_key());
        let before = Keyring::new(&old, &[]).unwrap();
        let sealed = before.seal(b"k", b"x").unwrap();
        let after = Keyring::new(&new, &[&old, " "]).unwrap();
        assert!(!after.is_current(&sealed));
        assert_eq!(after.open(&sealed, b"x").unwrap(), b"k");
        let resealed = after.seal(b"k", b"x").unwrap();
        assert!(after.is_current(&resealed));
        assert!(before.open(&resealed, b"x").is_err());
    }

    #[test]
    fn keys_must_be_32_bytes_of_base64() {
        for bad in ["", "short", &STANDARD.encode([0u8; 16]), &STANDARD.encode([0u8; 33]), "not base64 !!"] {
            assert_eq!(Keyring::new(bad, &[]).err(), Some(SealError::BadKey), "{bad}");
        }
        let good = Keyring::generate_key();
        assert!(Keyring::new(&good, &["garbage"]).is_err(), "an old key is checked too");
        assert_eq!(format!("{:?}", Keyring::new(&good, &[]).unwrap()).matches(&good).count(), 0);
    }
}
