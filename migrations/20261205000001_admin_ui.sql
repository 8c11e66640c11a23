-- The admin UI: a change made with a stated reason (a key revoked or rotated by an admin)
-- keeps the reason beside it in the audit log.
ALTER TABLE audit_log ADD COLUMN reason text CONSTRAINT audit_log_reason_check CHECK (length(reason) <= 1000);

-- The audit log is filtered by who, what and when in the admin UI.
CREATE INDEX audit_log_actor_idx ON audit_log (actor_name, id);
CREATE INDEX audit_log_at_idx ON audit_log (at);
