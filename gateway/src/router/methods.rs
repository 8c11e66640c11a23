//! The authentication methods a route or an API accepts.

/// A set of accepted authentication methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Methods(u8);

impl Methods {
    pub const KEY_AUTH: Methods = Methods(1);
    pub const JWT: Methods = Methods(2);
    pub const INTROSPECTION: Methods = Methods(4);
    pub const ANONYMOUS: Methods = Methods(8);
    pub const MTLS: Methods = Methods(16);

    /// Parses the schema's names (`key_auth`, `jwt`, `introspection`, `mtls`, `anonymous`).
    /// An empty list accepts anonymous calls. A name this version does not know (written by
    /// a newer control plane) accepts nothing: such an API refuses every call rather than
    /// fall open.
    pub fn parse(names: &[String]) -> Methods {
        let bits = names.iter().fold(0, |acc, n| {
            acc | match n.as_str() {
                "key_auth" => Self::KEY_AUTH.0,
                "jwt" => Self::JWT.0,
                "introspection" => Self::INTROSPECTION.0,
                "mtls" => Self::MTLS.0,
                "anonymous" => Self::ANONYMOUS.0,
                _ => 0,
            }
        });
        Methods(if names.is_empty() { Self::ANONYMOUS.0 } else { bits })
    }

    /// Whether any method of `other` is accepted.
    pub fn has(self, other: Methods) -> bool {
        self.0 & other.0 != 0
    }
}

#[cfg(test)]
mod tests {
    use super::Methods;

    #[test]
    fn unknown_methods_accept_nothing() {
        let names = |n: &[&str]| n.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(Methods::parse(&[]), Methods::ANONYMOUS);
        let unknown = Methods::parse(&names(&["passkey"]));
        for m in [Methods::KEY_AUTH, Methods::JWT, Methods::INTROSPECTION, Methods::MTLS, Methods::ANONYMOUS] {
            assert!(!unknown.has(m), "{m:?}");
        }
        let mixed = Methods::parse(&names(&["passkey", "mtls"]));
        assert!(mixed.has(Methods::MTLS) && !mixed.has(Methods::ANONYMOUS));
    }
}
