-- One schema for SQLite and PostgreSQL: ids are TEXT, times are BIGINT unix milliseconds,
-- structured values are JSON in TEXT, flags are BIGINT 0/1. This keeps every query portable.

CREATE TABLE companies (
    id                   TEXT PRIMARY KEY,
    name                 TEXT NOT NULL,
    timezone             TEXT NOT NULL DEFAULT 'UTC',
    max_concurrent_calls BIGINT NOT NULL DEFAULT 10,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL
);

-- Only a SHA-256 of each key is stored; the key itself is shown once, when it is created.
CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    company_id   TEXT NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    prefix       TEXT NOT NULL,
    key_hash     TEXT NOT NULL UNIQUE,
    created_at   BIGINT NOT NULL,
    revoked_at   BIGINT
);
CREATE INDEX api_keys_company ON api_keys (company_id);

CREATE TABLE bots (
    id              TEXT PRIMARY KEY,
    company_id      TEXT NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'active',
    current_version BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    deleted_at      BIGINT
);
CREATE INDEX bots_company ON bots (company_id, created_at);

-- Every saved config is kept; a call records the version it ran with.
CREATE TABLE bot_config_versions (
    bot_id        TEXT NOT NULL REFERENCES bots (id) ON DELETE CASCADE,
    version       BIGINT NOT NULL,
    config_json   TEXT NOT NULL,
    source_text   TEXT NOT NULL,
    source_format TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (bot_id, version)
);

-- A number routes to exactly one bot.
CREATE TABLE phone_numbers (
    id         TEXT PRIMARY KEY,
    number     TEXT NOT NULL UNIQUE,
    bot_id     TEXT NOT NULL REFERENCES bots (id) ON DELETE CASCADE,
    company_id TEXT NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL
);
CREATE INDEX phone_numbers_bot ON phone_numbers (bot_id);

CREATE TABLE calls (
    id                 TEXT PRIMARY KEY,
    company_id         TEXT NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    bot_id             TEXT NOT NULL,
    bot_config_version BIGINT NOT NULL,
    direction          TEXT NOT NULL,
    status             TEXT NOT NULL,
    from_number        TEXT,
    to_number          TEXT,
    room               TEXT,
    started_at         BIGINT NOT NULL,
    ended_at           BIGINT,
    duration_sec       BIGINT,
    language           TEXT,
    outcome            TEXT,
    outcome_evidence   TEXT NOT NULL DEFAULT '[]',
    summary            TEXT,
    transcript         TEXT NOT NULL DEFAULT '[]',
    fields             TEXT NOT NULL DEFAULT '{}',
    metrics            TEXT NOT NULL DEFAULT '[]',
    created_at         BIGINT NOT NULL
);
-- Listing is newest first per company, cursor = (started_at, id).
CREATE INDEX calls_company_started ON calls (company_id, started_at, id);
CREATE INDEX calls_bot_started ON calls (bot_id, started_at, id);
CREATE INDEX calls_from_number ON calls (from_number);
CREATE INDEX calls_to_number ON calls (to_number);

CREATE TABLE knowledge_documents (
    id           TEXT PRIMARY KEY,
    bot_id       TEXT NOT NULL REFERENCES bots (id) ON DELETE CASCADE,
    company_id   TEXT NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    filename     TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size_bytes   BIGINT NOT NULL,
    sha256       TEXT NOT NULL,
    status       TEXT NOT NULL,
    pages        BIGINT,
    chunks_total BIGINT NOT NULL DEFAULT 0,
    chunks_done  BIGINT NOT NULL DEFAULT 0,
    error        TEXT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE INDEX knowledge_documents_bot ON knowledge_documents (bot_id, created_at);

-- The secret signs deliveries (HMAC), so unlike API keys it must be kept.
CREATE TABLE webhook_endpoints (
    id          TEXT PRIMARY KEY,
    company_id  TEXT NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    url         TEXT NOT NULL,
    description TEXT,
    events      TEXT NOT NULL,
    secret      TEXT NOT NULL,
    enabled     BIGINT NOT NULL DEFAULT 1,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX webhook_endpoints_company ON webhook_endpoints (company_id);

CREATE TABLE webhook_deliveries (
    id               TEXT PRIMARY KEY,
    endpoint_id      TEXT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    company_id       TEXT NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    event            TEXT NOT NULL,
    call_id          TEXT,
    payload          TEXT NOT NULL,
    idempotency_key  TEXT NOT NULL UNIQUE,
    status           TEXT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    last_status_code BIGINT,
    last_error       TEXT,
    created_at       BIGINT NOT NULL,
    delivered_at     BIGINT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
