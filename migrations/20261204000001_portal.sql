-- The developer portal: accounts (verified e-mail, one-time tokens), organisations that own
-- apps, browser sessions shared with the admin UI, the mail outbox, subscription requests
-- with a comment and an admin's decision, key rotation, API tags for the catalog.

ALTER TABLE developers ADD COLUMN email_verified_at timestamptz;

-- Organisations own apps (consumers), so people can join and leave without taking the
-- apps' keys with them. Every developer has at least one, made at sign-up.
CREATE TABLE organisations (
    id         uuid PRIMARY KEY,
    name       text NOT NULL CONSTRAINT organisations_name_check CHECK (length(name) BETWEEN 1 AND 100),
    version    bigint NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE organisation_members (
    organisation_id uuid NOT NULL CONSTRAINT organisation_members_organisation_id_fkey
                        REFERENCES organisations (id) ON DELETE CASCADE,
    developer_id    uuid NOT NULL CONSTRAINT organisation_members_developer_id_fkey
                        REFERENCES developers (id) ON DELETE CASCADE,
    role            text NOT NULL CONSTRAINT organisation_members_role_check CHECK (role IN ('admin', 'member')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organisation_id, developer_id)
);
CREATE INDEX organisation_members_developer_id_idx ON organisation_members (developer_id);

-- Invitations by e-mail; only the SHA-256 of the link's token is kept.
CREATE TABLE organisation_invites (
    id              uuid PRIMARY KEY,
    organisation_id uuid NOT NULL CONSTRAINT organisation_invites_organisation_id_fkey
                        REFERENCES organisations (id) ON DELETE CASCADE,
    email           text NOT NULL CONSTRAINT organisation_invites_email_check
                        CHECK (email ~ '^[^@\s]+@[^@\s]+$' AND length(email) <= 254),
    role            text NOT NULL CONSTRAINT organisation_invites_role_check CHECK (role IN ('admin', 'member')),
    token_hash      bytea NOT NULL CONSTRAINT organisation_invites_token_hash_key UNIQUE
                        CONSTRAINT organisation_invites_token_hash_check CHECK (octet_length(token_hash) = 32),
    invited_by      uuid CONSTRAINT organisation_invites_invited_by_fkey REFERENCES developers (id) ON DELETE SET NULL,
    expires_at      timestamptz NOT NULL,
    accepted_at     timestamptz,
    revoked_at      timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX organisation_invites_organisation_id_idx ON organisation_invites (organisation_id);

-- Apps made in the portal belong to an organisation; admin-made ones to a developer or to
-- nobody, as before. Names are unique per owner.
ALTER TABLE consumers
    ADD COLUMN organisation_id uuid CONSTRAINT consumers_organisation_id_fkey REFERENCES organisations (id) ON DELETE CASCADE,
    ADD CONSTRAINT consumers_owner_check CHECK (organisation_id IS NULL OR developer_id IS NULL);
DROP INDEX consumers_name_key;
CREATE UNIQUE INDEX consumers_name_key ON consumers
    (coalesce(organisation_id, developer_id, '00000000-0000-0000-0000-000000000000'::uuid), lower(name));
CREATE INDEX consumers_organisation_id_idx ON consumers (organisation_id);

-- One-time links mailed to a developer: e-mail verification, password reset, e-mail change.
CREATE TABLE developer_tokens (
    token_hash   bytea PRIMARY KEY CONSTRAINT developer_tokens_token_hash_check CHECK (octet_length(token_hash) = 32),
    developer_id uuid NOT NULL CONSTRAINT developer_tokens_developer_id_fkey REFERENCES developers (id) ON DELETE CASCADE,
    purpose      text NOT NULL CONSTRAINT developer_tokens_purpose_check
                     CHECK (purpose IN ('verify_email', 'reset_password', 'change_email')),
    new_email    text CONSTRAINT developer_tokens_new_email_check CHECK (length(new_email) <= 254),
    expires_at   timestamptz NOT NULL,
    used_at      timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX developer_tokens_developer_id_idx ON developer_tokens (developer_id);

-- Browser sessions of the portal and the admin UI. The cookie holds a random id; only its
-- SHA-256 is stored, so a copy of this table opens no session.
CREATE TABLE web_sessions (
    id_hash       bytea PRIMARY KEY CONSTRAINT web_sessions_id_hash_check CHECK (octet_length(id_hash) = 32),
    developer_id  uuid CONSTRAINT web_sessions_developer_id_fkey REFERENCES developers (id) ON DELETE CASCADE,
    admin_user_id uuid CONSTRAINT web_sessions_admin_user_id_fkey REFERENCES admin_users (id) ON DELETE CASCADE,
    csrf_token    text NOT NULL,
    client_ip     text NOT NULL DEFAULT '',
    user_agent    text NOT NULL DEFAULT '' CONSTRAINT web_sessions_user_agent_check CHECK (length(user_agent) <= 300),
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    CONSTRAINT web_sessions_subject_check CHECK ((developer_id IS NULL) <> (admin_user_id IS NULL))
);
CREATE INDEX web_sessions_developer_id_idx ON web_sessions (developer_id);
CREATE INDEX web_sessions_admin_user_id_idx ON web_sessions (admin_user_id);
CREATE INDEX web_sessions_expires_at_idx ON web_sessions (expires_at);

-- Every mail the platform sends or, with the log transport, only logs.
CREATE TABLE mail_outbox (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now(),
    recipient  text NOT NULL,
    subject    text NOT NULL,
    body       text NOT NULL,
    transport  text NOT NULL CONSTRAINT mail_outbox_transport_check CHECK (transport IN ('log', 'smtp')),
    status     text NOT NULL CONSTRAINT mail_outbox_status_check CHECK (status IN ('logged', 'sent', 'failed')),
    error      text
);
CREATE INDEX mail_outbox_created_at_idx ON mail_outbox (created_at);

-- A subscription request carries the developer's comment; an admin's decision its reason.
-- A rejected request stays visible to the developer (with the reason) until they ask again.
ALTER TABLE subscriptions DROP CONSTRAINT subscriptions_status_check;
ALTER TABLE subscriptions
    ADD CONSTRAINT subscriptions_status_check CHECK (status IN ('pending', 'active', 'suspended', 'rejected')),
    ADD COLUMN comment text NOT NULL DEFAULT '' CONSTRAINT subscriptions_comment_check CHECK (length(comment) <= 1000),
    ADD COLUMN decision_reason text NOT NULL DEFAULT ''
        CONSTRAINT subscriptions_decision_reason_check CHECK (length(decision_reason) <= 1000),
    ADD COLUMN decided_at timestamptz;
CREATE INDEX subscriptions_pending_idx ON subscriptions (created_at) WHERE status = 'pending';

-- A rotated key points at the key that replaced it (it keeps working until its expiry).
ALTER TABLE api_keys
    ADD COLUMN replaced_by uuid CONSTRAINT api_keys_replaced_by_fkey REFERENCES api_keys (id) ON DELETE SET NULL;

-- Catalog tags.
ALTER TABLE apis ADD COLUMN tags text[] NOT NULL DEFAULT '{}'
    CONSTRAINT apis_tags_check CHECK (cardinality(tags) <= 20);

-- "Live on all gateways" looks up the newest event of an entity.
CREATE INDEX config_events_entity_id_idx ON config_events (entity_id, id);
