-- Data-plane settings of an API's upstream (load balancing, health, resilience, canary)
-- and the gateway node registry used to observe config propagation.

ALTER TABLE apis
    ADD COLUMN total_timeout_ms integer NOT NULL DEFAULT 0
        CONSTRAINT apis_total_timeout_ms_check CHECK (total_timeout_ms BETWEEN 0 AND 3600000),
    ADD COLUMN hash_on text
        CONSTRAINT apis_hash_on_check CHECK (hash_on ~ '^(ip|header:[A-Za-z0-9-]{1,128}|cookie:[A-Za-z0-9_.-]{1,128})$'),
    ADD COLUMN retry_on_statuses integer[] NOT NULL DEFAULT '{502,503,504}'
        CONSTRAINT apis_retry_on_statuses_check CHECK (retry_on_statuses <@ ARRAY[500, 502, 503, 504, 408, 429]),
    ADD COLUMN health_check jsonb
        CONSTRAINT apis_health_check_check CHECK (health_check IS NULL OR jsonb_typeof(health_check) = 'object'),
    ADD COLUMN passive_health jsonb
        CONSTRAINT apis_passive_health_check CHECK (passive_health IS NULL OR jsonb_typeof(passive_health) = 'object'),
    ADD COLUMN circuit_breaker jsonb
        CONSTRAINT apis_circuit_breaker_check CHECK (circuit_breaker IS NULL OR jsonb_typeof(circuit_breaker) = 'object'),
    ADD COLUMN canary_weight integer NOT NULL DEFAULT 0
        CONSTRAINT apis_canary_weight_check CHECK (canary_weight BETWEEN 0 AND 100),
    ADD COLUMN canary_header text
        CONSTRAINT apis_canary_header_check CHECK (canary_header ~ '^[A-Za-z0-9-]{1,128}$');

-- A target belongs to the stable pool or to the canary pool of its API.
ALTER TABLE targets
    ADD COLUMN pool text NOT NULL DEFAULT 'stable' CONSTRAINT targets_pool_check CHECK (pool IN ('stable', 'canary'));

-- Gateway nodes report here: which config event each has applied, and when it last did so.
CREATE TABLE gateway_nodes (
    id               uuid PRIMARY KEY,
    hostname         text NOT NULL DEFAULT '',
    listen           text NOT NULL DEFAULT '',
    version          text NOT NULL DEFAULT '',
    config_source    text NOT NULL DEFAULT 'postgres',
    applied_event_id bigint NOT NULL DEFAULT 0,
    started_at       timestamptz NOT NULL DEFAULT now(),
    last_seen_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX gateway_nodes_last_seen_at_idx ON gateway_nodes (last_seen_at);
