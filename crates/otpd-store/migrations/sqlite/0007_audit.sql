-- Audit trail, retention and the dashboard (issue 8). Times are Unix milliseconds (UTC).

-- Who caused each event: the API key, the request (x-request-id) and the end user's IP.
-- NULL for work no request caused (the delivery worker, the retention purge).
ALTER TABLE events ADD COLUMN key_id TEXT;
ALTER TABLE events ADD COLUMN request_id TEXT;
ALTER TABLE events ADD COLUMN client_ip TEXT;
CREATE INDEX events_by_key ON events(key_id, seq);
CREATE INDEX events_by_service ON events(service_id, seq);
CREATE INDEX events_by_request ON events(request_id);
CREATE INDEX events_by_kind ON events(kind, seq);

-- The event log is append-only. Rows leave it only through the retention purge, which
-- opens this gate inside its own transaction (on the single writer connection, so no
-- other statement can see it open) and closes it again before committing.
CREATE TABLE retention_gate (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    open INTEGER NOT NULL CHECK (open IN (0, 1))
);
INSERT INTO retention_gate (id, open) VALUES (1, 0);
CREATE TRIGGER events_append_only_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'the event log is append-only');
END;
CREATE TRIGGER events_append_only_delete BEFORE DELETE ON events
WHEN (SELECT open FROM retention_gate WHERE id = 1) = 0
BEGIN
    SELECT RAISE(ABORT, 'events are deleted only by the retention purge');
END;

-- The recipient's region (ISO 3166), for conversion per country; NULL for email.
ALTER TABLE verifications ADD COLUMN country TEXT;
CREATE INDEX verifications_by_time ON verifications(created_at);
CREATE INDEX guard_decisions_by_time ON guard_decisions(created_at);
CREATE INDEX sends_by_time ON sends(at);

-- Operator dashboard sessions, by SHA-256 of the cookie token (the token is never stored).
CREATE TABLE dashboard_sessions (
    digest     BLOB PRIMARY KEY,
    key_id     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX dashboard_sessions_by_expiry ON dashboard_sessions(expires_at);
