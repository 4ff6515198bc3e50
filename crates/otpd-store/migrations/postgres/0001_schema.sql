-- otpd PostgreSQL store: the whole schema of the SQLite tree (migrations/sqlite/0001-0010)
-- in one step, same tables, columns, indexes and triggers. Times are Unix milliseconds
-- (UTC) in BIGINT (pow_challenges: Unix seconds), flags are 0/1 BIGINTs and JSON documents
-- are TEXT, exactly as in SQLite, so both stores share one row format.

CREATE TABLE services (
    id             TEXT PRIMARY KEY,           -- svc_<hex>; the SID is derived from it
    name           TEXT NOT NULL UNIQUE,
    settings       TEXT NOT NULL,              -- JSON ServiceSettings
    webhook_secret BYTEA,                      -- sealed whsec_…
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    role       TEXT NOT NULL CHECK (role IN ('admin', 'verify')),
    test       BIGINT NOT NULL,
    services   TEXT,                           -- JSON array of service ids, NULL = all
    digest     BYTEA NOT NULL UNIQUE,          -- SHA-256 of the key; the key itself is never stored
    hint       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

CREATE TABLE verifications (
    id                 TEXT PRIMARY KEY,
    service_id         TEXT NOT NULL REFERENCES services(id) ON DELETE CASCADE,
    to_addr            TEXT NOT NULL,
    channel            TEXT NOT NULL,
    status             TEXT NOT NULL,
    code_hash          BYTEA NOT NULL,         -- HMAC-SHA256(secret, id || 0 || code)
    sealed_code        BYTEA,                  -- AEAD copy for (re)delivery; NULL once not pending
    expires_at         BIGINT NOT NULL,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    max_check_attempts BIGINT NOT NULL,
    check_attempts     BIGINT NOT NULL DEFAULT 0,
    locale             TEXT NOT NULL,
    metadata           TEXT,
    test               BIGINT NOT NULL,
    key_id             TEXT NOT NULL,
    message_options    TEXT,                   -- JSON overrides (CustomFriendlyName, AppHash); NULL = none
    entity             TEXT,                   -- the application user (shared lockout)
    country            TEXT                    -- ISO 3166 region; NULL for email
);
-- At most one pending verification per recipient and service: resends find it here.
CREATE UNIQUE INDEX verifications_one_pending ON verifications(service_id, to_addr) WHERE status = 'pending';
CREATE INDEX verifications_by_to ON verifications(service_id, to_addr, created_at);
CREATE INDEX verifications_pending_expiry ON verifications(expires_at) WHERE status = 'pending';
CREATE INDEX verifications_by_time ON verifications(created_at);
CREATE INDEX verifications_by_recipient ON verifications(to_addr);

-- Deliveries are both the outbox (status 'queued') and the delivery history.
CREATE TABLE deliveries (
    id                  TEXT PRIMARY KEY,      -- dlv_<hex>, the message_id given to providers
    verification_id     TEXT NOT NULL REFERENCES verifications(id) ON DELETE CASCADE,
    seq                 BIGINT NOT NULL,
    channel             TEXT NOT NULL,
    fallback            TEXT NOT NULL,         -- JSON array of channels still to try
    providers           TEXT NOT NULL,         -- JSON array: the provider chain
    provider_index      BIGINT NOT NULL DEFAULT 0,
    status              TEXT NOT NULL,
    attempts            BIGINT NOT NULL DEFAULT 0,
    test                BIGINT NOT NULL,
    next_attempt_at     BIGINT NOT NULL,
    lease_owner         TEXT,
    lease_until         BIGINT,
    provider_message_id TEXT,
    error               TEXT,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    -- When a `sent` message's receipt is overdue; NULL = not waiting.
    receipt_deadline    BIGINT,
    UNIQUE (verification_id, seq)
);
CREATE INDEX deliveries_due ON deliveries(next_attempt_at) WHERE status = 'queued';
CREATE INDEX deliveries_provider_msg ON deliveries(provider_message_id);
CREATE INDEX deliveries_by_time ON deliveries(created_at);
CREATE INDEX deliveries_receipt_due ON deliveries(receipt_deadline) WHERE receipt_deadline IS NOT NULL;
CREATE INDEX deliveries_held_ussd ON deliveries(verification_id) WHERE channel = 'ussd' AND status = 'sent';

-- Messages recorded instead of delivered (test keys); bodies sealed.
CREATE TABLE messages (
    id              TEXT PRIMARY KEY,
    verification_id TEXT NOT NULL REFERENCES verifications(id) ON DELETE CASCADE,
    delivery_id     TEXT NOT NULL,
    channel         TEXT NOT NULL,
    to_addr         TEXT NOT NULL,
    sealed_body     BYTEA NOT NULL,
    created_at      BIGINT NOT NULL
);
CREATE INDEX messages_by_verification ON messages(verification_id);

-- Send log for the per-recipient send limit.
CREATE TABLE sends (
    service_id TEXT NOT NULL,
    to_addr    TEXT NOT NULL,
    at         BIGINT NOT NULL
);
CREATE INDEX sends_by_to ON sends(service_id, to_addr, at);
CREATE INDEX sends_by_time ON sends(at);

-- The event log. `seq` comes from a sequence: it orders events by insertion, but a
-- transaction that commits late can make a lower seq visible after a higher one.
CREATE TABLE events (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    kind            TEXT NOT NULL,
    verification_id TEXT,
    service_id      TEXT,
    data            TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    -- Who caused it (NULL for work no request caused).
    key_id          TEXT,
    request_id      TEXT,
    client_ip       TEXT
);
CREATE INDEX events_by_verification ON events(verification_id, seq);
CREATE INDEX events_by_time ON events(created_at);
CREATE INDEX events_by_key ON events(key_id, seq);
CREATE INDEX events_by_service ON events(service_id, seq);
CREATE INDEX events_by_request ON events(request_id);
CREATE INDEX events_by_kind ON events(kind, seq);

CREATE TABLE idempotency (
    key_id          TEXT NOT NULL,
    idem_key        TEXT NOT NULL,
    request_hash    BYTEA NOT NULL,
    verification_id TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (key_id, idem_key)
);
CREATE INDEX idempotency_by_verification ON idempotency(verification_id);

-- Authenticator-app factors.
CREATE TABLE totp_factors (
    id             TEXT PRIMARY KEY,           -- tf_<hex>
    service_id     TEXT NOT NULL REFERENCES services(id) ON DELETE CASCADE,
    entity         TEXT NOT NULL,
    kind           TEXT NOT NULL CHECK (kind IN ('totp', 'hotp')),
    algorithm      TEXT NOT NULL CHECK (algorithm IN ('SHA1', 'SHA256', 'SHA512')),
    digits         BIGINT NOT NULL CHECK (digits IN (6, 8)),
    period         BIGINT NOT NULL,
    tolerance      BIGINT NOT NULL,            -- TOTP: steps either side; HOTP: look-ahead
    label          TEXT NOT NULL,
    issuer         TEXT NOT NULL,
    sealed_secret  BYTEA NOT NULL,             -- XChaCha20-Poly1305, bound to the id
    status         TEXT NOT NULL CHECK (status IN ('unverified', 'active')),
    -- Raised only by `UPDATE … WHERE last_used_step < $n`: a code is accepted at most once.
    last_used_step BIGINT NOT NULL DEFAULT -1,
    created_at     BIGINT NOT NULL,
    verified_at    BIGINT,
    last_used_at   BIGINT
);
CREATE INDEX totp_factors_by_entity ON totp_factors(service_id, entity, created_at);

-- Backup codes, stored only as HMAC(secret, scope || code); found by their hash.
CREATE TABLE backup_codes (
    service_id TEXT NOT NULL REFERENCES services(id) ON DELETE CASCADE,
    entity     TEXT NOT NULL,
    code_hash  BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    used_at    BIGINT,
    PRIMARY KEY (service_id, entity, code_hash)
);

-- Wrong codes per subject ('to:<address>' or 'entity:<id>'), counted in the service's window.
CREATE TABLE lockout_failures (
    service_id TEXT NOT NULL REFERENCES services(id) ON DELETE CASCADE,
    subject    TEXT NOT NULL,
    at         BIGINT NOT NULL
);
CREATE INDEX lockout_failures_by_subject ON lockout_failures(service_id, subject, at);
CREATE INDEX lockout_failures_by_time ON lockout_failures(at);

-- Subjects locked until a time (the failures that caused it are consumed).
CREATE TABLE lockouts (
    service_id   TEXT NOT NULL REFERENCES services(id) ON DELETE CASCADE,
    subject      TEXT NOT NULL,
    locked_until BIGINT NOT NULL,
    PRIMARY KEY (service_id, subject)
);

-- GCRA rate limits: one theoretical arrival time per key. A row whose tat has passed
-- holds no information and may be deleted at any time.
CREATE TABLE rate_buckets (
    key    TEXT PRIMARY KEY,
    tat_ms BIGINT NOT NULL
);
CREATE INDEX rate_buckets_by_tat ON rate_buckets(tat_ms);

-- One record per guarded send or check.
CREATE TABLE guard_decisions (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    service_id      TEXT NOT NULL,
    action          TEXT NOT NULL CHECK (action IN ('send', 'check')),
    recipient       TEXT NOT NULL,
    client_ip       TEXT,
    verification_id TEXT,
    allowed         BOOLEAN NOT NULL,
    guard           TEXT,
    reason          TEXT,
    retry_after     BIGINT,
    shadow          TEXT NOT NULL DEFAULT '[]',
    created_at      BIGINT NOT NULL
);
CREATE INDEX guard_decisions_by_service ON guard_decisions(service_id, seq);
CREATE INDEX guard_decisions_by_time ON guard_decisions(created_at);
CREATE INDEX guard_decisions_by_recipient ON guard_decisions(recipient);

-- Spend per service and budget period, in micro-units; `alerted` is the highest
-- threshold (80, 100) already announced.
CREATE TABLE budget_spend (
    service_id TEXT NOT NULL,
    period     TEXT NOT NULL,
    spent      BIGINT NOT NULL DEFAULT 0,
    alerted    BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (service_id, period)
);

-- Outbound webhooks: one row per event and service endpoint, filled by a trigger in the
-- transaction that appends the event.
CREATE TABLE webhook_messages (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,                       -- whk_<hex>
    event_id        TEXT NOT NULL REFERENCES events(id) ON DELETE CASCADE,
    service_id      TEXT NOT NULL REFERENCES services(id) ON DELETE CASCADE,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts        BIGINT NOT NULL DEFAULT 0,
    window_start    BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    lease_owner     TEXT,
    lease_until     BIGINT,
    last_status     BIGINT,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    UNIQUE (event_id, service_id)
);
CREATE INDEX webhook_messages_due ON webhook_messages(next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_messages_dead ON webhook_messages(service_id, seq) WHERE status = 'dead';
CREATE INDEX webhook_messages_by_service ON webhook_messages(service_id);

-- Audit-only records (api.request, erasure.completed, retention.purged) never go to a
-- tenant's endpoint. An event of a service goes to that service's webhook_url; an event of
-- no service (provider.*, alert.*) goes to every service that has one.
CREATE FUNCTION otpd_events_to_webhooks() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.kind IN ('api.request', 'erasure.completed', 'retention.purged') THEN
        RETURN NULL;
    END IF;
    INSERT INTO webhook_messages
        (id, event_id, service_id, status, window_start, next_attempt_at, created_at, updated_at)
    SELECT 'whk_' || replace(gen_random_uuid()::text, '-', ''), NEW.id, s.id, 'pending',
           NEW.created_at, NEW.created_at, NEW.created_at, NEW.created_at
    FROM services s
    WHERE (s.id = NEW.service_id OR NEW.service_id IS NULL)
      AND (s.settings::jsonb ->> 'webhook_url') IS NOT NULL
    ON CONFLICT (event_id, service_id) DO NOTHING;
    RETURN NULL;
END;
$$;
CREATE TRIGGER events_to_webhooks AFTER INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION otpd_events_to_webhooks();

-- The event log is append-only. Rows leave it only through the retention purge, which
-- opens this gate for its own transaction only (`set_config('otpd.retention_gate',
-- 'open', true)`, a transaction-local setting no other session can see).
CREATE FUNCTION otpd_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        RAISE EXCEPTION 'the event log is append-only';
    END IF;
    IF coalesce(current_setting('otpd.retention_gate', true), '') <> 'open' THEN
        RAISE EXCEPTION 'events are deleted only by the retention purge';
    END IF;
    RETURN OLD;
END;
$$;
CREATE TRIGGER events_append_only_update BEFORE UPDATE ON events
    FOR EACH ROW EXECUTE FUNCTION otpd_events_append_only();
CREATE TRIGGER events_append_only_delete BEFORE DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION otpd_events_append_only();
-- TRUNCATE fires no row trigger: refuse it too.
CREATE FUNCTION otpd_events_no_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the event log is append-only';
END;
$$;
CREATE TRIGGER events_append_only_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION otpd_events_no_truncate();

-- Operator dashboard sessions, by SHA-256 of the cookie token.
CREATE TABLE dashboard_sessions (
    digest     BYTEA PRIMARY KEY,
    key_id     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX dashboard_sessions_by_expiry ON dashboard_sessions(expires_at);

-- Proof-of-work challenges. Times are Unix seconds.
CREATE TABLE pow_challenges (
    id         TEXT PRIMARY KEY,
    service_id TEXT NOT NULL,
    salt       TEXT NOT NULL,
    difficulty BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    spent_at   BIGINT,
    spent_by   TEXT
);
CREATE INDEX pow_challenges_by_expiry ON pow_challenges(expires_at);
