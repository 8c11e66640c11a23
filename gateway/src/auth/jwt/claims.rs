//! The claims of a validated token, and the required-claim and scope checks.

use serde_json::{Map, Value};

use super::JwtError;

/// The claims of a token that passed validation.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    pub sub: Option<String>,
    pub iss: Option<String>,
    /// `aud` as a list (a single string becomes one element).
    pub aud: Vec<String>,
    pub exp: Option<u64>,
    pub nbf: Option<u64>,
    /// Granted scopes, from `scope` (space-separated) and `scp` (array or string).
    pub scopes: Vec<String>,
    /// Every claim, as sent.
    pub raw: Map<String, Value>,
}

impl Claims {
    /// Extracts the typed claims; registered claims of the wrong type are refused.
    pub(crate) fn from_map(raw: Map<String, Value>) -> Result<Self, JwtError> {
        let string = |name: &str| match raw.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(JwtError::Malformed),
        };
        let number = |name: &str| match raw.get(name) {
            None => Ok(None),
            Some(v) => v.as_u64().or_else(|| v.as_f64().map(|f| f as u64)).map(Some).ok_or(JwtError::Malformed),
        };
        Ok(Self {
            sub: string("sub")?,
            iss: string("iss")?,
            aud: string_list(raw.get("aud"), false)?,
            exp: number("exp")?,
            nbf: number("nbf")?,
            scopes: scopes(&raw)?,
            raw,
        })
    }

    /// Every required claim present and not null, every required scope granted.
    pub(crate) fn require(&self, claims: &[String], scopes: &[String]) -> Result<(), JwtError> {
        if claims.iter().any(|c| self.raw.get(c).is_none_or(Value::is_null)) {
            return Err(JwtError::MissingClaim);
        }
        if scopes.iter().any(|s| !self.scopes.contains(s)) {
            return Err(JwtError::MissingScope);
        }
        Ok(())
    }
}

fn scopes(raw: &Map<String, Value>) -> Result<Vec<String>, JwtError> {
    let mut all = string_list(raw.get("scope"), true)?;
    all.extend(string_list(raw.get("scp"), true)?);
    Ok(all)
}

/// A string or an array of strings; with `split`, strings are space-separated lists.
fn string_list(value: Option<&Value>, split: bool) -> Result<Vec<String>, JwtError> {
    let words = |s: &str| -> Vec<String> {
        if split { s.split_ascii_whitespace().map(str::to_owned).collect() } else { vec![s.to_owned()] }
    };
    match value {
        None => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(words(s)),
        Some(Value::Array(items)) => {
            items.iter().map(|v| v.as_str().map(str::to_owned).ok_or(JwtError::Malformed)).collect()
        }
        Some(_) => Err(JwtError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn claims(v: Value) -> Result<Claims, JwtError> {
        let Value::Object(map) = v else { panic!("object") };
        Claims::from_map(map)
    }

    #[test]
    fn scopes_come_from_scope_and_scp() {
        let c = claims(json!({"scope": "read  write", "scp": ["admin"], "aud": "api"})).unwrap();
        assert_eq!(c.scopes, ["read", "write", "admin"]);
        assert_eq!(c.aud, ["api"]);
        let need = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(c.require(&[], &need(&["read", "admin"])).is_ok());
        assert_eq!(c.require(&[], &need(&["delete"])), Err(JwtError::MissingScope));
        assert_eq!(c.require(&need(&["tenant"]), &[]), Err(JwtError::MissingClaim));
    }

    #[test]
    fn mistyped_registered_claims_are_refused() {
        assert_eq!(claims(json!({"sub": 5})), Err(JwtError::Malformed));
        assert_eq!(claims(json!({"scp": [1]})), Err(JwtError::Malformed));
        assert_eq!(claims(json!({"exp": "soon"})), Err(JwtError::Malformed));
    }
}
