//! The binary encoding of one record of the last-known-good copy: fields in declaration
//! order, little-endian integers, `u32`-length-prefixed strings and sequences, a tag byte
//! for options, and JSON settings as a small tagged tree. No field names: the format
//! version (see [`super::binary`]) says which fields a record has.

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::config::model::{
    ApiDef, CertKey, CertificateBindingDef, CertificateDef, ConsumerDef, DeveloperDef, KeyDef, KeyHash, PlanDef,
    RouteDef, SubscriptionDef, TargetDef, TokenBindingDef,
};

/// Why a record could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("a record ends early")]
    Short,
    #[error("a record holds invalid text")]
    Utf8,
    #[error("a record holds an invalid tag {0}")]
    Tag(u8),
    #[error("a record holds an invalid number")]
    Number,
    #[error("a record nests settings deeper than {MAX_DEPTH} levels")]
    TooDeep,
}

/// Deepest nesting of JSON settings read back (the admin accepts far less).
const MAX_DEPTH: u32 = 64;

/// Reads fields from one record's bytes.
pub struct Dec<'a> {
    rest: &'a [u8],
    depth: u32,
}

impl<'a> Dec<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Dec { rest: bytes, depth: 0 }
    }

    /// Whether every byte was read.
    pub fn is_done(&self) -> bool {
        self.rest.is_empty()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.rest.len() < n {
            return Err(DecodeError::Short);
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// A length prefix, checked against what is left (each item takes at least a byte), so
    /// a corrupted length cannot make the reader allocate more than the record holds.
    fn len(&mut self) -> Result<usize, DecodeError> {
        let n = u32::from_le_bytes(self.array()?) as usize;
        if n > self.rest.len() { Err(DecodeError::Short) } else { Ok(n) }
    }

    fn tag(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }
}

/// A value that can be written to and read from a record.
pub trait Field: Sized {
    fn put(&self, out: &mut Vec<u8>);
    fn get(d: &mut Dec<'_>) -> Result<Self, DecodeError>;
}

fn put_len(out: &mut Vec<u8>, n: usize) {
    // Lengths come from in-memory strings and lists far below 4 GiB.
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
}

macro_rules! int_field {
    ($($t:ty),*) => {$(
        impl Field for $t {
            fn put(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn get(d: &mut Dec<'_>) -> Result<Self, DecodeError> {
                Ok(<$t>::from_le_bytes(d.array()?))
            }
        }
    )*};
}
int_field!(i32, i64);

impl Field for bool {
    fn put(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
    fn get(d: &mut Dec<'_>) -> Result<Self, DecodeError> {
        match d.tag()? {
            0 => Ok(false),
            1 => Ok(true),
            t => Err(DecodeError::Tag(t)),
        }
    }
}

impl Field for Uuid {
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
    fn get(d: &mut Dec<'_>) -> Result<Self, DecodeError> {
        Ok(Uuid::from_bytes(d.array()?))
    }
}

impl Field for KeyHash {
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0);
    }
    fn get(d: &mut Dec<'_>) -> Result<Self, DecodeError> {
        Ok(KeyHash(d.array()?))
    }
}

impl Field for String {
    fn put(&self, out: &mut Vec<u8>) {
        put_len(out, self.len());
        out.extend_from_slice(self.as_bytes());
    }
    fn get(d: &mut Dec<'_>) -> Result<Self, DecodeError> {
        let n = d.len()?;
        std::str::from_utf8(d.take(n)?).map(str::to_owned).map_err(|_| DecodeError::Utf8)
    }
}

impl<T: Field> Field for Option<T> {
    fn put(&self, out: &mut Vec<u8>) {
        match self {
            None => out.push(0),
            Some(v) => {
                out.push(1);
                v.put(out);
            }
        }
    }
    fn get(d: &mut Dec<'_>) -> Result<Self, DecodeError> {
        match d.tag()? {
            0 => Ok(None),
            1 => T::get(d).map(Some),
            t => Err(DecodeError::Tag(t)),
        }
    }
}

impl<T: Field> Field for Vec<T> {
    fn put(&self, out: &mut Vec<u8>) {
        put_len(out, self.len());
        self.iter().for_each(|v| v.put(out));
    }
    fn get(d: &mut Dec<'_>) -> Result<Self, DecodeError> {
        let n = d.len()?;
        (0..n).map(|_| T::get(d)).collect()
    }
}

impl<K: Field + Ord, V: Field> Field for BTreeMap<K, V> {
    fn put(&self, out: &mut Vec<u8>) {
        put_len(out, self.len());
        for (k, v) in self {
            k.put(out);
            v.put(out);
        }
    }
    fn get(d: &mut Dec<'_>) -> Result<Self, DecodeError> {
        let n = d.len()?;
        (0..n).map(|_| Ok((K::get(d)?, V::get(d)?))).collect()
    }
}

impl Field for serde_json::Value {
    fn put(&self, out: &mut Vec<u8>) {
        use serde_json::Value as J;
        match self {
            J::Null => out.push(0),
            J::Bool(b) => out.push(1 + u8::from(*b)),
            // Exactly as held: integers as integers, floats by their bits.
            J::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
                (Some(u), _, _) => {
                    out.push(3);
                    out.extend_from_slice(&u.to_le_bytes());
                }
                (None, Some(i), _) => {
                    out.push(7);
                    i.put(out);
                }
                (None, None, f) => {
                    out.push(8);
                    out.extend_from_slice(&f.unwrap_or(0.0).to_bits().to_le_bytes());
                }
            },
            J::String(s) => {
                out.push(4);
                s.put(out);
            }
            J::Array(items) => {
                out.push(5);
                items.put(out);
            }
            J::Object(map) => {
                out.push(6);
                put_len(out, map.len());
                for (k, v) in map {
                    k.put(out);
                    v.put(out);
                }
            }
        }
    }
    fn get(d: &mut Dec<'_>) -> Result<Self, DecodeError> {
        use serde_json::Value as J;
        d.depth += 1;
        if d.depth > MAX_DEPTH {
            return Err(DecodeError::TooDeep);
        }
        let value = match d.tag()? {
            0 => J::Null,
            1 => J::Bool(false),
            2 => J::Bool(true),
            3 => J::Number(u64::from_le_bytes(d.array()?).into()),
            7 => J::Number(i64::get(d)?.into()),
            8 => J::Number(
                serde_json::Number::from_f64(f64::from_bits(u64::from_le_bytes(d.array()?)))
                    .ok_or(DecodeError::Number)?,
            ),
            4 => J::String(String::get(d)?),
            5 => J::Array(Vec::get(d)?),
            6 => {
                let n = d.len()?;
                J::Object(
                    (0..n).map(|_| Ok((String::get(d)?, <J as Field>::get(d)?))).collect::<Result<_, DecodeError>>()?,
                )
            }
            t => return Err(DecodeError::Tag(t)),
        };
        d.depth -= 1;
        Ok(value)
    }
}

/// A row of a table of the copy: a [`Field`] with its id.
pub trait Row: Field {
    fn id(&self) -> Uuid;
}

/// Encodes every field of a struct in declaration order; the pattern without `..` makes
/// the build fail when a field is added to the model and not here. Fields after `later`
/// were added in a later format: a row of an older copy ends before them, and they take
/// their defaults.
macro_rules! row {
    ($t:ident { $($f:ident),* $(,)? } $(later { $($g:ident),* $(,)? })?) => {
        impl Field for $t {
            fn put(&self, out: &mut Vec<u8>) {
                let $t { $($f,)* $($($g,)*)? } = self;
                $( $f.put(out); )*
                $($( $g.put(out); )*)?
            }
            fn get(d: &mut Dec<'_>) -> Result<Self, DecodeError> {
                Ok($t {
                    $( $f: Field::get(d)?, )*
                    $($( $g: if d.is_done() { Default::default() } else { Field::get(d)? }, )*)?
                })
            }
        }
        impl Row for $t {
            fn id(&self) -> Uuid {
                self.id
            }
        }
    };
}

row!(ApiDef {
    id,
    name,
    upstream_protocol,
    lb_policy,
    connect_timeout_ms,
    read_timeout_ms,
    retries,
    auth_methods,
    enabled,
    total_timeout_ms,
    hash_on,
    retry_on_statuses,
    health_check,
    passive_health,
    circuit_breaker,
    canary_weight,
    canary_header,
    key_header,
    key_query_param,
    hide_credentials,
    jwt,
    introspection,
    anonymous_plan_id,
} later {
    // Format 3.
    upstream_tls,
    // Format 4.
    mtls,
});
row!(TargetDef { id, api_id, host, port, weight, backup, pool });
row!(RouteDef {
    id,
    api_id,
    name,
    hosts,
    paths,
    methods,
    headers,
    query,
    strip_path,
    rewrite_path,
    priority,
    cost,
    auth_methods,
});
row!(PlanDef {
    id,
    api_id,
    name,
    rate_limit_per_second,
    rate_limit_per_minute,
    rate_limit_per_hour,
    burst,
    quota_per_day,
    quota_per_month,
    limit_mode,
    redis_failure_policy,
    route_costs,
});
row!(DeveloperDef { id, status });
row!(ConsumerDef { id, name, developer_id, custom_id, enabled });
row!(KeyDef { id, consumer_id, key_hash, expires_at, revoked });
row!(SubscriptionDef { id, consumer_id, plan_id, api_id, status });
row!(TokenBindingDef { id, consumer_id, issuer, subject });
row!(CertificateBindingDef { id, consumer_id, fingerprint, subject });
row!(CertificateDef { id, cert_pem, key, names, not_after, is_default } later {
    // Format 3.
    client,
});

impl Field for CertKey {
    fn put(&self, out: &mut Vec<u8>) {
        let (tag, text) = match self {
            CertKey::Sealed(s) => (0, s),
            CertKey::Pem(p) => (1, p),
        };
        out.push(tag);
        text.put(out);
    }
    fn get(d: &mut Dec<'_>) -> Result<Self, DecodeError> {
        match d.tag()? {
            0 => Ok(CertKey::Sealed(String::get(d)?)),
            1 => Ok(CertKey::Pem(String::get(d)?)),
            t => Err(DecodeError::Tag(t)),
        }
    }
}
