-- Numbers belong to a company (the admin key gives them), and the company routes each of its own
-- numbers to one of its bots (or to none). A number's SIP trunk settings live with it: the source
-- addresses and digest credentials its provider calls in with, and the provider's host (and
-- credentials) for calls placed from it. Passwords are never returned by the API.
CREATE TABLE company_phone_numbers (
    id                TEXT PRIMARY KEY,
    number            TEXT NOT NULL UNIQUE,
    company_id        TEXT NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    bot_id            TEXT REFERENCES bots (id) ON DELETE SET NULL,
    -- JSON array of addresses or CIDRs.
    allowed_addresses TEXT NOT NULL,
    auth_username     TEXT,
    auth_password     TEXT,
    outbound_address  TEXT,
    outbound_username TEXT,
    outbound_password TEXT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);
INSERT INTO company_phone_numbers (id, number, company_id, bot_id, allowed_addresses, created_at, updated_at)
    SELECT id, number, company_id, bot_id, '[]', created_at, created_at FROM phone_numbers;
DROP TABLE phone_numbers;
ALTER TABLE company_phone_numbers RENAME TO phone_numbers;
CREATE INDEX phone_numbers_bot ON phone_numbers (bot_id);
CREATE INDEX phone_numbers_company ON phone_numbers (company_id);
