-- Usage analytics (see docs/usage.md). Gateways aggregate answered requests in memory and
-- flush them here; the admin rolls minutes up into hours and days. No per-request rows.
--
-- A series is (bucket, API, route, consumer, credential, plan, status class). Absent
-- dimensions (an unrouted request has no API; an anonymous call has no consumer) are the
-- nil UUID, so every key column is NOT NULL and the primary key is the series.
--
-- status_class: 1, 2, 3 = 1xx, 2xx, 3xx; 4 = a 4xx other than 401/403/429; 401, 403, 429
-- themselves; 5 = a 5xx from the upstream; 500 = a 5xx the gateway made (no target, timeout,
-- circuit open, ...).
--
-- hist: the latency histogram as sorted (bucket index, count) pairs flattened into one array,
-- [i0, n0, i1, n1, ...]; bucket i covers the microsecond range of `usage::Histogram` (16
-- log-scale buckets per power of two: within 3.2 % of any latency it holds).

CREATE FUNCTION usage_hist_pairs(h bigint[]) RETURNS TABLE (i bigint, n bigint)
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT h[2 * g - 1], h[2 * g] FROM generate_series(1, coalesce(cardinality(h), 0) / 2) AS g $$;

-- The histogram holding both a's and b's counts.
CREATE FUNCTION usage_hist_add(a bigint[], b bigint[]) RETURNS bigint[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
    SELECT coalesce(array_agg(e.v ORDER BY s.i, e.k), '{}')
    FROM (SELECT p.i, sum(p.n)::bigint AS n
          FROM (SELECT * FROM usage_hist_pairs(a) UNION ALL SELECT * FROM usage_hist_pairs(b)) AS p
          GROUP BY p.i) AS s,
         LATERAL (VALUES (0, s.i), (1, s.n)) AS e (k, v)
    $$;

CREATE TABLE usage_minutes (
    bucket         timestamptz NOT NULL,
    api_id         uuid NOT NULL,
    route_id       uuid NOT NULL,
    consumer_id    uuid NOT NULL,
    credential_id  uuid NOT NULL,
    plan_id        uuid NOT NULL,
    status_class   smallint NOT NULL
                       CONSTRAINT usage_minutes_status_class_check CHECK (status_class IN (1, 2, 3, 4, 401, 403, 429, 5, 500)),
    requests       bigint NOT NULL,
    request_bytes  bigint NOT NULL,
    response_bytes bigint NOT NULL,
    latency_us_sum bigint NOT NULL,
    hist           bigint[] NOT NULL,
    CONSTRAINT usage_minutes_pkey PRIMARY KEY (bucket, api_id, route_id, consumer_id, credential_id, plan_id, status_class)
);
CREATE INDEX usage_minutes_consumer_idx ON usage_minutes (consumer_id, bucket);

CREATE TABLE usage_hours (LIKE usage_minutes INCLUDING ALL);
CREATE TABLE usage_days (LIKE usage_minutes INCLUDING ALL);

-- The same per API and status class only (route, consumer, credential and plan all nil,
-- meaning "all"): what API dashboards read, a few rows per API and bucket however many
-- consumers call it. Written by the same flush and roll-ups.
CREATE TABLE usage_api_minutes (LIKE usage_minutes INCLUDING CONSTRAINTS INCLUDING DEFAULTS);
ALTER TABLE usage_api_minutes ADD CONSTRAINT usage_api_minutes_pkey PRIMARY KEY (bucket, api_id, route_id, consumer_id, credential_id, plan_id, status_class);
CREATE TABLE usage_api_hours (LIKE usage_api_minutes INCLUDING ALL);
CREATE TABLE usage_api_days (LIKE usage_api_minutes INCLUDING ALL);

-- One row per flush a node has written: a retried flush (same node, same sequence) is
-- recognised and adds nothing.
CREATE TABLE usage_flushes (
    node_id    uuid NOT NULL,
    seq        bigint NOT NULL,
    series     integer NOT NULL,
    requests   bigint NOT NULL,
    at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT usage_flushes_pkey PRIMARY KEY (node_id, seq)
);
CREATE INDEX usage_flushes_at_idx ON usage_flushes (at);

-- Hours (tier 'hour') and days (tier 'day') whose source rows changed since they were last
-- rolled up. A flush marks the hours it wrote; rolling up an hour marks its day.
CREATE TABLE usage_rollup_pending (
    tier       text NOT NULL CONSTRAINT usage_rollup_pending_tier_check CHECK (tier IN ('hour', 'day')),
    bucket     timestamptz NOT NULL,
    touched_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT usage_rollup_pending_pkey PRIMARY KEY (tier, bucket)
);

-- The nodes' own quota counters of `local` plans (a node counts its share in memory), as of
-- its last flush: the admin's quota answer for a local plan is their sum.
CREATE TABLE usage_local_quotas (
    node_id      uuid NOT NULL,
    plan_id      uuid NOT NULL,
    consumer_id  uuid NOT NULL,
    period       text NOT NULL CONSTRAINT usage_local_quotas_period_check CHECK (period IN ('day', 'month')),
    window_start timestamptz NOT NULL,
    used         bigint NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT usage_local_quotas_pkey PRIMARY KEY (plan_id, consumer_id, period, node_id)
);

-- When a subscription's consumer last called its API (from the flushes, never per request).
ALTER TABLE subscriptions ADD COLUMN last_call_at timestamptz;
