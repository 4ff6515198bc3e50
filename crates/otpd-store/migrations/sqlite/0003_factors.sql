-- otpd embedded store, schema 2: authenticator-app factors, backup codes, and the lockout
-- shared by every kind of check. Times are Unix milliseconds (UTC).

-- The application user a verification is for (optional): its wrong codes then also count
-- toward that entity's lockout.
ALTER TABLE verifications ADD COLUMN entity TEXT;

CREATE TABLE totp_factors (
    id             TEXT PRIMARY KEY,           -- tf_<hex>
    service_id     TEXT NOT NULL REFERENCES services(id) ON DELETE CASCADE,
    entity         TEXT NOT NULL,
    kind           TEXT NOT NULL CHECK (kind IN ('totp', 'hotp')),
    algorithm      TEXT NOT NULL CHECK (algorithm IN ('SHA1', 'SHA256', 'SHA512')),
    digits         INTEGER NOT NULL CHECK (digits IN (6, 8)),
    period         INTEGER NOT NULL,
    tolerance      INTEGER NOT NULL,           -- TOTP: steps either side; HOTP: look-ahead
    label          TEXT NOT NULL,
    issuer         TEXT NOT NULL,
    sealed_secret  BLOB NOT NULL,              -- XChaCha20-Poly1305, bound to the id
    status         TEXT NOT NULL CHECK (status IN ('unverified', 'active')),
    -- Last accepted time step (TOTP) or counter (HOTP); -1 before the first. Raised only by
    -- `UPDATE … WHERE last_used_step < ?`, so a code is accepted at most once.
    last_used_step INTEGER NOT NULL DEFAULT -1,
    created_at     INTEGER NOT NULL,
    verified_at    INTEGER,
    last_used_at   INTEGER
);
CREATE INDEX totp_factors_by_entity ON totp_factors(service_id, entity, created_at);

-- Backup codes, stored only as HMAC(secret, scope || code); found by their hash.
CREATE TABLE backup_codes (
    service_id TEXT NOT NULL REFERENCES services(id) ON DELETE CASCADE,
    entity     TEXT NOT NULL,
    code_hash  BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    used_at    INTEGER,
    PRIMARY KEY (service_id, entity, code_hash)
);

-- Wrong codes per subject ('to:<address>' or 'entity:<id>'), counted in the service's window.
CREATE TABLE lockout_failures (
    service_id TEXT NOT NULL REFERENCES services(id) ON DELETE CASCADE,
    subject    TEXT NOT NULL,
    at         INTEGER NOT NULL
);
CREATE INDEX lockout_failures_by_subject ON lockout_failures(service_id, subject, at);

-- Subjects locked until a time (the failures that caused it are consumed).
CREATE TABLE lockouts (
    service_id   TEXT NOT NULL REFERENCES services(id) ON DELETE CASCADE,
    subject      TEXT NOT NULL,
    locked_until INTEGER NOT NULL,
    PRIMARY KEY (service_id, subject)
);
