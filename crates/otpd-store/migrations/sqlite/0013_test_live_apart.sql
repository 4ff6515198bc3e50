-- Test and live are separate worlds (shared/DESIGN.md, invariant 8): a test key's send to a
-- recipient never finds, resends or counts against a live key's pending verification, nor
-- the reverse. The pending verification is unique per recipient, service *and* world, and
-- the send log tells the worlds apart.
DROP INDEX verifications_one_pending;
CREATE UNIQUE INDEX verifications_one_pending ON verifications(service_id, to_addr, test) WHERE status = 'pending';
ALTER TABLE sends ADD COLUMN test INTEGER NOT NULL DEFAULT 0;
DROP INDEX sends_by_to;
CREATE INDEX sends_by_to ON sends(service_id, to_addr, test, at);
