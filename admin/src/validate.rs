//! Field-level validation of request bodies, reported all at once as a 422.

use crate::error::{ApiError, FieldError};

/// Input that can check itself before it reaches the database.
pub trait Validate {
    /// Adds a violation for every invalid field.
    fn validate(&self, v: &mut Violations);
}

/// Collected field violations.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldError>);

impl Violations {
    /// Records `detail` against `field` unless `ok`.
    pub fn check(&mut self, ok: bool, field: &str, detail: &str) -> &mut Self {
        if !ok {
            self.0.push(FieldError::new(field, detail));
        }
        self
    }

    /// A slug: lowercase letters, digits, `.`, `_`, `-`; 1–63 characters, starting alphanumeric.
    pub fn slug(&mut self, field: &str, value: &str) -> &mut Self {
        let ok = is_slug(value);
        self.check(ok, field, "must be 1-63 characters of a-z, 0-9, '.', '_', '-', starting with a letter or digit")
    }

    /// A string of at most `max` characters.
    pub fn max_len(&mut self, field: &str, value: &str, max: usize) -> &mut Self {
        self.check(value.chars().count() <= max, field, &format!("must be at most {max} characters"))
    }

    /// An e-mail address (only its shape: something@something).
    pub fn email(&mut self, field: &str, value: &str) -> &mut Self {
        let ok = value.len() <= 254
            && value.split_once('@').is_some_and(|(l, d)| !l.is_empty() && !d.is_empty() && !d.contains('@'))
            && !value.chars().any(char::is_whitespace);
        self.check(ok, field, "must be an e-mail address")
    }

    /// Turns the violations into a 422, if any.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.0.is_empty() { Ok(()) } else { Err(ApiError::validation(self.0)) }
    }
}

/// Validates `input`, returning a 422 listing every invalid field.
pub fn validate(input: &impl Validate) -> Result<(), ApiError> {
    let mut v = Violations::default();
    input.validate(&mut v);
    v.finish()
}

/// Whether `s` is a slug (see [`Violations::slug`]).
pub fn is_slug(s: &str) -> bool {
    let mut chars = s.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    first_ok
        && s.len() <= 63
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert!(is_slug("orders-v2.internal"));
        assert!(!is_slug("Orders"));
        assert!(!is_slug("-x"));
        assert!(!is_slug(""));
        assert!(!is_slug(&"a".repeat(64)));
    }

    #[test]
    fn all_violations_are_reported() {
        let mut v = Violations::default();
        v.slug("name", "Bad Name").email("email", "nope").max_len("description", "ok", 5);
        let err = v.finish().err().map(|e| e.status().as_u16());
        assert_eq!(err, Some(422));
    }
}
