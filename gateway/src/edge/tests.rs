use super::*;

#[test]
fn query_keys_are_found_decoded_and_hidden() {
    assert_eq!(query_param("a=1&api_key=tg_x%2By&b=2", "api_key").as_deref(), Some("tg_x+y"));
    assert_eq!(query_param("a=1&api%5Fkey=k", "api_key").as_deref(), Some("k"));
    assert_eq!(query_param("a=1", "api_key"), None);
    let mut pq = "/orders?a=1&api_key=secret&b=2&api_key=again".to_owned();
    remove_query_param(&mut pq, "api_key");
    assert_eq!(pq, "/orders?a=1&b=2");
    let mut pq = "/orders?api_key=secret".to_owned();
    remove_query_param(&mut pq, "api_key");
    assert_eq!(pq, "/orders");
}

#[test]
fn bearer_tokens_need_the_scheme() {
    let mut h = HeaderMap::new();
    h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer abc.def.ghi"));
    assert_eq!(bearer(&h).as_deref(), Some("abc.def.ghi"));
    h.insert(header::AUTHORIZATION, HeaderValue::from_static("bearer  tok "));
    assert_eq!(bearer(&h).as_deref(), Some("tok"));
    h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic dXNlcjpwYXNz"));
    assert_eq!(bearer(&h), None);
    h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
    assert_eq!(bearer(&h), None);
}

#[test]
fn challenges_follow_the_methods() {
    assert_eq!(challenge(Methods::KEY_AUTH), Challenge::ApiKey);
    assert_eq!(challenge(Methods::parse(&["jwt".to_owned()])), Challenge::Bearer);
    assert_eq!(challenge(Methods::parse(&["key_auth".to_owned(), "introspection".to_owned()])), Challenge::Both);
}

#[test]
fn identity_fields_read_the_same_as_lines_maps_and_lookups() {
    use crate::wire::ExtraFields;
    let anonymous = Identity::anonymous();
    let mut lines = Vec::new();
    ExtraFields::write_lines(&anonymous, &mut lines);
    assert_eq!(lines, b"x-anonymous-consumer: true\r\n");
    let mut map = HeaderMap::new();
    map.insert(&X_ANONYMOUS_CONSUMER, HeaderValue::from_static("forged"));
    ExtraFields::write_headers(&anonymous, &mut map);
    assert_eq!(map.get(&X_ANONYMOUS_CONSUMER), Some(&HeaderValue::from_static("true")));
    assert_eq!(ExtraFields::get(&anonymous, &X_ANONYMOUS_CONSUMER), Some(HeaderValue::from_static("true")));
    assert_eq!(ExtraFields::get(&anonymous, &X_CONSUMER_ID), None);
    assert_eq!(ExtraFields::get(&anonymous, &header::HOST), None);
}

mod admission {
    use std::collections::BTreeMap;

    use super::super::*;
    use crate::config::model::*;
    use crate::config::pg::Changed;
    use crate::config::source::Sink;
    use crate::error::{GatewayError, Refusal};
    use crate::limits::Limiter;
    use crate::snapshot::ConfigStore;
    use crate::wire::ExtraFields;

    const KEY: &str = "tg_test_key_0123456789";

    /// One API (`auth_methods` as given) with one route, a plan of 2 requests/minute, and a
    /// consumer holding KEY and a subscription in `status`.
    fn data(methods: &[&str], status: &str) -> (ConfigData, Uuid, Uuid) {
        let (api_id, route_id, plan_id, consumer_id, key_id) =
            (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let mut d = ConfigData::default();
        d.apis.insert(
            api_id,
            ApiDef {
                id: api_id,
                name: "orders".into(),
                upstream_protocol: "http".into(),
                lb_policy: "round_robin".into(),
                connect_timeout_ms: 1000,
                read_timeout_ms: 1000,
                retries: 0,
                auth_methods: methods.iter().map(|m| m.to_string()).collect(),
                enabled: true,
                total_timeout_ms: 0,
                hash_on: None,
                retry_on_statuses: vec![],
                health_check: None,
                passive_health: None,
                circuit_breaker: None,
                canary_weight: 0,
                canary_header: None,
                key_header: "x-api-key".into(),
                key_query_param: Some("api_key".into()),
                hide_credentials: true,
                jwt: None,
                introspection: None,
                anonymous_plan_id: Some(plan_id),
                upstream_tls: None,
                mtls: None,
            },
        );
        d.plans.insert(
            plan_id,
            PlanDef {
                id: plan_id,
                api_id,
                name: "free".into(),
                rate_limit_per_second: None,
                rate_limit_per_minute: Some(2),
                rate_limit_per_hour: None,
                burst: 1,
                quota_per_day: None,
                quota_per_month: None,
                limit_mode: "local".into(),
                redis_failure_policy: "fail_open".into(),
                route_costs: BTreeMap::new(),
            },
        );
        d.consumers.insert(
            consumer_id,
            ConsumerDef { id: consumer_id, name: "acme".into(), developer_id: None, custom_id: None, enabled: true },
        );
        let key_hash = KeyHash(Sha256::digest(KEY.as_bytes()).into());
        d.keys.insert(&KeyDef { id: key_id, consumer_id, key_hash, expires_at: None, revoked: false });
        let sub = Uuid::new_v4();
        d.subscriptions.insert(sub, SubscriptionDef { id: sub, consumer_id, plan_id, api_id, status: status.into() });
        (d, api_id, route_id)
    }

    async fn admit_with(
        store: &ConfigStore,
        api_id: Uuid,
        route_id: Uuid,
        headers: &mut HeaderMap,
        pq: &mut String,
    ) -> Result<Admitted, GatewayError> {
        admit_on(store, &Freshness::default(), (api_id, route_id), headers, pq).await
    }

    /// [`admit_with`] on a node whose configuration is as fresh as `freshness` says.
    async fn admit_on(
        store: &ConfigStore,
        freshness: &Freshness,
        (api_id, route_id): (Uuid, Uuid),
        headers: &mut HeaderMap,
        pq: &mut String,
    ) -> Result<Admitted, GatewayError> {
        let snapshot = store.load_full();
        let api = snapshot.apis.get(&api_id).expect("api compiled").clone();
        let call = Call {
            snapshot: &snapshot,
            api: &api,
            route_id,
            route_cost: 1,
            route_methods: None,
            peer: "192.0.2.1".parse().expect("ip"),
            client_cert: None,
            trusted_proxies: &[],
            rate_limit_headers: crate::limits::HeaderStyle::Ietf,
            freshness,
        };
        admit(&call, &store.limiter, headers, pq, &mut super::Learnt::default()).await
    }

    fn store_with(d: &ConfigData) -> ConfigStore {
        let store = ConfigStore::new(Arc::new(Limiter::local()), Default::default());
        store.publish(d, Changed::all());
        store
    }

    #[tokio::test]
    async fn a_subscribed_key_passes_with_identity_and_limits() {
        let (d, api, route) = data(&["key_auth"], "active");
        let store = store_with(&d);
        let mut h = HeaderMap::new();
        h.insert("x-api-key", HeaderValue::from_static(KEY));
        h.insert("x-consumer-id", HeaderValue::from_static("forged"));
        let mut pq = "/orders".to_owned();
        let Admitted { identity, decision } = admit_with(&store, api, route, &mut h, &mut pq).await.expect("admitted");
        let decision = decision.expect("counted");
        assert_eq!((decision.limit, decision.remaining), (2, 1));
        let policy = decision.policy.as_ref().and_then(|p| p.to_str().ok());
        assert_eq!(policy, Some("\"minute\";q=3;w=60"), "the plan's promise: 2 a minute + a burst of 1");
        let consumer = d.consumers.values().next().expect("consumer");
        let key = d.keys.values().next().expect("key");
        let mut sent = HeaderMap::new();
        identity.write_headers(&mut sent);
        assert_eq!(sent.len(), 4, "{sent:?}");
        assert_eq!(sent["x-consumer-id"], consumer.id.to_string().as_str());
        assert_eq!(sent["x-consumer-username"], "acme");
        assert_eq!(sent["x-plan"], "free");
        assert_eq!(sent["x-credential-id"], key.id.to_string().as_str());
        assert_eq!(identity.get(&X_CREDENTIAL_ID).as_ref(), sent.get("x-credential-id"));
        assert!(identity.get(&X_ANONYMOUS_CONSUMER).is_none());
        assert!(h.get("x-consumer-id").is_none(), "the client's copy is removed");
        assert!(h.get("x-api-key").is_none(), "the key is hidden from the upstream");
        // 2 per minute: the second passes, the third is refused with a retry time.
        let mut h2 = HeaderMap::new();
        h2.insert("x-api-key", HeaderValue::from_static(KEY));
        admit_with(&store, api, route, &mut h2.clone(), &mut pq).await.expect("second admitted");
        match admit_with(&store, api, route, &mut h2, &mut pq).await {
            Err(GatewayError::RateLimited(d)) => assert!(d.retry_after.is_some_and(|r| r.as_secs() <= 60)),
            other => panic!("expected 429, got {other:?}"),
        }
    }

    /// The identity lines an upstream request carries (pre-written in the snapshot) are the
    /// fields one by one, with and without the optional ones, and for anonymous callers.
    #[tokio::test]
    async fn identity_lines_are_the_fields_written_one_by_one() {
        fn by_field(identity: &Identity) -> Vec<u8> {
            let mut out = Vec::new();
            identity.each(&mut |n, v| crate::wire::codec::put(&mut out, &[n.as_str().as_bytes(), b": ", v, b"\r\n"]));
            out
        }
        for custom_id in [None, Some("crm-42")] {
            let (mut d, api, route) = data(&["key_auth"], "active");
            d.consumers.values_mut().for_each(|c| c.custom_id = custom_id.map(str::to_owned));
            let store = store_with(&d);
            let mut h = HeaderMap::new();
            h.insert("x-api-key", HeaderValue::from_static(KEY));
            let Admitted { identity, .. } =
                admit_with(&store, api, route, &mut h, &mut "/orders".to_owned()).await.expect("admitted");
            let mut lines = Vec::new();
            identity.write_lines(&mut lines);
            let text = String::from_utf8_lossy(&lines).into_owned();
            assert_eq!(text, String::from_utf8_lossy(&by_field(&identity)));
            assert_eq!(text.matches("\r\n").count(), 4 + usize::from(custom_id.is_some()), "{text}");
            assert_eq!(text.contains("x-consumer-custom-id: crm-42\r\n"), custom_id.is_some(), "{text}");
        }
        let anonymous = Identity::anonymous();
        let mut lines = Vec::new();
        anonymous.write_lines(&mut lines);
        assert_eq!(lines, by_field(&anonymous));
    }

    /// Only the identity headers' own names are taken for them.
    #[test]
    fn identity_names_are_told_from_other_x_fields() {
        for name in IDENTITY_HEADERS {
            assert!(is_identity_name(name.as_str()), "{name}");
        }
        for name in ["x-api-key", "x-request-id", "x-consumer", "x-plans", "x-consumer-id2", "consumer-id", "host"] {
            assert!(!is_identity_name(name), "{name}");
        }
    }

    /// Past `--max-config-staleness`, keys and tokens get 503 config-stale (a revoked key
    /// must not pass on an old configuration); callers without credentials are served.
    #[tokio::test]
    async fn a_stale_node_refuses_credentials_but_serves_anonymous_calls() {
        let (d, api, route) = data(&["key_auth", "jwt", "anonymous"], "active");
        let store = store_with(&d);
        let stale = Freshness::new(Some(std::time::Duration::from_secs(30)));
        stale.confirmed_ago(std::time::Duration::from_secs(31));
        stale.check();
        let pq = || "/orders".to_owned();
        for (name, value) in [("x-api-key", KEY), ("authorization", "Bearer a.b.c")] {
            let mut h = HeaderMap::new();
            h.insert(name, HeaderValue::from_static(value));
            let refused = admit_on(&store, &stale, (api, route), &mut h, &mut pq()).await;
            let e = refused.expect_err("refused");
            assert!(matches!(e, GatewayError::ConfigStale), "{name}: {e:?}");
            assert_eq!(e.status(), 503);
            assert!(e.problem_json().contains("urn:tollgate:problem:config-stale"), "{}", e.problem_json());
        }
        let anonymous = admit_on(&store, &stale, (api, route), &mut HeaderMap::new(), &mut pq()).await;
        assert!(anonymous.is_ok_and(|a| a.identity.get(&X_ANONYMOUS_CONSUMER).is_some()));
        stale.confirm();
        stale.check();
        let mut h = HeaderMap::new();
        h.insert("x-api-key", HeaderValue::from_static(KEY));
        admit_on(&store, &stale, (api, route), &mut h, &mut pq()).await.expect("fresh again: admitted");
    }

    #[tokio::test]
    async fn keys_in_the_query_are_accepted_and_removed() {
        let (d, api, route) = data(&["key_auth"], "active");
        let store = store_with(&d);
        let mut pq = format!("/orders?a=1&api_key={KEY}");
        admit_with(&store, api, route, &mut HeaderMap::new(), &mut pq).await.expect("admitted");
        assert_eq!(pq, "/orders?a=1");
    }

    #[tokio::test]
    async fn bad_keys_and_missing_subscriptions_are_refused() {
        let (mut d, api, route) = data(&["key_auth"], "pending");
        let store = store_with(&d);
        let mut pq = "/".to_owned();
        let attempt = |key: &'static str| {
            let mut h = HeaderMap::new();
            if !key.is_empty() {
                h.insert("x-api-key", HeaderValue::from_static(key));
            }
            h
        };
        let err = admit_with(&store, api, route, &mut attempt(""), &mut pq).await.expect_err("no key");
        assert!(matches!(err, GatewayError::MissingCredentials(Challenge::ApiKey)));
        let err = admit_with(&store, api, route, &mut attempt("tg_unknown"), &mut pq).await.expect_err("unknown");
        assert!(matches!(err, GatewayError::InvalidCredentials { .. }));
        let err = admit_with(&store, api, route, &mut attempt(KEY), &mut pq).await.expect_err("pending");
        assert!(matches!(err, GatewayError::Forbidden(Refusal::SubscriptionPending)));

        for s in d.subscriptions.values_mut() {
            s.status = "suspended".into();
        }
        store.publish(&d, Changed::all());
        let err = admit_with(&store, api, route, &mut attempt(KEY), &mut pq).await.expect_err("suspended");
        assert!(matches!(err, GatewayError::Forbidden(Refusal::SubscriptionSuspended)));

        d.subscriptions.clear();
        store.publish(&d, Changed::all());
        let err = admit_with(&store, api, route, &mut attempt(KEY), &mut pq).await.expect_err("none");
        assert!(matches!(err, GatewayError::Forbidden(Refusal::SubscriptionRequired)));

        for c in d.consumers.values_mut() {
            c.enabled = false;
        }
        store.publish(&d, Changed::all());
        let err = admit_with(&store, api, route, &mut attempt(KEY), &mut pq).await.expect_err("disabled");
        assert!(matches!(err, GatewayError::Forbidden(Refusal::ConsumerDisabled)));

        for mut k in d.keys.clone().values() {
            k.expires_at = Some(unix_now() - 1);
            d.keys.insert(&k);
        }
        store.publish(&d, Changed::all());
        let err = admit_with(&store, api, route, &mut attempt(KEY), &mut pq).await.expect_err("expired");
        assert!(matches!(err, GatewayError::InvalidCredentials { .. }));

        for mut k in d.keys.clone().values() {
            (k.expires_at, k.revoked) = (None, true);
            d.keys.insert(&k);
        }
        store.publish(&d, Changed::all());
        let err = admit_with(&store, api, route, &mut attempt(KEY), &mut pq).await.expect_err("revoked");
        assert!(matches!(err, GatewayError::InvalidCredentials { .. }));
    }

    #[tokio::test]
    async fn anonymous_callers_are_limited_by_the_anonymous_plan() {
        let (d, api, route) = data(&["key_auth", "anonymous"], "active");
        let store = store_with(&d);
        let mut pq = "/".to_owned();
        let mut h = HeaderMap::new();
        let Admitted { identity, decision } = admit_with(&store, api, route, &mut h, &mut pq).await.expect("anonymous");
        assert_eq!(decision.expect("counted").remaining, 1);
        let mut sent = HeaderMap::new();
        identity.write_headers(&mut sent);
        assert_eq!(sent["x-anonymous-consumer"], "true");
        assert!(sent.get("x-consumer-id").is_none());
        // A presented but wrong key is not downgraded to anonymous.
        let mut h = HeaderMap::new();
        h.insert("x-api-key", HeaderValue::from_static("tg_wrong"));
        let err = admit_with(&store, api, route, &mut h, &mut pq).await.expect_err("wrong key");
        assert!(matches!(err, GatewayError::InvalidCredentials { .. }));
    }
}
