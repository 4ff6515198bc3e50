-- The lockout sweep deletes failures older than the longest window once a second, on the
-- single writer: without an index on the time it scanned the whole failure log each time
-- (PostgreSQL has had this index from the start).
CREATE INDEX lockout_failures_by_time ON lockout_failures(at);
