//! The edge security fields of a declarative file: credential settings of APIs and routes,
//! plan route costs by route name, token bindings of consumers.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::{FileApi, FileCertificateBinding, FilePlan, FileRoute, FileTokenBinding, Names, Taken, id};
use crate::config::model::{CertificateBindingDef, ConfigData, TokenBindingDef};

/// The accepted `auth_methods` values.
const AUTH_METHODS: [&str; 5] = ["key_auth", "jwt", "introspection", "mtls", "anonymous"];
/// Largest request cost (route `cost`, plan `route_costs`).
const MAX_COST: i32 = 1_000_000;

/// Credential settings: a valid key header and parameter, known methods, and the settings
/// each listed method needs.
pub(super) fn check_api_auth(a: &FileApi) -> anyhow::Result<()> {
    anyhow::ensure!(
        crate::config::rules::valid_key_header(&a.key_header),
        "key_header {:?} is not an HTTP header name, or is reserved (framing, hop-by-hop and identity headers)",
        a.key_header
    );
    if let Some(p) = &a.key_query_param {
        anyhow::ensure!(
            crate::config::rules::valid_key_query_param(p),
            "key_query_param {p:?} must be 1-128 of A-Z a-z 0-9 _ . -"
        );
    }
    check_methods(&a.auth_methods)?;
    for (field, value) in [("jwt", &a.jwt), ("introspection", &a.introspection), ("mtls", &a.mtls)] {
        anyhow::ensure!(value.as_ref().is_none_or(|v| v.is_object()), "{field} must be a mapping");
        let listed = a.auth_methods.iter().any(|m| m == field);
        anyhow::ensure!(!listed || value.is_some(), "auth_methods lists {field} but there are no {field} settings");
    }
    if let Some(mtls) = &a.mtls {
        crate::pki::MtlsSettings::from_value(mtls).map_err(anyhow::Error::msg)?;
    }
    Ok(())
}

fn check_methods(methods: &[String]) -> anyhow::Result<()> {
    match methods.iter().find(|m| !AUTH_METHODS.contains(&m.as_str())) {
        Some(m) => anyhow::bail!("unknown auth method {m:?} (known: {})", AUTH_METHODS.join(", ")),
        None => Ok(()),
    }
}

fn check_cost(cost: i32) -> anyhow::Result<()> {
    anyhow::ensure!((0..=MAX_COST).contains(&cost), "cost {cost} is not between 0 and {MAX_COST}");
    Ok(())
}

/// A route's cost and auth methods; methods needing settings need them on the API.
pub(super) fn check_route(a: &FileApi, r: &FileRoute) -> anyhow::Result<()> {
    check_cost(r.cost)?;
    let Some(methods) = &r.auth_methods else { return Ok(()) };
    check_methods(methods)?;
    for (field, value) in [("jwt", &a.jwt), ("introspection", &a.introspection), ("mtls", &a.mtls)] {
        let listed = methods.iter().any(|m| m == field);
        anyhow::ensure!(!listed || value.is_some(), "auth_methods lists {field} but the API has no {field} settings");
    }
    Ok(())
}

/// A plan's `route_costs`, by route id: every name must be a route of the API.
pub(super) fn route_costs(names: &Names, a: &FileApi, p: &FilePlan) -> anyhow::Result<BTreeMap<Uuid, i32>> {
    p.route_costs
        .iter()
        .map(|(route, &cost)| {
            let rid = names.route(&a.name, route);
            let rid = rid.ok_or_else(|| anyhow::anyhow!("route_costs names unknown route {route:?}"))?;
            check_cost(cost).map_err(|e| anyhow::anyhow!("route_costs of {route:?}: {e}"))?;
            Ok((rid, cost))
        })
        .collect()
}

pub(super) fn add_token_binding(
    data: &mut ConfigData,
    taken: &mut Taken,
    consumer_id: Uuid,
    consumer: &str,
    b: &FileTokenBinding,
) -> anyhow::Result<()> {
    let fits = |s: &str| (1..=2000).contains(&s.chars().count());
    anyhow::ensure!(
        fits(&b.issuer) && fits(&b.subject),
        "a token binding of consumer {consumer:?} needs an issuer and a subject of 1-2000 characters"
    );
    let bid = b.id.unwrap_or_else(|| id(&["token_binding", &b.issuer, &b.subject]));
    let fresh = taken.token_bindings.insert((b.issuer.clone(), b.subject.clone()));
    anyhow::ensure!(
        fresh && !data.token_bindings.contains_key(&bid),
        "token binding {:?}/{:?} (consumer {consumer:?}) is defined twice",
        b.issuer,
        b.subject
    );
    let def = TokenBindingDef { id: bid, consumer_id, issuer: b.issuer.clone(), subject: b.subject.clone() };
    data.token_bindings.insert(bid, def);
    Ok(())
}

pub(super) fn add_certificate_binding(
    data: &mut ConfigData,
    taken: &mut Taken,
    consumer_id: Uuid,
    consumer: &str,
    b: &FileCertificateBinding,
) -> anyhow::Result<()> {
    let (fingerprint, subject) = match (&b.fingerprint, &b.subject) {
        (Some(f), None) => {
            let hex = crate::pki::parse_fingerprint(f).ok_or_else(|| {
                anyhow::anyhow!(
                    "a certificate binding of consumer {consumer:?}: fingerprint {f:?} is not 64 hex digits"
                )
            })?;
            (Some(hex), None)
        }
        (None, Some(s)) => {
            anyhow::ensure!(
                crate::pki::valid_subject(s),
                "a certificate binding of consumer {consumer:?}: subject must be 1-1000 characters, no control characters"
            );
            (None, Some(s.clone()))
        }
        _ => {
            anyhow::bail!("a certificate binding of consumer {consumer:?} needs exactly one of fingerprint and subject")
        }
    };
    let bid = b.id.unwrap_or_else(|| match (&fingerprint, &subject) {
        (Some(f), _) => id(&["certificate_binding", "fingerprint", f]),
        (_, s) => id(&["certificate_binding", "subject", s.as_deref().unwrap_or_default()]),
    });
    let fresh = taken.certificate_bindings.insert((fingerprint.clone(), subject.clone()));
    anyhow::ensure!(
        fresh && !data.certificate_bindings.contains_key(&bid),
        "certificate binding {} (consumer {consumer:?}) is defined twice",
        fingerprint.as_deref().or(subject.as_deref()).unwrap_or_default()
    );
    data.certificate_bindings.insert(bid, CertificateBindingDef { id: bid, consumer_id, fingerprint, subject });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{id, parse};

    const EDGE: &str = r#"
apis:
  - name: orders
    auth_methods: [key_auth, jwt, anonymous]
    key_header: X-Key
    key_query_param: apikey
    hide_credentials: false
    jwt: {algorithms: [RS256], jwks_url: "https://idp.example.com/jwks"}
    anonymous_plan: open
    routes:
      - {name: all, paths: ["/orders/*"], cost: 2}
      - {name: search, paths: ["/search"], auth_methods: [jwt]}
    plans:
      - {name: open, rate_limit_per_minute: 10}
      - {name: gold, route_costs: {search: 5}}
consumers:
  - name: acme
    token_bindings: [{issuer: "https://idp.example.com/", subject: "svc-1"}]
    certificate_bindings:
      - {fingerprint: "AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB:AB"}
      - {subject: "svc-orders"}
"#;

    #[test]
    fn edge_security_fields_resolve_names_to_ids() -> anyhow::Result<()> {
        let data = parse(EDGE)?;
        let api = data.apis.values().next().ok_or_else(|| anyhow::anyhow!("no API"))?;
        assert_eq!((api.key_header.as_str(), api.key_query_param.as_deref()), ("X-Key", Some("apikey")));
        assert!(!api.hide_credentials);
        assert_eq!(api.jwt.as_ref().and_then(|j| j["algorithms"][0].as_str()), Some("RS256"));
        assert_eq!(api.anonymous_plan_id, Some(id(&["plan", "orders", "open"])));
        let search = id(&["route", "orders", "search"]);
        assert_eq!(data.routes[&search].auth_methods.as_deref(), Some(&["jwt".to_owned()][..]));
        assert_eq!(data.routes[&id(&["route", "orders", "all"])].cost, 2);
        assert_eq!(data.routes[&search].cost, 1, "cost defaults to 1");
        assert_eq!(data.plans[&id(&["plan", "orders", "gold"])].route_costs.get(&search), Some(&5));
        let binding = data.token_bindings.values().next().map(|b| (b.consumer_id, b.subject.as_str()));
        assert_eq!(binding, Some((id(&["consumer", "acme"]), "svc-1")));
        let certs: Vec<_> =
            data.certificate_bindings.values().map(|b| (b.fingerprint.clone(), b.subject.clone())).collect();
        assert_eq!(certs.len(), 2);
        assert!(certs.contains(&(Some("ab".repeat(32)), None)), "{certs:?}");
        assert!(certs.contains(&(None, Some("svc-orders".to_owned()))), "{certs:?}");
        assert!(data.certificate_bindings.values().all(|b| b.consumer_id == id(&["consumer", "acme"])));
        Ok(())
    }

    #[test]
    fn edge_security_mistakes_are_named() {
        let cases = [
            ("apis: [{name: a, auth_methods: [jwt]}]", "no jwt settings"),
            ("apis: [{name: a, auth_methods: [magic]}]", "unknown auth method"),
            ("apis: [{name: a, key_header: 'x key'}]", "key_header"),
            ("apis: [{name: a, key_header: X-Consumer-ID}]", "reserved"),
            ("apis: [{name: a, key_query_param: 'a b'}]", "key_query_param"),
            ("apis: [{name: a, jwt: [1]}]", "jwt must be a mapping"),
            ("apis: [{name: a, anonymous_plan: nope}]", "anonymous_plan"),
            ("apis: [{name: a, routes: [{name: r, paths: [/], cost: -1}]}]", "cost -1"),
            ("apis: [{name: a, routes: [{name: r, paths: [/], auth_methods: [introspection]}]}]", "introspection"),
            ("apis: [{name: a, plans: [{name: p, route_costs: {r: 1}}]}]", "unknown route"),
            (
                "consumers: [{name: a, token_bindings: [{issuer: i, subject: s}]}, \
                 {name: b, token_bindings: [{issuer: i, subject: s}]}]",
                "defined twice",
            ),
            ("consumers: [{name: a, token_bindings: [{issuer: '', subject: s}]}]", "1-2000"),
            ("apis: [{name: a, auth_methods: [mtls]}]", "no mtls settings"),
            ("apis: [{name: a, mtls: {ca_bundle: nope}}]", "mtls/ca_bundle: holds no PEM"),
            ("apis: [{name: a, mtls: {ca: x}}]", "unknown field"),
            ("apis: [{name: a, routes: [{name: r, paths: [/], auth_methods: [mtls]}]}]", "no mtls settings"),
            ("consumers: [{name: a, certificate_bindings: [{}]}]", "exactly one of fingerprint and subject"),
            ("consumers: [{name: a, certificate_bindings: [{fingerprint: ab, subject: s}]}]", "exactly one"),
            ("consumers: [{name: a, certificate_bindings: [{fingerprint: abc}]}]", "64 hex digits"),
            ("consumers: [{name: a, certificate_bindings: [{subject: ''}]}]", "1-1000 characters"),
            (
                "consumers: [{name: a, certificate_bindings: [{subject: s}]}, \
                 {name: b, certificate_bindings: [{subject: s}]}]",
                "defined twice",
            ),
        ];
        for (text, needle) in cases {
            let err = parse(text).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(err.contains(needle), "{text}: {err:?} should mention {needle:?}");
        }
    }
}
