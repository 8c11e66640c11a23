-- Client-certificate authentication (mTLS) on the gateway's HTTPS listener (issue 17).
-- An API trusts the CAs of its `mtls.ca_bundle`; a client certificate that chains to one
-- of them identifies the consumer a certificate binding names: by the leaf's SHA-256
-- fingerprint, or by a subject name (a SAN DNS name, e-mail or URI, or the subject CN).
-- Constraints are named <table>_<field>_<kind>, as in the v1 schema.

ALTER TABLE apis
    ADD COLUMN mtls jsonb
        CONSTRAINT apis_mtls_check CHECK (mtls IS NULL OR jsonb_typeof(mtls) = 'object'),
    DROP CONSTRAINT apis_auth_methods_check,
    ADD CONSTRAINT apis_auth_methods_check
        CHECK (auth_methods <@ ARRAY['key_auth', 'jwt', 'introspection', 'mtls', 'anonymous']::text[]);

ALTER TABLE routes
    DROP CONSTRAINT routes_auth_methods_check,
    ADD CONSTRAINT routes_auth_methods_check
        CHECK (auth_methods <@ ARRAY['key_auth', 'jwt', 'introspection', 'mtls', 'anonymous']::text[]);

-- Which consumer a client certificate stands for: exactly one of a fingerprint (lower-case
-- hex of the leaf's SHA-256) or a subject name. One consumer per fingerprint and per
-- subject; a consumer may have many. Deleted with their consumer.
CREATE TABLE certificate_bindings (
    id          uuid PRIMARY KEY,
    consumer_id uuid NOT NULL
        CONSTRAINT certificate_bindings_consumer_id_fkey REFERENCES consumers (id) ON DELETE CASCADE,
    fingerprint text
        CONSTRAINT certificate_bindings_fingerprint_check CHECK (fingerprint ~ '^[0-9a-f]{64}$'),
    subject     text
        CONSTRAINT certificate_bindings_subject_check CHECK (length(subject) BETWEEN 1 AND 1000),
    version     bigint NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT certificate_bindings_match_check CHECK (num_nonnulls(fingerprint, subject) = 1)
);
CREATE UNIQUE INDEX certificate_bindings_fingerprint_key ON certificate_bindings (fingerprint);
-- (MD5: a subject can be longer than a b-tree entry may be; gateways match exact strings.)
CREATE UNIQUE INDEX certificate_bindings_subject_key ON certificate_bindings (md5(subject));
CREATE INDEX certificate_bindings_consumer_id_idx ON certificate_bindings (consumer_id);
