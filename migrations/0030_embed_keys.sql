-- Embed keys: what a public web page holds to start browser calls with chosen bots, and nothing
-- else (no transcripts, no config, no webhooks). Only the key's SHA-256 is stored.
CREATE TABLE embed_keys (
    id              TEXT PRIMARY KEY,
    company_id      TEXT NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    prefix          TEXT NOT NULL,
    key_hash        TEXT NOT NULL UNIQUE,
    -- JSON arrays: the bots the key may start sessions with, the page origins it may be used from.
    bot_ids         TEXT NOT NULL,
    allowed_origins TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    revoked_at      BIGINT
);
CREATE INDEX embed_keys_company ON embed_keys (company_id);
