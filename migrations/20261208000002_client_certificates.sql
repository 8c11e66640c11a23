-- Client certificates: presented by gateways to upstreams that ask for one (an API's
-- upstream_tls.client_certificate_id); never served by the HTTPS listener (issue 17).
ALTER TABLE certificates
    ADD COLUMN usage text NOT NULL DEFAULT 'server'
        CONSTRAINT certificates_usage_check CHECK (usage IN ('server', 'client')),
    ADD CONSTRAINT certificates_is_default_check CHECK (NOT (usage = 'client' AND is_default)),
    -- A client certificate may name no host (its holder is its subject).
    DROP CONSTRAINT certificates_names_check,
    ADD CONSTRAINT certificates_names_check
        CHECK (cardinality(names) <= 100 AND (usage = 'client' OR cardinality(names) >= 1));

-- An API may name only an existing client certificate; the row is locked so a concurrent
-- delete waits for this transaction (and then sees the reference).
CREATE FUNCTION apis_upstream_tls_client_certificate() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    cid text := NEW.upstream_tls ->> 'client_certificate_id';
BEGIN
    IF cid IS NOT NULL THEN
        PERFORM 1 FROM certificates WHERE id::text = cid AND usage = 'client' FOR SHARE;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'upstream_tls.client_certificate_id % is not a client certificate', cid
                USING ERRCODE = 'check_violation', CONSTRAINT = 'apis_upstream_tls_check', TABLE = 'apis';
        END IF;
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER apis_upstream_tls_client_certificate
    BEFORE INSERT OR UPDATE OF upstream_tls ON apis
    FOR EACH ROW EXECUTE FUNCTION apis_upstream_tls_client_certificate();

-- A client certificate an API names cannot be deleted or turned into a server one.
CREATE FUNCTION certificates_in_use() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (TG_OP = 'DELETE' OR NEW.usage <> 'client')
        AND EXISTS (SELECT 1 FROM apis WHERE upstream_tls ->> 'client_certificate_id' = OLD.id::text) THEN
        RAISE EXCEPTION 'certificate % is the client certificate of an API', OLD.id
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'apis_upstream_tls_client_certificate_fkey';
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER certificates_in_use
    BEFORE DELETE OR UPDATE OF usage ON certificates
    FOR EACH ROW EXECUTE FUNCTION certificates_in_use();
