//! The edge phases of a routed request (see `docs/auth.md`): **authenticate** (API key,
//! JWT, token introspection, client certificate or anonymous, per API or route) → **authorize** (an active
//! subscription of the consumer to this API) → **limit** (the plan's rates and quotas, at
//! the route's cost) → identity headers for the upstream.
//!
//! Everything but the token checks and shared counting is a lookup in the snapshot: the
//! key's SHA-256 in the sharded key index, then the consumer, subscription and plan tables.

pub mod client_ip;

#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub use crate::auth::settings::{
    ApiAuth, JwtAuth, JwtKeySetting, JwtSettings, Methods, valid_key_header, valid_key_query_param,
};
use crate::config::freshness::Freshness;
use crate::config::model::KeyHash;
use crate::error::{Challenge, GatewayError, Refusal};
use crate::key_format::KeyPrefix;
use crate::limits::{Decision, Denial, HeaderStyle, LimitKey, Limiter};
pub use crate::snapshot::identities::{Binding, ConsumerRt, Identities, PlanRt, SubStatus, SubscriptionRt};
pub use crate::snapshot::sharded::Sharded;
use crate::snapshot::{ApiRuntime, Snapshot};
use crate::usage::Attribution;
use crate::wire::conn::ClientCert;

/// Node-wide settings of the edge phases.
#[derive(Debug, Clone, Default)]
pub struct EdgeOptions {
    /// Proxies whose `X-Forwarded-For` is believed (client IP for anonymous limits).
    pub trusted_proxies: Vec<IpNet>,
    /// Which rate-limit fields responses carry.
    pub rate_limit_headers: HeaderStyle,
    /// Answer every request on the plain listener with a redirect to HTTPS on this port
    /// (`308`; the gateway's own `/__tollgate/` endpoints excepted).
    pub https_redirect_port: Option<u16>,
}

pub use crate::snapshot::identities::{
    X_ANONYMOUS_CONSUMER, X_CONSUMER_CUSTOM_ID, X_CONSUMER_ID, X_CONSUMER_USERNAME, X_CREDENTIAL_ID, X_PLAN,
};

/// The identity headers the gateway sets; copies sent by clients never reach an upstream.
const IDENTITY_HEADERS: [&HeaderName; 6] =
    [&X_CONSUMER_ID, &X_CONSUMER_USERNAME, &X_CONSUMER_CUSTOM_ID, &X_CREDENTIAL_ID, &X_PLAN, &X_ANONYMOUS_CONSUMER];

/// The routed request as the edge phases see it.
pub struct Call<'a> {
    pub snapshot: &'a Snapshot,
    pub api: &'a ApiRuntime,
    pub route_id: Uuid,
    pub route_cost: u32,
    /// The route's own methods, overriding the API's.
    pub route_methods: Option<Methods>,
    /// The TCP peer, and the proxies whose `X-Forwarded-For` is believed: the client IP is
    /// resolved from them only when an anonymous call is counted.
    pub peer: IpAddr,
    /// The certificate the TLS client presented, if any.
    pub client_cert: Option<&'a ClientCert>,
    pub trusted_proxies: &'a [IpNet],
    /// Which rate-limit fields the response carries.
    pub rate_limit_headers: HeaderStyle,
    /// A stale node (`--max-config-staleness`) refuses every call that presents credentials.
    pub freshness: &'a Freshness,
}

/// Who is calling.
#[derive(Debug)]
enum Caller {
    Consumer { consumer: Arc<ConsumerRt>, credential: Uuid },
    Anonymous,
}

/// Who the edge phases found the caller to be, as the identity headers the upstream gets.
/// They are not put in the request's header map: the upstream codec writes them straight
/// into the encoded head ([`Identity::fields`]), and only the TLS client and consistent
/// hashing on one of them ask for header values.
#[derive(Debug)]
pub struct Identity {
    caller: Caller,
    plan: Option<Arc<PlanRt>>,
}

impl Identity {
    /// Calls `field` with each identity header and its value, in a fixed order.
    pub fn fields(&self, mut field: impl FnMut(&'static HeaderName, &[u8])) {
        match &self.caller {
            Caller::Consumer { consumer, credential } => {
                field(&X_CONSUMER_ID, consumer.id_header.as_bytes());
                if let Some(name) = &consumer.name_header {
                    field(&X_CONSUMER_USERNAME, name.as_bytes());
                }
                if let Some(custom) = &consumer.custom_id_header {
                    field(&X_CONSUMER_CUSTOM_ID, custom.as_bytes());
                }
                field(&X_CREDENTIAL_ID, &crate::wire::headers::uuid_text(credential));
            }
            Caller::Anonymous => field(&X_ANONYMOUS_CONSUMER, b"true"),
        }
        if let Some(name) = self.plan.as_ref().and_then(|p| p.name_header.as_ref()) {
            field(&X_PLAN, name.as_bytes());
        }
    }

    /// An anonymous caller without a plan.
    #[cfg(test)]
    pub(crate) fn anonymous() -> Self {
        Identity { caller: Caller::Anonymous, plan: None }
    }
}

/// The identity headers as fields the upstream codecs write (and consistent hashing reads).
impl crate::wire::ExtraFields for Identity {
    fn each(&self, field: &mut dyn FnMut(&HeaderName, &[u8])) {
        self.fields(|name, value| field(name, value));
    }

    /// The same lines as [`Self::fields`] gives, from the ones the snapshot wrote in advance
    /// (only the credential id is formatted here).
    fn write_lines(&self, out: &mut Vec<u8>) {
        let plan = self.plan.as_deref().map_or(&[][..], |p| &p.line[..]);
        match &self.caller {
            Caller::Consumer { consumer, credential } => {
                let id = crate::wire::headers::uuid_text(credential);
                let name = X_CREDENTIAL_ID.as_str().as_bytes();
                out.reserve(consumer.lines.len() + name.len() + id.len() + 4 + plan.len());
                out.extend_from_slice(&consumer.lines);
                crate::wire::codec::put(out, &[name, b": ", &id, b"\r\n"]);
            }
            Caller::Anonymous => {
                crate::wire::codec::put(out, &[X_ANONYMOUS_CONSUMER.as_str().as_bytes(), b": true\r\n"])
            }
        }
        out.extend_from_slice(plan);
    }

    /// Only the identity headers are looked for (no credential id formatted for others).
    fn get(&self, name: &HeaderName) -> Option<HeaderValue> {
        IDENTITY_HEADERS.contains(&name).then(|| self.find(name)).flatten()
    }
}

/// What the edge phases let through: who is calling and, when the call was counted, the
/// decision that supplies the response's rate-limit headers.
#[derive(Debug)]
pub struct Admitted {
    pub identity: Identity,
    pub decision: Option<Decision>,
}

/// What the edge phases learnt about the caller, also when they then refused the request.
#[derive(Debug, Default)]
pub struct Learnt {
    /// The consumer, credential and plan, for usage.
    pub who: Attribution,
    /// The displayable start of the API key presented, if one was (for the access log).
    pub key_prefix: Option<KeyPrefix>,
}

/// Runs the edge phases. Client-sent identity headers are removed from `headers`;
/// `upstream_pq` loses the key parameter when credentials are hidden. `learnt` takes the
/// key prefix, consumer, credential and plan as they are found (also when the request is
/// then refused).
pub async fn admit(
    call: &Call<'_>,
    limiter: &Limiter,
    headers: &mut HeaderMap,
    upstream_pq: &mut String,
    learnt: &mut Learnt,
) -> Result<Admitted, GatewayError> {
    strip_identity(headers);
    let caller = authenticate(call, headers, upstream_pq, &mut learnt.key_prefix).await?;
    let who = &mut learnt.who;
    if let Caller::Consumer { consumer, credential } = &caller {
        who.consumer = consumer.id;
        who.credential = *credential;
    }
    let (plan, key) = match &caller {
        Caller::Consumer { consumer, .. } => {
            let plan = authorize(call, consumer)?;
            let key = LimitKey::consumer(plan.id, consumer.id);
            (Some(plan), Some(key))
        }
        Caller::Anonymous => {
            let plan = call.api.auth.anonymous_plan.and_then(|id| call.snapshot.identities.plan(&id)).cloned();
            let key = plan
                .as_ref()
                .map(|p| LimitKey::anonymous(p.id, client_ip::client_ip(call.peer, headers, call.trusted_proxies)));
            (plan, key)
        }
    };
    if let Some(plan) = &plan {
        who.plan = plan.id;
    }
    let decision = match (&plan, key) {
        (Some(plan), Some(key)) => {
            let cost = plan.cost(call.route_id, call.route_cost);
            let mut decision = limiter.check(&key, &plan.limits, cost, limiter.now_for(&plan.limits)).await;
            decision.policy.clone_from(&plan.policy);
            decision.style = call.rate_limit_headers;
            match decision.denied_by {
                None => Some(decision),
                Some(Denial::CounterUnavailable) => return Err(GatewayError::LimitUnavailable(Box::new(decision))),
                Some(Denial::Rate | Denial::Quota) => return Err(GatewayError::RateLimited(Box::new(decision))),
            }
        }
        _ => None,
    };
    Ok(Admitted { identity: Identity { caller, plan }, decision })
}

/// Removes client-sent identity headers. One pass over the names finds whether there are any
/// (there rarely are), instead of a hashed removal per identity header on every request.
fn strip_identity(headers: &mut HeaderMap) {
    let present = headers.keys().any(|n| is_identity_name(n.as_str()));
    if present {
        for name in IDENTITY_HEADERS {
            headers.remove(name);
        }
    }
}

/// Whether `name` (lower case, as header names are) is one of [`IDENTITY_HEADERS`], compared
/// as text: a different length (`x-api-key`, `x-request-id`) settles it without a byte compare.
fn is_identity_name(name: &str) -> bool {
    name.starts_with("x-") && IDENTITY_HEADERS.iter().any(|h| h.as_str() == name)
}

fn challenge(methods: Methods) -> Challenge {
    match (methods.has(Methods::KEY_AUTH), methods.has(Methods::JWT) || methods.has(Methods::INTROSPECTION)) {
        (true, true) => Challenge::Both,
        (false, true) => Challenge::Bearer,
        (false, false) if methods.has(Methods::MTLS) => Challenge::ClientCertificate,
        _ => Challenge::ApiKey,
    }
}

async fn authenticate(
    call: &Call<'_>,
    headers: &mut HeaderMap,
    upstream_pq: &mut String,
    key_prefix: &mut Option<KeyPrefix>,
) -> Result<Caller, GatewayError> {
    let auth = &call.api.auth;
    let methods = call.route_methods.unwrap_or(auth.methods);
    let challenge = challenge(methods);
    if methods.has(Methods::KEY_AUTH)
        && let Some(Found { hash, from_query, prefix }) = find_key(auth, headers, upstream_pq)
    {
        *key_prefix = prefix;
        fresh(call)?;
        let Some(hash) = hash else {
            return Err(GatewayError::InvalidCredentials {
                detail: "the API key is mistyped (its checksum does not match)",
                challenge,
            });
        };
        let caller = key_caller(call.snapshot, &hash, challenge)?;
        // (A key header to hide was taken out of the map as it was read.)
        if auth.hide_credentials
            && from_query
            && let Some(param) = &auth.key_query_param
        {
            remove_query_param(upstream_pq, param);
        }
        return Ok(caller);
    }
    if (methods.has(Methods::JWT) || methods.has(Methods::INTROSPECTION))
        && let Some(token) = bearer(headers)
    {
        fresh(call)?;
        // Boxed: token validation (JWKS fetch, introspection call) needs a large future that
        // would otherwise enlarge every request's, key-auth and anonymous ones too.
        let caller = Box::pin(token_caller(call, methods, &token, challenge)).await?;
        if auth.hide_credentials {
            headers.remove(header::AUTHORIZATION);
        }
        return Ok(caller);
    }
    if methods.has(Methods::MTLS)
        && let Some(cert) = call.client_cert
    {
        fresh(call)?;
        return cert_caller(call, cert, challenge);
    }
    if methods.has(Methods::ANONYMOUS) {
        return Ok(Caller::Anonymous);
    }
    Err(GatewayError::MissingCredentials(challenge))
}

/// The consumer a client certificate is bound to, once the API's CAs accept its chain.
fn cert_caller(call: &Call<'_>, cert: &ClientCert, challenge: Challenge) -> Result<Caller, GatewayError> {
    let mtls = configured(call.api.auth.mtls.as_ref())?;
    mtls.verify(cert).map_err(|detail| GatewayError::InvalidCredentials { detail, challenge })?;
    let identities = &call.snapshot.identities;
    let unbound =
        || GatewayError::InvalidCredentials { detail: "the client certificate is not bound to a consumer", challenge };
    let names = || cert.chain.first().map(|leaf| crate::pki::subject_names(leaf)).unwrap_or_default();
    let binding = identities.cert_binding(&cert.sha256, names).ok_or_else(unbound)?;
    let consumer = identities.consumer(&binding.consumer_id).ok_or_else(unbound)?;
    Ok(Caller::Consumer { consumer: consumer.clone(), credential: binding.id })
}

/// Credentials are judged only against a configuration known current within the bound:
/// a revoked key must not pass on a node cut off from the control plane.
fn fresh(call: &Call<'_>) -> Result<(), GatewayError> {
    if call.freshness.is_stale() { Err(GatewayError::ConfigStale) } else { Ok(()) }
}

/// An API key found in a request.
struct Found {
    /// Its SHA-256; `None` for a key whose checksum shows a typo.
    hash: Option<KeyHash>,
    from_query: bool,
    prefix: Option<KeyPrefix>,
}

/// The API key in the header or, failing that, the query parameter. A key header is removed
/// as it is read when credentials are hidden (one map lookup, not two).
fn find_key(auth: &ApiAuth, headers: &mut HeaderMap, pq: &str) -> Option<Found> {
    let found = |key: &[u8], from_query| Found { hash: key_hash(key), from_query, prefix: KeyPrefix::of(key) };
    let in_header =
        if auth.hide_credentials { headers.remove(&auth.key_header) } else { headers.get(&auth.key_header).cloned() };
    if let Some(v) = in_header {
        return Some(found(v.as_bytes(), false));
    }
    let param = auth.key_query_param.as_deref()?;
    let (_, query) = pq.split_once('?')?;
    let value = query_param(query, param)?;
    Some(found(value.as_bytes(), true))
}

fn key_hash(key: &[u8]) -> Option<KeyHash> {
    (!crate::key_format::is_mistyped(key)).then(|| KeyHash(Sha256::digest(key).into()))
}

/// The decoded value of the first query parameter named `name`.
fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(k) == name).then(|| decode(v))
    })
}

fn decode(s: &str) -> String {
    let plus_as_space = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus_as_space).decode_utf8_lossy().into_owned()
}

/// Removes every `name` parameter from the query of `pq` (path and query).
fn remove_query_param(pq: &mut String, name: &str) {
    let Some((path, query)) = pq.split_once('?') else { return };
    let kept: Vec<&str> =
        query.split('&').filter(|pair| decode(pair.split_once('=').map_or(*pair, |(k, _)| k)) != name).collect();
    let mut next = path.to_owned();
    if !kept.is_empty() {
        next.push('?');
        next.push_str(&kept.join("&"));
    }
    *pq = next;
}

/// The key's consumer: unknown, revoked and expired keys are all the same 401 to the client.
fn key_caller(snapshot: &Snapshot, hash: &KeyHash, challenge: Challenge) -> Result<Caller, GatewayError> {
    // Made only on a refusal (an error built and dropped on every good key costs too).
    let invalid = || GatewayError::InvalidCredentials { detail: "the API key is not valid", challenge };
    let Some(entry) = snapshot.keys.get(hash) else { return Err(invalid()) };
    if entry.revoked || entry.expires_at.is_some_and(|at| at <= unix_now()) {
        return Err(unusable_key(entry, invalid()));
    }
    let consumer = snapshot.identities.consumer(&entry.consumer_id).ok_or_else(invalid)?;
    Ok(Caller::Consumer { consumer: consumer.clone(), credential: entry.key_id })
}

/// A revoked or expired key: logged, and refused like an unknown one. (Cold and out of line:
/// see `proxy::forward::refused`.)
#[cold]
#[inline(never)]
fn unusable_key(entry: &crate::config::keys::KeyEntry, invalid: GatewayError) -> GatewayError {
    let state = if entry.revoked { "revoked" } else { "expired" };
    tracing::debug!(key_id = %entry.key_id, state, "unusable API key presented");
    invalid
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The token of an `Authorization: Bearer` header.
fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
}

/// Validates a bearer token (as a JWT when it looks like one and JWT is accepted, else by
/// introspection) and finds the consumer its issuer and subject are bound to.
async fn token_caller(
    call: &Call<'_>,
    methods: Methods,
    token: &str,
    challenge: Challenge,
) -> Result<Caller, GatewayError> {
    let auth = &call.api.auth;
    let invalid = |detail| GatewayError::InvalidCredentials { detail, challenge };
    let jws_shaped = token.bytes().filter(|b| *b == b'.').count() == 2;
    let use_jwt = methods.has(Methods::JWT) && (jws_shaped || !methods.has(Methods::INTROSPECTION));
    let (issuer, subject) = if use_jwt {
        let jwt = configured(auth.jwt.as_ref())?;
        let claims = jwt.validator.validate(token).await.map_err(|e| {
            tracing::debug!(reason = e.reason(), "JWT refused");
            match e {
                crate::auth::jwt::JwtError::KeysUnavailable => GatewayError::AuthUnavailable,
                _ => invalid("the token is not valid"),
            }
        })?;
        let subject = claims.raw.get(&jwt.subject_claim).and_then(|v| v.as_str()).map(str::to_owned);
        (claims.iss.unwrap_or_default(), subject)
    } else {
        let introspector = configured(auth.introspection.as_ref())?;
        let info = introspector.introspect(token).await.map_err(|e| {
            tracing::debug!(error = %e, "token introspection refused");
            if e.is_unavailable() { GatewayError::AuthUnavailable } else { invalid("the token is not active") }
        })?;
        (info.issuer, info.subject)
    };
    let subject = subject.ok_or(invalid("the token names no subject"))?;
    let binding = call
        .snapshot
        .identities
        .binding(&issuer, &subject)
        .ok_or(invalid("the token's subject is not bound to a consumer"))?;
    let consumer = call
        .snapshot
        .identities
        .consumer(&binding.consumer_id)
        .ok_or(invalid("the token's subject is not bound to a consumer"))?;
    Ok(Caller::Consumer { consumer: consumer.clone(), credential: binding.id })
}

/// Settings that compiled, or a 500 for a method accepted but unusable.
fn configured<T>(setting: Option<&Result<T, String>>) -> Result<&T, GatewayError> {
    match setting {
        Some(Ok(t)) => Ok(t),
        Some(Err(why)) => Err(GatewayError::Internal(format!("authentication misconfigured: {why}"))),
        None => Err(GatewayError::Internal("authentication misconfigured".to_owned())),
    }
}

/// An identified consumer needs to be active and hold an active subscription to the API.
fn authorize(call: &Call<'_>, consumer: &ConsumerRt) -> Result<Arc<PlanRt>, GatewayError> {
    let identities = &call.snapshot.identities;
    if !identities.is_active(consumer) {
        return Err(GatewayError::Forbidden(Refusal::ConsumerDisabled));
    }
    let sub = identities
        .subscription(consumer.id, call.api.id)
        .ok_or(GatewayError::Forbidden(Refusal::SubscriptionRequired))?;
    match sub.status {
        SubStatus::Active => {
            identities.plan(&sub.plan_id).cloned().ok_or(GatewayError::Forbidden(Refusal::SubscriptionRequired))
        }
        SubStatus::Pending => Err(GatewayError::Forbidden(Refusal::SubscriptionPending)),
        SubStatus::Suspended => Err(GatewayError::Forbidden(Refusal::SubscriptionSuspended)),
    }
}
