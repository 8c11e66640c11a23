-- Tollgate schema v1: the contract between the control plane and the gateways.
-- Constraints are named <table>_<field>_<kind>; the admin API maps a violated
-- constraint back to the request field it names.

CREATE TABLE admin_users (
    id            uuid PRIMARY KEY,
    email         text NOT NULL CONSTRAINT admin_users_email_check
                      CHECK (email ~ '^[^@\s]+@[^@\s]+$' AND length(email) <= 254),
    display_name  text NOT NULL DEFAULT '' CONSTRAINT admin_users_display_name_check CHECK (length(display_name) <= 200),
    password_hash text NOT NULL,
    role          text NOT NULL CONSTRAINT admin_users_role_check CHECK (role IN ('owner', 'editor', 'viewer')),
    disabled      boolean NOT NULL DEFAULT false,
    version       bigint NOT NULL DEFAULT 1,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX admin_users_email_key ON admin_users (lower(email));

-- Personal access tokens for automation; only the SHA-256 of the secret is kept.
CREATE TABLE admin_tokens (
    id            uuid PRIMARY KEY,
    admin_user_id uuid NOT NULL CONSTRAINT admin_tokens_admin_user_id_fkey REFERENCES admin_users (id) ON DELETE CASCADE,
    name          text NOT NULL CONSTRAINT admin_tokens_name_check CHECK (length(name) BETWEEN 1 AND 100),
    prefix        text NOT NULL,
    token_hash    bytea NOT NULL CONSTRAINT admin_tokens_token_hash_key UNIQUE
                      CONSTRAINT admin_tokens_token_hash_check CHECK (octet_length(token_hash) = 32),
    expires_at    timestamptz,
    last_used_at  timestamptz,
    revoked_at    timestamptz,
    version       bigint NOT NULL DEFAULT 1,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX admin_tokens_admin_user_id_idx ON admin_tokens (admin_user_id);

-- An API (Kong's "service"): one upstream, many routes, many plans.
CREATE TABLE apis (
    id                 uuid PRIMARY KEY,
    name               text NOT NULL CONSTRAINT apis_name_key UNIQUE
                           CONSTRAINT apis_name_check CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,62}$'),
    description        text NOT NULL DEFAULT '' CONSTRAINT apis_description_check CHECK (length(description) <= 2000),
    upstream_protocol  text NOT NULL DEFAULT 'http' CONSTRAINT apis_upstream_protocol_check CHECK (upstream_protocol IN ('http', 'https')),
    lb_policy          text NOT NULL DEFAULT 'round_robin'
                           CONSTRAINT apis_lb_policy_check CHECK (lb_policy IN ('round_robin', 'least_requests', 'consistent_hash')),
    connect_timeout_ms integer NOT NULL DEFAULT 5000 CONSTRAINT apis_connect_timeout_ms_check CHECK (connect_timeout_ms BETWEEN 1 AND 600000),
    read_timeout_ms    integer NOT NULL DEFAULT 60000 CONSTRAINT apis_read_timeout_ms_check CHECK (read_timeout_ms BETWEEN 1 AND 3600000),
    retries            integer NOT NULL DEFAULT 0 CONSTRAINT apis_retries_check CHECK (retries BETWEEN 0 AND 10),
    auth_methods       text[] NOT NULL DEFAULT '{key_auth}'
                           CONSTRAINT apis_auth_methods_check CHECK (auth_methods <@ ARRAY['key_auth', 'jwt', 'introspection', 'anonymous']::text[]),
    openapi_spec       jsonb,
    portal_visible     boolean NOT NULL DEFAULT false,
    enabled            boolean NOT NULL DEFAULT true,
    version            bigint NOT NULL DEFAULT 1,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);

-- Upstream targets of an API. Part of the API's definition: deleted with it.
CREATE TABLE targets (
    id         uuid PRIMARY KEY,
    api_id     uuid NOT NULL CONSTRAINT targets_api_id_fkey REFERENCES apis (id) ON DELETE CASCADE,
    host       text NOT NULL CONSTRAINT targets_host_check CHECK (host ~ '^[A-Za-z0-9.:\[\]-]{1,253}$'),
    port       integer NOT NULL CONSTRAINT targets_port_check CHECK (port BETWEEN 1 AND 65535),
    weight     integer NOT NULL DEFAULT 100 CONSTRAINT targets_weight_check CHECK (weight BETWEEN 0 AND 65535),
    backup     boolean NOT NULL DEFAULT false,
    version    bigint NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT targets_host_key UNIQUE (api_id, host, port)
);

-- Routes of an API. Part of the API's definition: deleted with it.
CREATE TABLE routes (
    id           uuid PRIMARY KEY,
    api_id       uuid NOT NULL CONSTRAINT routes_api_id_fkey REFERENCES apis (id) ON DELETE CASCADE,
    name         text NOT NULL CONSTRAINT routes_name_check CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,62}$'),
    hosts        text[] NOT NULL DEFAULT '{}',
    paths        text[] NOT NULL DEFAULT '{}',
    methods      text[] NOT NULL DEFAULT '{}'
                     CONSTRAINT routes_methods_check
                     CHECK (methods <@ ARRAY['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'TRACE', 'CONNECT']::text[]),
    headers      jsonb NOT NULL DEFAULT '{}' CONSTRAINT routes_headers_check CHECK (jsonb_typeof(headers) = 'object'),
    query        jsonb NOT NULL DEFAULT '{}' CONSTRAINT routes_query_check CHECK (jsonb_typeof(query) = 'object'),
    strip_path   boolean NOT NULL DEFAULT false,
    rewrite_path text,
    priority     integer NOT NULL DEFAULT 0 CONSTRAINT routes_priority_check CHECK (priority BETWEEN -1000 AND 1000),
    version      bigint NOT NULL DEFAULT 1,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT routes_name_key UNIQUE (api_id, name),
    CONSTRAINT routes_paths_check CHECK (cardinality(hosts) + cardinality(paths) > 0)
);
CREATE INDEX routes_api_id_idx ON routes (api_id);

-- Plans: what a subscription to an API allows. Subscriptions are contracts with
-- customers, so a plan that still has them cannot be deleted.
CREATE TABLE plans (
    id                    uuid PRIMARY KEY,
    api_id                uuid NOT NULL CONSTRAINT plans_api_id_fkey REFERENCES apis (id) ON DELETE RESTRICT,
    name                  text NOT NULL CONSTRAINT plans_name_check CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,62}$'),
    description           text NOT NULL DEFAULT '' CONSTRAINT plans_description_check CHECK (length(description) <= 2000),
    rate_limit_per_second integer CONSTRAINT plans_rate_limit_per_second_check CHECK (rate_limit_per_second > 0),
    rate_limit_per_minute integer CONSTRAINT plans_rate_limit_per_minute_check CHECK (rate_limit_per_minute > 0),
    rate_limit_per_hour   integer CONSTRAINT plans_rate_limit_per_hour_check CHECK (rate_limit_per_hour > 0),
    burst                 integer NOT NULL DEFAULT 0 CONSTRAINT plans_burst_check CHECK (burst BETWEEN 0 AND 1000000),
    quota_per_day         bigint CONSTRAINT plans_quota_per_day_check CHECK (quota_per_day > 0),
    quota_per_month       bigint CONSTRAINT plans_quota_per_month_check CHECK (quota_per_month > 0),
    limit_mode            text NOT NULL DEFAULT 'local' CONSTRAINT plans_limit_mode_check CHECK (limit_mode IN ('local', 'redis')),
    redis_failure_policy  text NOT NULL DEFAULT 'fail_open'
                              CONSTRAINT plans_redis_failure_policy_check CHECK (redis_failure_policy IN ('fail_open', 'fail_closed')),
    approval_required     boolean NOT NULL DEFAULT false,
    portal_visible        boolean NOT NULL DEFAULT true,
    version               bigint NOT NULL DEFAULT 1,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT plans_name_key UNIQUE (api_id, name),
    -- target of the subscriptions (plan_id, api_id) foreign key
    CONSTRAINT plans_id_api_id_key UNIQUE (id, api_id)
);

-- Third-party developers (portal accounts). The password is set through the portal.
CREATE TABLE developers (
    id            uuid PRIMARY KEY,
    email         text NOT NULL CONSTRAINT developers_email_check
                      CHECK (email ~ '^[^@\s]+@[^@\s]+$' AND length(email) <= 254),
    name          text NOT NULL CONSTRAINT developers_name_check CHECK (length(name) BETWEEN 1 AND 200),
    password_hash text,
    status        text NOT NULL DEFAULT 'active' CONSTRAINT developers_status_check CHECK (status IN ('pending', 'active', 'disabled')),
    version       bigint NOT NULL DEFAULT 1,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX developers_email_key ON developers (lower(email));

-- Consumers ("apps"): the identity a request is attributed to.
CREATE TABLE consumers (
    id           uuid PRIMARY KEY,
    name         text NOT NULL CONSTRAINT consumers_name_check CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9 ._@-]{0,99}$'),
    developer_id uuid CONSTRAINT consumers_developer_id_fkey REFERENCES developers (id) ON DELETE CASCADE,
    custom_id    text CONSTRAINT consumers_custom_id_key UNIQUE
                     CONSTRAINT consumers_custom_id_check CHECK (length(custom_id) BETWEEN 1 AND 200),
    description  text NOT NULL DEFAULT '' CONSTRAINT consumers_description_check CHECK (length(description) <= 2000),
    enabled      boolean NOT NULL DEFAULT true,
    version      bigint NOT NULL DEFAULT 1,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
-- Names are unique per developer, and among admin-created consumers.
CREATE UNIQUE INDEX consumers_name_key
    ON consumers (coalesce(developer_id, '00000000-0000-0000-0000-000000000000'::uuid), lower(name));
CREATE INDEX consumers_developer_id_idx ON consumers (developer_id);

-- API keys: only the SHA-256 of the secret is stored; the prefix is for display.
CREATE TABLE api_keys (
    id           uuid PRIMARY KEY,
    consumer_id  uuid NOT NULL CONSTRAINT api_keys_consumer_id_fkey REFERENCES consumers (id) ON DELETE CASCADE,
    name         text NOT NULL DEFAULT '' CONSTRAINT api_keys_name_check CHECK (length(name) <= 100),
    prefix       text NOT NULL,
    key_hash     bytea NOT NULL CONSTRAINT api_keys_key_hash_key UNIQUE
                     CONSTRAINT api_keys_key_hash_check CHECK (octet_length(key_hash) = 32),
    expires_at   timestamptz,
    revoked_at   timestamptz,
    last_used_at timestamptz,
    version      bigint NOT NULL DEFAULT 1,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX api_keys_consumer_id_idx ON api_keys (consumer_id);

-- Subscriptions: app x plan. One plan per API per consumer; api_id is the plan's,
-- enforced by the composite foreign key.
CREATE TABLE subscriptions (
    id          uuid PRIMARY KEY,
    consumer_id uuid NOT NULL CONSTRAINT subscriptions_consumer_id_fkey REFERENCES consumers (id) ON DELETE CASCADE,
    plan_id     uuid NOT NULL,
    api_id      uuid NOT NULL,
    status      text NOT NULL CONSTRAINT subscriptions_status_check CHECK (status IN ('pending', 'active', 'suspended')),
    version     bigint NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT subscriptions_plan_id_fkey FOREIGN KEY (plan_id, api_id) REFERENCES plans (id, api_id) ON DELETE RESTRICT,
    CONSTRAINT subscriptions_consumer_id_key UNIQUE (consumer_id, api_id)
);
CREATE INDEX subscriptions_plan_id_idx ON subscriptions (plan_id);

-- Who changed what, when. Never holds secrets or password hashes.
CREATE TABLE audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor_kind  text NOT NULL CONSTRAINT audit_log_actor_kind_check CHECK (actor_kind IN ('admin', 'developer', 'system')),
    actor_id    uuid,
    actor_name  text NOT NULL DEFAULT '',
    action      text NOT NULL,
    entity_kind text NOT NULL,
    entity_id   uuid,
    before      jsonb,
    after       jsonb,
    request_id  text
);
CREATE INDEX audit_log_entity_idx ON audit_log (entity_kind, entity_id);

-- The change log gateways follow. Ids are handed out under a transaction-level
-- advisory lock held to commit, so id order is commit order: a gateway that has
-- applied event N has seen every committed change before N.
CREATE TABLE config_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    entity_kind text NOT NULL,
    entity_id   uuid NOT NULL,
    op          text NOT NULL CONSTRAINT config_events_op_check CHECK (op IN ('create', 'update', 'delete')),
    audit_id    bigint NOT NULL CONSTRAINT config_events_audit_id_fkey REFERENCES audit_log (id)
);

-- At least one active owner must always remain, whatever the order of concurrent
-- requests: checked at commit, after every change to admin_users.
CREATE FUNCTION admin_users_last_owner() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Serialise concurrent demotions so each check sees the others' commits.
    PERFORM pg_advisory_xact_lock(7465656473);
    IF NOT EXISTS (SELECT 1 FROM admin_users WHERE role = 'owner' AND NOT disabled) THEN
        RAISE EXCEPTION 'at least one active owner must remain'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'admin_users_last_owner_check', TABLE = 'admin_users';
    END IF;
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER admin_users_last_owner_check
    AFTER UPDATE OR DELETE ON admin_users
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION admin_users_last_owner();
