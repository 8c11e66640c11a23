-- TLS to an API's upstreams: a CA bundle, verification, the name sent as SNI (issue 17).
ALTER TABLE apis
    ADD COLUMN upstream_tls jsonb
        CONSTRAINT apis_upstream_tls_check CHECK (upstream_tls IS NULL OR jsonb_typeof(upstream_tls) = 'object');
