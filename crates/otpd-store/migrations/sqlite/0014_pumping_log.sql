-- The pumping guard's log (otpd_core::guards::pumping::shared): every send it judged and
-- every right code, per service, kept a day and an hour; every node replays it in `seq`
-- order, so nodes decide as one and a restart decides as before.
CREATE TABLE pumping_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    service_id TEXT NOT NULL,
    at INTEGER NOT NULL,
    approval INTEGER NOT NULL,
    recipient TEXT NOT NULL,
    country TEXT
);
CREATE INDEX pumping_log_by_service ON pumping_log(service_id, seq);
CREATE INDEX pumping_log_by_age ON pumping_log(service_id, at);
CREATE INDEX pumping_log_by_recipient ON pumping_log(recipient);
