-- OpenAPI documents of an API, several versions each, uploaded through the admin API and
-- rendered by the portal when published. The source is kept as uploaded (JSON or YAML);
-- `document` is its parsed form.
CREATE TABLE api_documents (
    id         uuid PRIMARY KEY,
    api_id     uuid NOT NULL CONSTRAINT api_documents_api_id_fkey REFERENCES apis (id) ON DELETE CASCADE,
    label      text NOT NULL CONSTRAINT api_documents_label_check CHECK (label ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$'),
    title      text NOT NULL CONSTRAINT api_documents_title_check CHECK (length(title) BETWEEN 1 AND 300),
    openapi    text NOT NULL CONSTRAINT api_documents_openapi_check CHECK (openapi ~ '^3\.[01]\.[0-9]+$'),
    format     text NOT NULL CONSTRAINT api_documents_format_check CHECK (format IN ('json', 'yaml')),
    source     text NOT NULL CONSTRAINT api_documents_source_check CHECK (length(source) <= 4194304),
    document   jsonb NOT NULL,
    published  boolean NOT NULL DEFAULT false,
    version    bigint NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT api_documents_label_key UNIQUE (api_id, label)
);
