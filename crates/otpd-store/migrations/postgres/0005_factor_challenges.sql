-- Challenges of authenticator factors (Twilio's `YC…` Challenges, issue 24). Times are Unix
-- milliseconds. Only `pending` and `approved` are stored: a pending challenge past
-- `expires_at` reads as expired. Deleted with the factor.
CREATE TABLE factor_challenges (
    id           TEXT PRIMARY KEY,
    service_id   TEXT NOT NULL,
    entity       TEXT NOT NULL,
    factor_id    TEXT NOT NULL REFERENCES totp_factors(id) ON DELETE CASCADE,
    status       TEXT NOT NULL CHECK (status IN ('pending', 'approved')),
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    responded_at BIGINT,
    expires_at   BIGINT NOT NULL
);
CREATE INDEX factor_challenges_by_entity ON factor_challenges(service_id, entity, created_at);
CREATE INDEX factor_challenges_by_factor ON factor_challenges(factor_id);
