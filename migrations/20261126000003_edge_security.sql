-- Edge security (docs/auth.md): how gateways find a credential, JWT and token
-- introspection settings, anonymous access under a plan, per-route cost and auth methods,
-- per-plan route costs, and token bindings (issuer + subject → consumer).
-- Constraints are named <table>_<field>_<kind>, as in the v1 schema.

ALTER TABLE apis
    ADD COLUMN key_header text NOT NULL DEFAULT 'x-api-key'
        CONSTRAINT apis_key_header_check CHECK (key_header ~ '^[A-Za-z0-9!#$%&''*+.^_`|~-]{1,128}$'),
    ADD COLUMN key_query_param text
        CONSTRAINT apis_key_query_param_check CHECK (key_query_param ~ '^[A-Za-z0-9_.-]{1,128}$'),
    ADD COLUMN hide_credentials boolean NOT NULL DEFAULT true,
    ADD COLUMN jwt jsonb
        CONSTRAINT apis_jwt_check CHECK (jwt IS NULL OR jsonb_typeof(jwt) = 'object'),
    ADD COLUMN introspection jsonb
        CONSTRAINT apis_introspection_check CHECK (introspection IS NULL OR jsonb_typeof(introspection) = 'object'),
    ADD COLUMN anonymous_plan_id uuid
        CONSTRAINT apis_anonymous_plan_id_fkey REFERENCES plans (id) ON DELETE SET NULL;
CREATE INDEX apis_anonymous_plan_id_idx ON apis (anonymous_plan_id);

-- The anonymous plan must be one of the API's own plans. A plan never changes API, so
-- checking the API's row when it is written is enough; deleting the plan clears the field.
CREATE FUNCTION apis_anonymous_plan_same_api() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.anonymous_plan_id IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM plans WHERE id = NEW.anonymous_plan_id AND api_id = NEW.id) THEN
        RAISE EXCEPTION 'anonymous_plan_id must be a plan of this API'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'apis_anonymous_plan_id_check', TABLE = 'apis';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER apis_anonymous_plan_id_check
    BEFORE INSERT OR UPDATE OF anonymous_plan_id ON apis
    FOR EACH ROW EXECUTE FUNCTION apis_anonymous_plan_same_api();

ALTER TABLE routes
    ADD COLUMN cost integer NOT NULL DEFAULT 1
        CONSTRAINT routes_cost_check CHECK (cost BETWEEN 0 AND 1000000),
    -- NULL: the API's methods.
    ADD COLUMN auth_methods text[]
        CONSTRAINT routes_auth_methods_check
        CHECK (auth_methods <@ ARRAY['key_auth', 'jwt', 'introspection', 'anonymous']::text[]);

-- Route id (text) → cost, overriding the route's own cost for subscribers of this plan.
ALTER TABLE plans
    ADD COLUMN route_costs jsonb NOT NULL DEFAULT '{}'
        CONSTRAINT plans_route_costs_check CHECK (
            jsonb_typeof(route_costs) = 'object'
            AND NOT jsonb_path_exists(
                route_costs, '$.* ? (@.type() != "number" || @ < 0 || @ > 1000000 || @ != @.floor())')
        );

-- Keys of route_costs must be routes of the plan's API.
CREATE FUNCTION plans_route_costs_routes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Not an object: the CHECK constraint (evaluated after this trigger) refuses it.
    IF jsonb_typeof(NEW.route_costs) = 'object' AND EXISTS (
        SELECT 1 FROM jsonb_object_keys(NEW.route_costs) AS k(route_id)
        WHERE NOT EXISTS (SELECT 1 FROM routes r WHERE r.id::text = k.route_id AND r.api_id = NEW.api_id)
    ) THEN
        RAISE EXCEPTION 'route_costs keys must be routes of the plan''s API'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'plans_route_costs_check', TABLE = 'plans';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER plans_route_costs_check
    BEFORE INSERT OR UPDATE OF route_costs ON plans
    FOR EACH ROW EXECUTE FUNCTION plans_route_costs_routes();

-- A deleted route's cost overrides go with it (the plans' versions move on, so an If-Match
-- taken before stays honest). Gateways ignore overrides of routes they do not have.
CREATE FUNCTION routes_prune_route_costs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE plans SET route_costs = route_costs - OLD.id::text, version = version + 1, updated_at = now()
        WHERE api_id = OLD.api_id AND route_costs ? OLD.id::text;
    RETURN NULL;
END $$;

CREATE TRIGGER routes_prune_route_costs
    AFTER DELETE ON routes
    FOR EACH ROW EXECUTE FUNCTION routes_prune_route_costs();

-- Token bindings: a JWT's (iss, subject claim) or an introspection answer's (issuer,
-- subject) identifies this consumer. Deleted with the consumer.
CREATE TABLE token_bindings (
    id          uuid PRIMARY KEY,
    consumer_id uuid NOT NULL CONSTRAINT token_bindings_consumer_id_fkey REFERENCES consumers (id) ON DELETE CASCADE,
    issuer      text NOT NULL CONSTRAINT token_bindings_issuer_check CHECK (length(issuer) BETWEEN 1 AND 2000),
    subject     text NOT NULL CONSTRAINT token_bindings_subject_check CHECK (length(subject) BETWEEN 1 AND 2000),
    version     bigint NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
-- One consumer per (issuer, subject). The values can be longer than a b-tree entry may be,
-- so their MD5s are indexed: a fixed-width key, not a security boundary (a collision could
-- only refuse a binding with 409; gateways match the exact strings).
CREATE UNIQUE INDEX token_bindings_subject_key ON token_bindings (md5(issuer), md5(subject));
CREATE INDEX token_bindings_consumer_id_idx ON token_bindings (consumer_id);
