-- Revoking an admin user's credentials when their password changes or they are disabled
-- or re-enabled. Login tokens (stateless JWTs) carry the user's token generation and are
-- accepted only while it is current; personal access tokens are deleted. Done by a trigger
-- so that every path that changes these columns (API, seeding, manual SQL) revokes.
ALTER TABLE admin_users ADD COLUMN token_generation bigint NOT NULL DEFAULT 0;

CREATE FUNCTION admin_users_revoke_credentials() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.password_hash IS DISTINCT FROM OLD.password_hash OR NEW.disabled IS DISTINCT FROM OLD.disabled THEN
        NEW.token_generation := OLD.token_generation + 1;
        DELETE FROM admin_tokens WHERE admin_user_id = NEW.id;
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER admin_users_revoke_credentials
    BEFORE UPDATE OF password_hash, disabled ON admin_users
    FOR EACH ROW EXECUTE FUNCTION admin_users_revoke_credentials();
