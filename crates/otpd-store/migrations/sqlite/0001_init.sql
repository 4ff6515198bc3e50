-- otpd embedded store, schema 1. Times are Unix milliseconds (UTC).

CREATE TABLE services (
    id            TEXT PRIMARY KEY,            -- svc_<hex>; the SID is derived from it
    name          TEXT NOT NULL UNIQUE,
    settings      TEXT NOT NULL,               -- JSON ServiceSettings
    webhook_secret BLOB,                       -- sealed whsec_…
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('admin', 'verify')),
    test        INTEGER NOT NULL,
    services    TEXT,                          -- JSON array of service ids, NULL = all
    digest      BLOB NOT NULL UNIQUE,          -- SHA-256 of the key; the key itself is never stored
    hint        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);

CREATE TABLE verifications (
    id                 TEXT PRIMARY KEY,
    service_id         TEXT NOT NULL REFERENCES services(id) ON DELETE CASCADE,
    to_addr            TEXT NOT NULL,
    channel            TEXT NOT NULL,
    status             TEXT NOT NULL,
    code_hash          BLOB NOT NULL,          -- HMAC-SHA256(secret, id || 0 || code)
    sealed_code        BLOB,                   -- AEAD copy for (re)delivery; NULL once not pending
    expires_at         INTEGER NOT NULL,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    max_check_attempts INTEGER NOT NULL,
    check_attempts     INTEGER NOT NULL DEFAULT 0,
    locale             TEXT NOT NULL,
    metadata           TEXT,
    test               INTEGER NOT NULL,
    key_id             TEXT NOT NULL
);
-- At most one pending verification per recipient and service: resends find it here.
CREATE UNIQUE INDEX verifications_one_pending ON verifications(service_id, to_addr) WHERE status = 'pending';
CREATE INDEX verifications_by_to ON verifications(service_id, to_addr, created_at);
CREATE INDEX verifications_pending_expiry ON verifications(expires_at) WHERE status = 'pending';

-- Deliveries are both the outbox (status 'queued') and the delivery history.
CREATE TABLE deliveries (
    id              TEXT PRIMARY KEY,          -- dlv_<hex>, the message_id given to providers
    verification_id TEXT NOT NULL REFERENCES verifications(id) ON DELETE CASCADE,
    seq             INTEGER NOT NULL,
    channel         TEXT NOT NULL,
    fallback        TEXT NOT NULL,             -- JSON array of channels still to try
    providers       TEXT NOT NULL,             -- JSON array: the provider chain
    provider_index  INTEGER NOT NULL DEFAULT 0,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    test            INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    lease_owner     TEXT,
    lease_until     INTEGER,
    provider_message_id TEXT,
    error           TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    UNIQUE (verification_id, seq)
);
CREATE INDEX deliveries_due ON deliveries(next_attempt_at) WHERE status = 'queued';
CREATE INDEX deliveries_provider_msg ON deliveries(provider_message_id);

-- Messages recorded instead of delivered (test keys); bodies sealed.
CREATE TABLE messages (
    id              TEXT PRIMARY KEY,
    verification_id TEXT NOT NULL REFERENCES verifications(id) ON DELETE CASCADE,
    delivery_id     TEXT NOT NULL,
    channel         TEXT NOT NULL,
    to_addr         TEXT NOT NULL,
    sealed_body     BLOB NOT NULL,
    created_at      INTEGER NOT NULL
);
CREATE INDEX messages_by_verification ON messages(verification_id);

-- Send log for the per-recipient send limit.
CREATE TABLE sends (
    service_id TEXT NOT NULL,
    to_addr    TEXT NOT NULL,
    at         INTEGER NOT NULL
);
CREATE INDEX sends_by_to ON sends(service_id, to_addr, at);

CREATE TABLE events (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT NOT NULL UNIQUE,
    kind            TEXT NOT NULL,
    verification_id TEXT,
    service_id      TEXT,
    data            TEXT NOT NULL,
    created_at      INTEGER NOT NULL
);
CREATE INDEX events_by_verification ON events(verification_id, seq);
CREATE INDEX events_by_time ON events(created_at);

CREATE TABLE idempotency (
    key_id          TEXT NOT NULL,
    idem_key        TEXT NOT NULL,
    request_hash    BLOB NOT NULL,
    verification_id TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (key_id, idem_key)
);
