-- Factor webhooks (schema 18; Twilio's per-service Webhooks). A webhook message now goes
-- to one endpoint of a service: '' for the service's own webhook_url (Standard Webhooks,
-- as before), or a factor webhook's sid (YW…) from the service's settings
-- ($.factor_webhooks). The queue keeps one row per event and endpoint, filled by triggers
-- in the event's own transaction.
DROP TRIGGER events_to_webhooks;

CREATE TABLE webhook_messages_18 (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT NOT NULL UNIQUE,                       -- whk_<hex>
    event_id        TEXT NOT NULL REFERENCES events(id) ON DELETE CASCADE,
    service_id      TEXT NOT NULL REFERENCES services(id) ON DELETE CASCADE,
    endpoint        TEXT NOT NULL DEFAULT '',                   -- '' or a factor webhook's YW… sid
    status          TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    window_start    INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    lease_owner     TEXT,
    lease_until     INTEGER,
    last_status     INTEGER,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    UNIQUE (event_id, service_id, endpoint)
);
INSERT INTO webhook_messages_18
    (seq, id, event_id, service_id, status, attempts, window_start, next_attempt_at,
     lease_owner, lease_until, last_status, last_error, created_at, updated_at)
SELECT seq, id, event_id, service_id, status, attempts, window_start, next_attempt_at,
       lease_owner, lease_until, last_status, last_error, created_at, updated_at
FROM webhook_messages;
DROP TABLE webhook_messages;
ALTER TABLE webhook_messages_18 RENAME TO webhook_messages;
CREATE INDEX webhook_messages_due ON webhook_messages(next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_messages_dead ON webhook_messages(service_id, seq) WHERE status = 'dead';
CREATE INDEX webhook_messages_by_service ON webhook_messages(service_id);

-- The service's own endpoint, as in schema 6.
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

-- The service's enabled factor webhooks subscribed to the event (by Twilio's name for it:
-- factor.challenge_approved is Twilio's challenge.approved), or to every event ('*').
CREATE TRIGGER events_to_factor_webhooks AFTER INSERT ON events
WHEN NEW.service_id IS NOT NULL
 AND NEW.kind IN ('factor.created', 'factor.verified', 'factor.deleted', 'factor.challenge_approved')
BEGIN
    INSERT OR IGNORE INTO webhook_messages
        (id, event_id, service_id, endpoint, status, window_start, next_attempt_at, created_at, updated_at)
    SELECT 'whk_' || lower(hex(randomblob(16))), NEW.id, s.id, json_extract(w.value, '$.sid'),
           'pending', NEW.created_at, NEW.created_at, NEW.created_at, NEW.created_at
    FROM services s, json_each(s.settings, '$.factor_webhooks') w
    WHERE s.id = NEW.service_id
      AND json_extract(w.value, '$.status') = 'enabled'
      AND EXISTS (
          SELECT 1 FROM json_each(w.value, '$.event_types') t
          WHERE t.value = '*'
             OR t.value = CASE NEW.kind WHEN 'factor.challenge_approved' THEN 'challenge.approved' ELSE NEW.kind END
      );
END;
