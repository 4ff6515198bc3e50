-- Factor webhooks (Twilio's per-service Webhooks). A webhook message now goes to one
-- endpoint of a service: '' for the service's own webhook_url (Standard Webhooks, as
-- before), or a factor webhook's sid (YW…) from the service's settings
-- (factor_webhooks). One row per event and endpoint, queued by the trigger in the event's
-- own transaction.
ALTER TABLE webhook_messages ADD COLUMN endpoint TEXT NOT NULL DEFAULT '';
ALTER TABLE webhook_messages DROP CONSTRAINT webhook_messages_event_id_service_id_key;
ALTER TABLE webhook_messages
    ADD CONSTRAINT webhook_messages_event_endpoint UNIQUE (event_id, service_id, endpoint);

CREATE OR REPLACE FUNCTION otpd_events_to_webhooks() RETURNS trigger LANGUAGE plpgsql AS $$
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
    ON CONFLICT (event_id, service_id, endpoint) DO NOTHING;
    -- The service's enabled factor webhooks subscribed to the event (by Twilio's name for
    -- it: factor.challenge_approved is Twilio's challenge.approved), or to every event ('*').
    IF NEW.service_id IS NOT NULL
       AND NEW.kind IN ('factor.created', 'factor.verified', 'factor.deleted', 'factor.challenge_approved') THEN
        INSERT INTO webhook_messages
            (id, event_id, service_id, endpoint, status, window_start, next_attempt_at, created_at, updated_at)
        SELECT 'whk_' || replace(gen_random_uuid()::text, '-', ''), NEW.id, s.id, w ->> 'sid',
               'pending', NEW.created_at, NEW.created_at, NEW.created_at, NEW.created_at
        FROM services s,
             jsonb_array_elements(COALESCE(s.settings::jsonb -> 'factor_webhooks', '[]'::jsonb)) w
        WHERE s.id = NEW.service_id
          AND w ->> 'status' = 'enabled'
          AND (w -> 'event_types' ? '*'
               OR w -> 'event_types' ? (CASE NEW.kind WHEN 'factor.challenge_approved' THEN 'challenge.approved' ELSE NEW.kind END))
        ON CONFLICT (event_id, service_id, endpoint) DO NOTHING;
    END IF;
    RETURN NULL;
END;
$$;
