-- TLS certificates the gateways serve, chosen by SNI. The chain is public and kept as PEM;
-- the private key is sealed (AES-256-GCM under the operators' secrets key, bound to its row:
-- gateway/src/seal.rs) and never returned by the API. `names` are the DNS names and IP
-- addresses of the leaf's subjectAltName (wildcards as `*.example.com`), lower case, which
-- is what gateways index; the other columns describe the leaf for people.
CREATE TABLE certificates (
    id                 uuid PRIMARY KEY,
    cert_pem           text NOT NULL,
    key_sealed         text NOT NULL,
    names              text[] NOT NULL,
    subject            text NOT NULL,
    issuer             text NOT NULL,
    serial             text NOT NULL,
    fingerprint_sha256 text NOT NULL,
    not_before         timestamptz NOT NULL,
    not_after          timestamptz NOT NULL,
    chain_length       integer NOT NULL,
    is_default         boolean NOT NULL DEFAULT false,
    version            bigint NOT NULL DEFAULT 1,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT certificates_names_check CHECK (cardinality(names) BETWEEN 1 AND 100)
);

CREATE INDEX certificates_names_idx ON certificates USING gin (names);
CREATE INDEX certificates_not_after_idx ON certificates (not_after);
