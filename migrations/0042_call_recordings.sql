-- Call recordings (bots with `recording.enabled`): where each call's two-channel WAV is kept
-- (a key in the data dir or the bucket) and until when. No foreign key to calls: a call is
-- stored again (replaced) when post-call processing runs twice, and its recording must outlive
-- that; it goes when the call is deleted, when it expires, or with its company.
CREATE TABLE call_recordings (
    call_id     TEXT PRIMARY KEY,
    company_id  TEXT NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    storage_key TEXT NOT NULL,
    bytes       BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX call_recordings_expiry ON call_recordings (expires_at);
CREATE INDEX call_recordings_company ON call_recordings (company_id);
