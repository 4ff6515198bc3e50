-- The pumping guard's log (otpd_core::guards::pumping::shared): every send it judged and
-- every right code, per service, kept a day and an hour; every node replays it in `seq`
-- order, so nodes decide as one and a restart decides as before. Appends for one service
-- hold an advisory lock until commit, so positions commit in order.
CREATE TABLE pumping_log (
    seq BIGSERIAL PRIMARY KEY,
    service_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    approval BOOLEAN NOT NULL,
    recipient TEXT NOT NULL,
    country TEXT
);
CREATE INDEX pumping_log_by_service ON pumping_log(service_id, seq);
CREATE INDEX pumping_log_by_age ON pumping_log(service_id, at);
CREATE INDEX pumping_log_by_recipient ON pumping_log(recipient);
