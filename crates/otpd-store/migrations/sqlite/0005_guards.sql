-- otpd embedded store: state of the abuse guards (issue 4). Times are Unix milliseconds.

-- GCRA rate limits: one theoretical arrival time per key ('send:ip:<service>:<ip>', …).
-- A row whose tat has passed holds no information and may be deleted at any time.
CREATE TABLE rate_buckets (
    key    TEXT PRIMARY KEY,
    tat_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX rate_buckets_by_tat ON rate_buckets(tat_ms);

-- One record per guarded send or check: allowed, or blocked by which guard and why; the
-- refusals of guards in shadow mode ride along as JSON.
CREATE TABLE guard_decisions (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    service_id      TEXT NOT NULL,
    action          TEXT NOT NULL CHECK (action IN ('send', 'check')),
    recipient       TEXT NOT NULL,
    client_ip       TEXT,
    verification_id TEXT,
    allowed         INTEGER NOT NULL CHECK (allowed IN (0, 1)),
    guard           TEXT,
    reason          TEXT,
    retry_after     INTEGER,
    shadow          TEXT NOT NULL DEFAULT '[]',
    created_at      INTEGER NOT NULL
);
CREATE INDEX guard_decisions_by_service ON guard_decisions(service_id, seq);

-- Spend per service and budget period ('d:2026-11-22', 'm:2026-11'), in micro-units of the
-- price table's currency; `alerted` is the highest threshold (80, 100) already announced.
CREATE TABLE budget_spend (
    service_id TEXT NOT NULL,
    period     TEXT NOT NULL,
    spent      INTEGER NOT NULL DEFAULT 0,
    alerted    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (service_id, period)
) WITHOUT ROWID;
