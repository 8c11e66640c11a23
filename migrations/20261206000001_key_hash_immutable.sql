-- A key's hash is written once: gateways index keys by hash and apply a changed key row by
-- replacing the entry with its hash (gateway/src/config/keys.rs), so a hash rewritten in
-- place would leave the old one valid on every gateway. Rotation issues a new key row.
CREATE FUNCTION api_keys_hash_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.key_hash IS DISTINCT FROM OLD.key_hash THEN
        RAISE EXCEPTION 'api_keys.key_hash cannot change (issue a new key instead)'
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER api_keys_hash_immutable
    BEFORE UPDATE OF key_hash ON api_keys
    FOR EACH ROW EXECUTE FUNCTION api_keys_hash_immutable();
