-- otpd embedded store: proof-of-work challenges (issue 4). Times are Unix seconds.
-- A challenge is issued by POST /v1/challenges and spent by the first send that presents
-- its solution; `spent_by` is a digest of that send's idempotency key (if it had one), so
-- the same request retried with the same key replays instead of being refused.
CREATE TABLE pow_challenges (
    id         TEXT PRIMARY KEY,
    service_id TEXT NOT NULL,
    salt       TEXT NOT NULL,
    difficulty INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    spent_at   INTEGER,
    spent_by   TEXT
) WITHOUT ROWID;
CREATE INDEX pow_challenges_by_expiry ON pow_challenges(expires_at);
