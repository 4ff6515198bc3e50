-- Delivery receipts and failover (schema 4).
-- When a `sent` message's receipt is overdue (Unix ms): the worker then hands the same code
-- to the next provider or channel. NULL = not waiting (delivered, no receipt expected, or
-- the wait already ended). A `failed` receipt sets it to the receipt's time (fail over now).
ALTER TABLE deliveries ADD COLUMN receipt_deadline INTEGER;
CREATE INDEX deliveries_receipt_due ON deliveries(receipt_deadline) WHERE receipt_deadline IS NOT NULL;
