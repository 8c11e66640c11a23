//! Field-level validation of request bodies, reported all at once as a 422. Each rule that
//! the OpenAPI document can state is stated there too, by a pattern defined next to the rule
//! (`*_PATTERN`), so generated clients and property-based tests agree with the server; the
//! tests below check each pattern against its rule.

use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};

use crate::error::{ApiError, FieldError};

/// Regex class body of the characters [`is_blank_or_control`] refuses: Unicode `Cc` and
/// `White_Space`, spelled out so every regex dialect reads it the same way.
macro_rules! blank_or_control_class {
    () => {
        r"\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
    };
}

/// Regex class body of Unicode `White_Space` (what `str::trim` removes).
macro_rules! white_space_class {
    () => {
        r"\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
    };
}

pub(crate) use blank_or_control_class;

/// A slug (see [`is_slug`]).
pub const SLUG_PATTERN: &str = "^[a-z0-9][a-z0-9._-]{0,62}$";

/// An e-mail address (see [`Violations::email`]); at most [`EMAIL_MAX`] characters.
pub const EMAIL_PATTERN: &str = concat!("^[^@", blank_or_control_class!(), "]+@[^@", blank_or_control_class!(), "]+$");

/// Longest accepted e-mail address, in characters.
pub const EMAIL_MAX: usize = 254;

/// Text with at least one character that is not white space (unanchored on purpose).
pub const NOT_BLANK_PATTERN: &str = concat!("[^", white_space_class!(), "]");

/// Printable ASCII, tab and space: what an HTTP header value may hold.
pub const HEADER_VALUE_PATTERN: &str = "^[\\t\\x20-\\x7e]*$";

/// Whether `s` may be sent as an HTTP header value (see [`HEADER_VALUE_PATTERN`]).
pub fn is_header_value(s: &str) -> bool {
    s.chars().all(|c| c == '\t' || (' '..='~').contains(&c))
}

/// Whether `c` is a control character or white space.
pub fn is_blank_or_control(c: char) -> bool {
    c.is_control() || c.is_whitespace()
}

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

    /// A string with something besides white space, of at most `max` characters.
    pub fn not_blank(&mut self, field: &str, value: &str, max: usize) -> &mut Self {
        self.check(!value.trim().is_empty(), field, "must not be blank").max_len(field, value, max)
    }

    /// A string of at most `max` characters.
    pub fn max_len(&mut self, field: &str, value: &str, max: usize) -> &mut Self {
        self.check(value.chars().count() <= max, field, &format!("must be at most {max} characters"))
    }

    /// An e-mail address (only its shape: something@something).
    pub fn email(&mut self, field: &str, value: &str) -> &mut Self {
        self.check(is_email(value), field, "must be an e-mail address")
    }

    /// Whether nothing has been found wrong so far.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
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

/// Whether `s` looks like an e-mail address: one `@` between two non-empty parts, no white
/// space or control characters, at most [`EMAIL_MAX`] characters.
pub fn is_email(s: &str) -> bool {
    s.chars().count() <= EMAIL_MAX
        && s.split_once('@').is_some_and(|(l, d)| !l.is_empty() && !d.is_empty() && !d.contains('@'))
        && !s.chars().any(is_blank_or_control)
}

/// A string schema with `pattern` and at most `max` characters.
pub fn string_schema(pattern: &str, max: usize) -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String).pattern(Some(pattern)).max_length(Some(max))
}

/// Schema of e-mail fields.
pub fn email_schema() -> ObjectBuilder {
    string_schema(EMAIL_PATTERN, EMAIL_MAX).description(Some("An e-mail address; unique, compared case-insensitively."))
}

/// Schema of an array of `item`s, at most `max` of them.
pub fn array_schema(item: ObjectBuilder, max: usize) -> ArrayBuilder {
    ArrayBuilder::new().items(item).max_items(Some(max))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Asserts that `rule` and the regex `pattern` agree on every sample.
    pub(crate) fn agree(pattern: &str, rule: impl Fn(&str) -> bool, samples: &[&str]) {
        let re = regex::Regex::new(pattern).unwrap_or_else(|e| panic!("{pattern}: {e}"));
        for s in samples {
            assert_eq!(re.is_match(s), rule(s), "pattern and rule disagree on {s:?}");
        }
    }

    #[test]
    fn patterns_state_the_rules() {
        let odd = ["", " ", "a", "\u{1c}", "\u{85}", "\u{a0}", "\u{2003}", "\u{feff}", "\t", "\n", "é", "@", "~"];
        let mut samples: Vec<String> = odd.iter().map(|s| (*s).to_owned()).collect();
        for a in odd {
            for b in odd {
                samples.push(format!("x{a}@{b}y"));
                samples.push(format!("{a}@{b}"));
                samples.push(format!("{a}x{b}"));
            }
        }
        samples.extend(["a@b@c".into(), "a@b".into(), "orders-v2".into(), "-x".into(), "a".repeat(64)]);
        let samples: Vec<&str> = samples.iter().map(String::as_str).collect();
        agree(SLUG_PATTERN, is_slug, &samples);
        agree(EMAIL_PATTERN, is_email, &samples);
        agree(NOT_BLANK_PATTERN, |s| !s.trim().is_empty(), &samples);
        agree(HEADER_VALUE_PATTERN, is_header_value, &samples);
    }

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
