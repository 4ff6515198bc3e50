-- Twilio Verify compatibility (schema 2).
-- Per-verification message overrides (CustomFriendlyName, AppHash) as JSON; NULL = none.
ALTER TABLE verifications ADD COLUMN message_options TEXT;
-- Verification Attempts are deliveries, listed newest first by service and time.
CREATE INDEX deliveries_by_time ON deliveries(created_at);
