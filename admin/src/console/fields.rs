//! Forms as the admin UI's edit pages send them, turned into the JSON the REST API takes,
//! so a form is validated by the very `Input` type, `Validate` rules and `check` of the
//! operation it feeds: no rule exists twice. Each form names its fields with a [`Kind`];
//! field names are the JSON field names, so an operation's error pointer (`/retries`)
//! finds its field.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::web::FieldErrors;
use crate::error::ApiError;

/// How a form field becomes a JSON value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A string, as typed.
    Text,
    /// A string, or `null` when left empty.
    OptText,
    /// A whole number.
    Int,
    /// A whole number, or `null` when left empty.
    OptInt,
    /// A checkbox: present means `true`.
    Bool,
    /// A list of strings, one per line (or separated by commas).
    List,
    /// A list of whole numbers, separated by commas, spaces or lines.
    IntList,
    /// Several checkboxes of one name: the list of those ticked.
    Choices,
    /// `name: value, value` lines: a map of lists.
    Pairs,
    /// An object written in YAML (or JSON); `null` when left empty.
    Yaml,
}

/// One field of a form.
#[derive(Debug, Clone, Copy)]
pub struct Spec(pub &'static str, pub Kind);

/// A URL-encoded form body, in order, repeated names kept.
#[derive(Debug, Default, Clone)]
pub struct FormData(pub Vec<(String, String)>);

impl FormData {
    pub fn parse(body: &[u8]) -> Self {
        Self(crate::ui::csrf::pairs(body).collect())
    }

    /// The fields whose names start with `prefix`, without it (one of several forms on a page).
    pub fn within(&self, prefix: &str) -> Self {
        Self(self.0.iter().filter_map(|(k, v)| Some((k.strip_prefix(prefix)?.to_owned(), v.clone()))).collect())
    }

    /// The first value of `name`, trimmed; "" when absent.
    pub fn get(&self, name: &str) -> &str {
        self.0.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.trim())
    }

    /// Every value of `name`.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0.iter().filter(move |(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| k == name)
    }
}

/// What a form's fields show: the entity's values, or what was typed when it is shown again.
#[derive(Debug, Default, Clone)]
pub struct Values(BTreeMap<String, String>);

impl Values {
    /// The value of text field `name`, "" when none.
    pub fn of(&self, name: &str) -> &str {
        self.0.get(name).map_or("", String::as_str)
    }

    /// Whether checkbox `name` is ticked.
    pub fn on(&self, name: &str) -> bool {
        self.0.get(name).is_some_and(|v| v == "true")
    }

    /// Whether `choice` is ticked among the checkboxes `name`.
    pub fn chose(&self, name: &str, choice: &str) -> bool {
        self.0.get(name).is_some_and(|v| v.split('\n').any(|c| c == choice))
    }

    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.0.insert(name.to_owned(), value.into());
    }

    /// The fields of `specs` as the entity `json` has them.
    pub fn from_json(specs: &[Spec], json: &Value) -> Self {
        let mut out = Self::default();
        for Spec(name, kind) in specs {
            let v = json.get(name).unwrap_or(&Value::Null);
            out.set(name, show(*kind, v));
        }
        out
    }

    /// The fields of `specs` as the form sent them.
    pub fn from_form(specs: &[Spec], form: &FormData) -> Self {
        let mut out = Self::default();
        for Spec(name, kind) in specs {
            let v = match kind {
                Kind::Bool => if form.has(name) { "true" } else { "" }.to_owned(),
                Kind::Choices => form.all(name).collect::<Vec<_>>().join("\n"),
                _ => form.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default(),
            };
            out.set(name, v);
        }
        out
    }
}

/// A JSON value as its form field shows it.
fn show(kind: Kind, v: &Value) -> String {
    match (kind, v) {
        (_, Value::Null) => String::new(),
        (Kind::Bool, Value::Bool(b)) => if *b { "true" } else { "" }.to_owned(),
        (_, Value::String(s)) => s.clone(),
        (Kind::List | Kind::Choices, Value::Array(items)) => {
            items.iter().map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned)).collect::<Vec<_>>().join("\n")
        }
        (Kind::IntList, Value::Array(items)) => items.iter().map(Value::to_string).collect::<Vec<_>>().join(", "),
        (Kind::Pairs, Value::Object(map)) => map
            .iter()
            .map(|(k, vs)| {
                let vs: Vec<&str> = vs.as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                format!("{k}: {}", vs.join(", "))
            })
            .collect::<Vec<_>>()
            .join("\n"),
        (Kind::Yaml, other) => serde_norway::to_string(other).unwrap_or_default(),
        (_, other) => other.to_string(),
    }
}

/// The JSON object the form's `specs` fields make; type errors (a word where a number
/// goes, YAML that does not parse) are reported per field.
pub fn to_json(specs: &[Spec], form: &FormData) -> Result<Map<String, Value>, FieldErrors> {
    let mut out = Map::new();
    let mut errors = FieldErrors::default();
    for Spec(name, kind) in specs {
        let raw = form.get(name);
        let value = match kind {
            Kind::Text => Ok(Value::from(raw)),
            Kind::OptText => Ok(if raw.is_empty() { Value::Null } else { Value::from(raw) }),
            Kind::Int => int(raw),
            Kind::OptInt if raw.is_empty() => Ok(Value::Null),
            Kind::OptInt => int(raw),
            Kind::Bool => Ok(Value::Bool(form.has(name))),
            Kind::List => Ok(Value::from(items(raw).collect::<Vec<_>>())),
            Kind::IntList => items(raw).map(int).collect::<Result<Vec<_>, _>>().map(Value::from),
            Kind::Choices => Ok(Value::from(form.all(name).collect::<Vec<_>>())),
            Kind::Pairs => pairs(raw),
            Kind::Yaml if raw.is_empty() => Ok(Value::Null),
            Kind::Yaml => serde_norway::from_str::<Value>(raw).map_err(|e| format!("is not valid YAML: {e}")),
        };
        match value {
            Ok(v) => {
                out.insert((*name).to_owned(), v);
            }
            Err(m) => errors.add(*name, m),
        }
    }
    if errors.is_empty() { Ok(out) } else { Err(errors) }
}

fn int(raw: &str) -> Result<Value, String> {
    raw.trim().parse::<i64>().map(Value::from).map_err(|_| "must be a whole number".to_owned())
}

fn items(raw: &str) -> impl Iterator<Item = &str> {
    raw.split(['\n', ',']).map(str::trim).filter(|s| !s.is_empty())
}

fn pairs(raw: &str) -> Result<Value, String> {
    let mut map = Map::new();
    for line in raw.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (k, vs) = line.split_once(':').ok_or_else(|| format!("write `name: value` (line \"{line}\")"))?;
        let vs: Vec<&str> = items(vs).collect();
        map.insert(k.trim().to_owned(), Value::from(vs));
    }
    Ok(Value::Object(map))
}

/// An operation's refusal as errors next to the fields of `specs` (a pointer into a YAML
/// field's object lands on that field, with the path named); anything else goes to the
/// summary under `""`.
pub fn api_errors(err: &ApiError, specs: &[Spec]) -> FieldErrors {
    let mut out = FieldErrors::default();
    for e in err.field_errors() {
        let pointer = e.pointer.trim_start_matches('/');
        let (head, rest) = pointer.split_once('/').unwrap_or((pointer, ""));
        match specs.iter().find(|Spec(n, _)| *n == head) {
            Some(Spec(name, _)) if rest.is_empty() => out.add(*name, e.detail.clone()),
            Some(Spec(name, _)) => out.add(*name, format!("{}: {}", rest.replace('/', "."), e.detail)),
            None => out.add("", e.detail.clone()),
        }
    }
    if out.is_empty() {
        out.add("", err.detail().to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPECS: [Spec; 7] = [
        Spec("name", Kind::Text),
        Spec("retries", Kind::Int),
        Spec("hash_on", Kind::OptText),
        Spec("enabled", Kind::Bool),
        Spec("tags", Kind::List),
        Spec("headers", Kind::Pairs),
        Spec("health_check", Kind::Yaml),
    ];

    #[test]
    fn forms_become_the_json_the_api_takes_and_back() {
        let form = FormData::parse(
            b"name=orders&retries=2&hash_on=&enabled=on&tags=a%0D%0Ab,+c&headers=x-v%3A+1,+2&health_check=path%3A+%2Fh",
        );
        let json = Value::Object(to_json(&SPECS, &form).unwrap());
        assert_eq!(
            json,
            serde_json::json!({"name": "orders", "retries": 2, "hash_on": null, "enabled": true,
                "tags": ["a", "b", "c"], "headers": {"x-v": ["1", "2"]}, "health_check": {"path": "/h"}})
        );
        let shown = Values::from_json(&SPECS, &json);
        assert_eq!(shown.of("tags"), "a\nb\nc");
        assert_eq!(shown.of("headers"), "x-v: 1, 2");
        assert!(shown.on("enabled"));
        assert_eq!(shown.of("health_check").trim(), "path: /h");
    }

    #[test]
    fn type_errors_name_their_fields() {
        let form = FormData::parse(b"name=x&retries=two&health_check=%5B&headers=nocolon");
        let errors = to_json(&SPECS, &form).unwrap_err();
        assert_eq!(errors.of("retries"), "must be a whole number");
        assert!(errors.of("health_check").starts_with("is not valid YAML"));
        assert!(errors.of("headers").contains("name: value"));
        assert_eq!(errors.of("name"), "");
    }

    #[test]
    fn operation_errors_land_on_their_fields() {
        let err = ApiError::validation(vec![
            crate::error::FieldError::new("retries", "must be at most 10"),
            crate::error::FieldError::new("health_check/interval_ms", "must be at least 100"),
        ]);
        let errors = api_errors(&err, &SPECS);
        assert_eq!(errors.of("retries"), "must be at most 10");
        assert_eq!(errors.of("health_check"), "interval_ms: must be at least 100");
    }
}
