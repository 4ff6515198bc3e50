-- The safe list (Twilio's /v2/SafeList/Numbers): numbers exempt from the fraud guards,
-- one list for the deployment, keyed by the E.164 number.
CREATE TABLE safe_numbers (
    phone_number TEXT PRIMARY KEY,
    sid TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);
