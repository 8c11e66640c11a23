-- The admin UI: a change made with a stated reason (a key revoked or rotated by an admin)
-- keeps the reason beside it in the audit log.
ALTER TABLE audit_log ADD COLUMN reason text CONSTRAINT audit_log_reason_check CHECK (length(reason) <= 1000);

-- The audit log is filtered by who, what and when in the admin UI.
CREATE INDEX audit_log_actor_idx ON audit_log (actor_name, id);
CREATE INDEX audit_log_at_idx ON audit_log (at);

-- Usage narrowed to one API (the admin dashboard's drill-down, `/usage/top?api_id=`) reads
-- only that API's rows.
CREATE INDEX usage_minutes_api_idx ON usage_minutes (api_id, bucket);
CREATE INDEX usage_hours_api_idx ON usage_hours (api_id, bucket);
CREATE INDEX usage_days_api_idx ON usage_days (api_id, bucket);

-- Keys are found by the prefix shown to people (`tg_a1b2c3`).
CREATE INDEX api_keys_prefix_idx ON api_keys (prefix text_pattern_ops);
