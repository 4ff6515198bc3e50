-- Outbound webhooks (schema 6). Times are Unix milliseconds.
--
-- One row per event and service endpoint: the queue of webhook messages. A trigger fills
-- it in the same transaction that appends the event, so no event can be lost between the
-- log and the queue, whichever code path wrote it. An event of a service goes to that
-- service's webhook_url; an event of no service (provider.*, alert.*) goes to every
-- service that has one. The URL and the secret are read when the message is sent, so a
-- changed URL or a rotated secret applies to messages still waiting.
CREATE TABLE webhook_messages (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT NOT NULL UNIQUE,                       -- whk_<hex>
    event_id        TEXT NOT NULL REFERENCES events(id) ON DELETE CASCADE,
    service_id      TEXT NOT NULL REFERENCES services(id) ON DELETE CASCADE,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    window_start    INTEGER NOT NULL,                           -- retries end 24 h (configurable) after it
    next_attempt_at INTEGER NOT NULL,
    lease_owner     TEXT,
    lease_until     INTEGER,
    last_status     INTEGER,                                    -- the receiver's last HTTP status
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    UNIQUE (event_id, service_id)
);
CREATE INDEX webhook_messages_due ON webhook_messages(next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_messages_dead ON webhook_messages(service_id, seq) WHERE status = 'dead';
CREATE INDEX webhook_messages_by_service ON webhook_messages(service_id);

-- Audit-only records (api.request, erasure.completed, retention.purged: key ids and
-- operators' IPs) are for the operator's audit trail, never for a tenant's endpoint.
CREATE TRIGGER events_to_webhooks AFTER INSERT ON events
WHEN NEW.kind NOT IN ('api.request', 'erasure.completed', 'retention.purged')
BEGIN
    INSERT OR IGNORE INTO webhook_messages
        (id, event_id, service_id, status, window_start, next_attempt_at, created_at, updated_at)
    SELECT 'whk_' || lower(hex(randomblob(16))), NEW.id, s.id, 'pending',
           NEW.created_at, NEW.created_at, NEW.created_at, NEW.created_at
    FROM services s
    WHERE s.id = NEW.service_id
      AND json_extract(s.settings, '$.webhook_url') IS NOT NULL;

    INSERT OR IGNORE INTO webhook_messages
        (id, event_id, service_id, status, window_start, next_attempt_at, created_at, updated_at)
    SELECT 'whk_' || lower(hex(randomblob(16))), NEW.id, s.id, 'pending',
           NEW.created_at, NEW.created_at, NEW.created_at, NEW.created_at
    FROM services s
    WHERE NEW.service_id IS NULL
      AND json_extract(s.settings, '$.webhook_url') IS NOT NULL;
END;
