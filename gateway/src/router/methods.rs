//! The authentication methods a route or an API accepts.

/// A set of accepted authentication methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Methods(u8);

impl Methods {
    pub const KEY_AUTH: Methods = Methods(1);
    pub const JWT: Methods = Methods(2);
    pub const INTROSPECTION: Methods = Methods(4);
    pub const ANONYMOUS: Methods = Methods(8);

    /// Parses the schema's names (`key_auth`, `jwt`, `introspection`, `anonymous`); unknown
    /// names are ignored (the schema forbids them). An empty list accepts anonymous calls.
    pub fn parse(names: &[String]) -> Methods {
        let bits = names.iter().fold(0, |acc, n| {
            acc | match n.as_str() {
                "key_auth" => Self::KEY_AUTH.0,
                "jwt" => Self::JWT.0,
                "introspection" => Self::INTROSPECTION.0,
                "anonymous" => Self::ANONYMOUS.0,
                _ => 0,
            }
        });
        Methods(if bits == 0 { Self::ANONYMOUS.0 } else { bits })
    }

    /// Whether any method of `other` is accepted.
    pub fn has(self, other: Methods) -> bool {
        self.0 & other.0 != 0
    }
}
