-- Passkeys (WebAuthn, issue 25): an entity's registered credentials and the ceremonies
-- under way. Times are Unix milliseconds. The credential column is the WebAuthn library's
-- document (public key, algorithm, flags); sign_count is raised only by
-- `UPDATE … WHERE sign_count < ?` (or both zero), so a counter never goes back.
CREATE TABLE passkey_factors (
    id            TEXT PRIMARY KEY,           -- pk_<hex>
    service_id    TEXT NOT NULL REFERENCES services(id) ON DELETE CASCADE,
    entity        TEXT NOT NULL,
    credential_id TEXT NOT NULL,              -- base64url
    user_handle   TEXT NOT NULL,              -- base64url
    user_name     TEXT NOT NULL,
    credential    TEXT NOT NULL,
    sign_count    BIGINT NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL,
    last_used_at  BIGINT,
    UNIQUE (service_id, credential_id)
);
CREATE INDEX passkey_factors_by_entity ON passkey_factors(service_id, entity, created_at);

-- A ceremony is taken once (`UPDATE … SET used_at WHERE used_at IS NULL AND expires_at > now`).
CREATE TABLE passkey_ceremonies (
    id         TEXT PRIMARY KEY,              -- pkr_<hex> or pka_<hex>
    kind       TEXT NOT NULL CHECK (kind IN ('registration', 'authentication')),
    service_id TEXT NOT NULL REFERENCES services(id) ON DELETE CASCADE,
    entity     TEXT,                          -- NULL: a discoverable sign-in
    user_name  TEXT,
    state      TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX passkey_ceremonies_by_expiry ON passkey_ceremonies(expires_at);
