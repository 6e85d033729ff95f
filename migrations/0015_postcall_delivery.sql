-- After the call: endpoint health, a log of every webhook delivery attempt, and the post-call
-- records that kept failing. Portable like 0001: TEXT ids, BIGINT unix-ms times, JSON in TEXT.

-- A run of failed attempts disables an endpoint; the reason says why, for the user.
ALTER TABLE webhook_endpoints ADD COLUMN consecutive_failures BIGINT NOT NULL DEFAULT 0;
ALTER TABLE webhook_endpoints ADD COLUMN failing_since BIGINT;
ALTER TABLE webhook_endpoints ADD COLUMN disabled_reason TEXT;

-- One row per HTTP attempt of a delivery (the delivery's id is its webhook-id on every attempt).
CREATE TABLE webhook_attempts (
    id               TEXT PRIMARY KEY,
    delivery_id      TEXT NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt          BIGINT NOT NULL,
    started_at       BIGINT NOT NULL,
    latency_ms       BIGINT NOT NULL,
    status_code      BIGINT,
    error            TEXT,
    response_excerpt TEXT
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, attempt);

-- Post-call records that failed too often, set aside so they never block the others. No foreign
-- key to companies: a deleted company is one reason a record ends up here.
CREATE TABLE postcall_dead_letters (
    id         TEXT PRIMARY KEY,
    call_id    TEXT NOT NULL,
    company_id TEXT NOT NULL,
    record     TEXT NOT NULL,
    attempts   BIGINT NOT NULL,
    last_error TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX postcall_dead_letters_company ON postcall_dead_letters (company_id, created_at);

-- What post-call analysis found in a call (JSON), and the figures calls are filtered by.
ALTER TABLE calls ADD COLUMN analytics TEXT;
ALTER TABLE calls ADD COLUMN turns BIGINT;
ALTER TABLE calls ADD COLUMN interruptions BIGINT;
ALTER TABLE calls ADD COLUMN latency_p95_ms BIGINT;
