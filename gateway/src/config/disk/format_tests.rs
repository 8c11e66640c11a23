//! Tests of the compact copy: every field survives a round trip, a damaged or cut-off file
//! is refused with an error naming it, and random configurations round-trip (bounded
//! property test).

use std::collections::BTreeMap;

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::json;
use uuid::Uuid;

use super::*;
use crate::config::model::{
    ApiDef, CertKey, CertificateBindingDef, CertificateDef, ConsumerDef, DeveloperDef, KeyDef, KeyHash, PlanDef,
    RouteDef, SubscriptionDef, TargetDef, TokenBindingDef,
};

fn scratch() -> PathBuf {
    std::env::temp_dir().join(format!("tg-disk-{}", Uuid::new_v4()))
}

fn id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

/// One row of every table, every optional field set, settings with every JSON kind.
fn everything() -> ConfigData {
    let settings = json!({"n": [1, -2, 3.5, 1e300, u64::MAX], "s": "é\"\n", "b": [true, false, null], "o": {"d": {}}});
    let api = ApiDef {
        id: id(1),
        name: "orders".into(),
        upstream_protocol: "https".into(),
        lb_policy: "consistent_hash".into(),
        connect_timeout_ms: 250,
        read_timeout_ms: -1,
        retries: 2,
        auth_methods: vec!["key_auth".into(), "jwt".into()],
        enabled: true,
        total_timeout_ms: i32::MAX,
        hash_on: Some("header:x-user".into()),
        retry_on_statuses: vec![502, 503],
        health_check: Some(settings.clone()),
        passive_health: Some(json!({"failures": 3})),
        circuit_breaker: Some(json!(null)),
        canary_weight: 10,
        canary_header: Some("x-canary".into()),
        key_header: "x-api-key".into(),
        key_query_param: Some("apikey".into()),
        hide_credentials: false,
        jwt: Some(json!({"secret": "s3cr3t"})),
        introspection: Some(json!([])),
        anonymous_plan_id: Some(id(4)),
        upstream_tls: Some(json!({"server_name": "orders.internal", "verify": true})),
        mtls: Some(json!({"ca_bundle": "-----BEGIN CERTIFICATE-----"})),
    };
    let target = TargetDef {
        id: id(2),
        api_id: id(1),
        host: "10.0.0.1".into(),
        port: 8443,
        weight: 100,
        backup: true,
        pool: "canary".into(),
    };
    let route = RouteDef {
        id: id(3),
        api_id: id(1),
        name: "r".into(),
        hosts: vec!["api.example.com".into()],
        paths: vec!["/orders/{id}".into(), "/o/*".into()],
        methods: vec!["GET".into()],
        headers: BTreeMap::from([("x-v".into(), vec!["1".into(), "2".into()])]),
        query: BTreeMap::from([("q".into(), vec![])]),
        strip_path: true,
        rewrite_path: Some("/v2".into()),
        priority: -5,
        cost: 3,
        auth_methods: Some(vec!["anonymous".into()]),
    };
    let plan = PlanDef {
        id: id(4),
        api_id: id(1),
        name: "gold".into(),
        rate_limit_per_second: Some(10),
        rate_limit_per_minute: Some(600),
        rate_limit_per_hour: Some(i32::MIN),
        burst: 100,
        quota_per_day: Some(i64::MAX),
        quota_per_month: Some(-1),
        limit_mode: "redis".into(),
        redis_failure_policy: "fail_closed".into(),
        route_costs: BTreeMap::from([(id(3), 7)]),
    };
    let key =
        KeyDef { id: id(7), consumer_id: id(6), key_hash: KeyHash([0xab; 32]), expires_at: Some(-3), revoked: true };
    ConfigData {
        event_id: i64::MAX,
        apis: BTreeMap::from([(api.id, api)]),
        targets: BTreeMap::from([(target.id, target)]),
        routes: BTreeMap::from([(route.id, route)]),
        plans: BTreeMap::from([(plan.id, plan)]),
        developers: BTreeMap::from([(id(5), DeveloperDef { id: id(5), status: "active".into() })]),
        consumers: BTreeMap::from([(
            id(6),
            ConsumerDef {
                id: id(6),
                name: "app".into(),
                developer_id: Some(id(5)),
                custom_id: Some("c".into()),
                enabled: true,
            },
        )]),
        keys: [key].into_iter().collect(),
        subscriptions: BTreeMap::from([(
            id(8),
            SubscriptionDef { id: id(8), consumer_id: id(6), plan_id: id(4), api_id: id(1), status: "active".into() },
        )]),
        token_bindings: BTreeMap::from([(
            id(9),
            TokenBindingDef { id: id(9), consumer_id: id(6), issuer: "https://idp".into(), subject: "sub".into() },
        )]),
        certificates: BTreeMap::from([(
            id(10),
            CertificateDef {
                id: id(10),
                cert_pem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into(),
                key: CertKey::Sealed("tg1:0011223344556677:AAAA".into()),
                names: vec!["api.example.com".into(), "*.example.com".into()],
                not_after: 1_900_000_000,
                is_default: true,
                // (Not a real combination: here to see both flags survive the trip.)
                client: true,
            },
        )]),
        certificate_bindings: BTreeMap::from([
            (
                id(11),
                CertificateBindingDef {
                    id: id(11),
                    consumer_id: id(6),
                    fingerprint: Some("ab".repeat(32)),
                    subject: None,
                },
            ),
            (
                id(12),
                CertificateBindingDef {
                    id: id(12),
                    consumer_id: id(6),
                    fingerprint: None,
                    subject: Some("svc".into()),
                },
            ),
        ]),
    }
}

fn encoded(data: &ConfigData) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    binary::write(&mut out, data)?;
    Ok(out)
}

fn decoded(bytes: &[u8]) -> std::io::Result<ConfigData> {
    binary::read(bytes, bytes.len() as u64, &AtomicBool::new(false))
}

#[test]
fn every_field_round_trips_through_the_file() -> std::io::Result<()> {
    let dir = scratch();
    let path = dir.join("gateway-config.json");
    let data = everything();
    save(&path, &data)?;
    assert_eq!(load(&path)?, data);
    assert_eq!(std::fs::read(&path)?[..8], binary::MAGIC, "written in the compact format");
    // Settings that carry no JSON at all (`None`) differ from a JSON `null` and stay so.
    assert_eq!(load(&path)?.apis[&id(1)].circuit_breaker, Some(json!(null)));
    std::fs::remove_dir_all(dir)
}

#[test]
fn a_cut_off_copy_is_refused_at_every_length() -> std::io::Result<()> {
    let bytes = encoded(&everything())?;
    for len in 0..bytes.len() {
        let err = decoded(&bytes[..len]).err().ok_or_else(|| std::io::Error::other(format!("{len} bytes accepted")))?;
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{len}: {err}");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(decoded(&longer).is_err(), "trailing bytes");
    Ok(())
}

#[test]
fn every_damaged_byte_is_noticed() -> std::io::Result<()> {
    let bytes = encoded(&everything())?;
    for at in 0..bytes.len() {
        let mut damaged = bytes.clone();
        damaged[at] ^= 0x20;
        assert!(decoded(&damaged).is_err(), "byte {at} changed, copy accepted");
    }
    Ok(())
}

#[test]
fn a_damaged_file_is_refused_with_its_name_and_the_reason() -> std::io::Result<()> {
    let dir = scratch();
    let path = dir.join("gateway-config.json");
    save(&path, &everything())?;
    let mut bytes = std::fs::read(&path)?;
    let last = bytes.len() - 10;
    bytes[last] ^= 1;
    std::fs::write(&path, &bytes)?;
    let err = load(&path).err().ok_or_else(|| std::io::Error::other("damaged copy accepted"))?;
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    let msg = err.to_string();
    assert!(msg.contains("gateway-config.json") && msg.contains("checksum mismatch"), "{msg}");

    std::fs::write(&path, &bytes[..bytes.len() / 2])?;
    let msg = load(&path).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(msg.contains("truncated"), "{msg}");
    std::fs::write(&path, b"")?;
    let msg = load(&path).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(msg.contains("empty"), "{msg}");
    let mut newer = encoded(&everything())?;
    newer[8] = 5;
    std::fs::write(&path, &newer)?;
    let msg = load(&path).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(msg.contains("format 5"), "{msg}");
    std::fs::remove_dir_all(dir)
}

#[test]
fn a_cancelled_read_stops() -> std::io::Result<()> {
    let dir = scratch();
    let path = dir.join("gateway-config.json");
    save(&path, &everything())?;
    let err = load_unless(&path, &AtomicBool::new(true)).err().map(|e| e.kind());
    assert_eq!(err, Some(std::io::ErrorKind::Interrupted));
    std::fs::remove_dir_all(dir)
}

/// `bytes` (a copy of this format whose last `tables` tables are empty) without those
/// tables, as format `version` with its own checksum.
fn older(bytes: &[u8], tables: usize, version: u32) -> Vec<u8> {
    let end = bytes.len() - 8;
    assert_eq!(&bytes[end - 8 * tables..end], vec![0u8; 8 * tables].as_slice(), "the empty tables");
    let mut old = bytes[..end - 8 * tables].to_vec();
    old[8..12].copy_from_slice(&version.to_le_bytes());
    old.extend_from_slice(b"END.");
    let crc = crc32fast::hash(&old);
    old.extend_from_slice(&crc.to_le_bytes());
    old
}

#[test]
fn a_copy_in_format_1_loads_without_certificates() -> std::io::Result<()> {
    // Format 1 is format 3 without the certificates table (each table's count is 8 bytes
    // before `END.`), under version 1 and its own checksum.
    let data = ConfigData { certificates: BTreeMap::new(), certificate_bindings: BTreeMap::new(), ..everything() };
    let now = encoded(&data)?;
    assert_eq!(decoded(&older(&now, 2, 1))?, data);
    // And a format this build does not know is refused.
    let mut v5 = now.clone();
    v5[8..12].copy_from_slice(&5u32.to_le_bytes());
    assert!(decoded(&v5).is_err());
    Ok(())
}

#[test]
fn a_copy_in_format_3_loads_without_certificate_bindings() -> std::io::Result<()> {
    let data = ConfigData { certificate_bindings: BTreeMap::new(), ..everything() };
    let v3 = older(&encoded(&data)?, 1, 3);
    assert_eq!(decoded(&v3)?, data);
    // Bindings written under format 3 would be read as what follows the tables: refused.
    let with = encoded(&everything())?;
    let mut mislabelled = with[..with.len() - 4].to_vec();
    mislabelled[8..12].copy_from_slice(&3u32.to_le_bytes());
    let crc = crc32fast::hash(&mislabelled);
    mislabelled.extend_from_slice(&crc.to_le_bytes());
    let msg = decoded(&mislabelled).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(msg.contains("does not end where its tables do"), "{msg}");
    Ok(())
}

#[test]
fn an_api_row_of_format_2_ends_before_upstream_tls() -> Result<(), super::field::DecodeError> {
    use super::field::{Dec, Field};
    let api = ApiDef { upstream_tls: None, mtls: None, ..everything().apis[&id(1)].clone() };
    let mut row = Vec::new();
    api.put(&mut row);
    // Formats 3 and 4 add one field each at the end: an absent option is its one tag byte.
    assert_eq!(row.pop(), Some(0));
    let mut d = Dec::new(&row);
    assert_eq!(ApiDef::get(&mut d)?, api, "a format 3 row");
    assert!(d.is_done());
    assert_eq!(row.pop(), Some(0));
    let mut d = Dec::new(&row);
    assert_eq!(ApiDef::get(&mut d)?, api);
    assert!(d.is_done());
    // A format 3 row with settings reads them back.
    let with = everything().apis[&id(1)].clone();
    let mut row = Vec::new();
    with.put(&mut row);
    assert_eq!(ApiDef::get(&mut Dec::new(&row))?, with);
    Ok(())
}

#[test]
fn a_copy_written_by_the_previous_version_loads() -> std::io::Result<()> {
    let dir = scratch();
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("gateway-config.json");
    let mut data = everything();
    // (JSON cannot tell `Some(null)` settings from none: the old format's loss, not ours.)
    data.apis.values_mut().for_each(|a| a.circuit_breaker = None);
    // What the previous version wrote: `serde_json::to_writer` of the configuration.
    std::fs::write(&path, serde_json::to_vec(&data)?)?;
    assert_eq!(load(&path)?, data);
    save(&path, &load(&path)?)?;
    assert_eq!(load(&path)?, data, "rewritten in the compact format");
    std::fs::remove_dir_all(dir)
}

// ---- Property test -----------------------------------------------------------------------

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,12}"
}

fn uuid() -> impl Strategy<Value = Uuid> {
    any::<u128>().prop_map(Uuid::from_u128)
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(json!(null)),
        any::<bool>().prop_map(|b| json!(b)),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
        text().prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            btree_map(text(), inner, 0..4).prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

fn key() -> impl Strategy<Value = KeyDef> {
    (uuid(), uuid(), any::<[u8; 32]>(), any::<Option<i64>>(), any::<bool>()).prop_map(
        |(id, consumer_id, hash, expires_at, revoked)| KeyDef {
            id,
            consumer_id,
            key_hash: KeyHash(hash),
            expires_at,
            revoked,
        },
    )
}

fn route() -> impl Strategy<Value = RouteDef> {
    let lists = (vec(text(), 0..3), vec(text(), 0..3), btree_map(text(), vec(text(), 0..3), 0..3));
    (uuid(), text(), lists, any::<Option<String>>(), any::<(bool, i32, i32)>(), any::<Option<Vec<String>>>()).prop_map(
        |(id, name, (hosts, paths, headers), rewrite_path, (strip_path, priority, cost), auth_methods)| RouteDef {
            id,
            api_id: id,
            name,
            hosts,
            paths,
            methods: Vec::new(),
            query: headers.clone(),
            headers,
            strip_path,
            rewrite_path,
            priority,
            cost,
            auth_methods,
        },
    )
}

fn api() -> impl Strategy<Value = ApiDef> {
    (uuid(), text(), proptest::option::of(json_value()), proptest::option::of(json_value())).prop_map(
        |(api_id, name, jwt, health_check)| ApiDef {
            id: api_id,
            name,
            jwt,
            health_check,
            ..everything().apis[&id(1)].clone()
        },
    )
}

fn config() -> impl Strategy<Value = ConfigData> {
    (any::<i64>(), vec(key(), 0..20), vec(route(), 0..5), vec(api(), 0..3)).prop_map(
        move |(event_id, keys, routes, apis)| ConfigData {
            event_id,
            keys: keys.into_iter().collect(),
            routes: routes.into_iter().map(|r| (r.id, r)).collect(),
            apis: apis.into_iter().map(|a| (a.id, a)).collect(),
            ..everything()
        },
    )
}

#[test]
fn random_configurations_round_trip() {
    let mut runner = TestRunner::new(Config { cases: 256, failure_persistence: None, ..Config::default() });
    let outcome = runner.run(&config(), |data| {
        let bytes = encoded(&data).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let back = decoded(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(back, data);
        Ok(())
    });
    assert!(outcome.is_ok(), "{outcome:?}");
}
