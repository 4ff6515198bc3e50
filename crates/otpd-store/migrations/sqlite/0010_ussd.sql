-- USSD deliveries wait for the user to dial in (Africa's Talking POSTs the session to
-- /v1/ussd/{provider}); this small partial index finds the held ones without a scan.
CREATE INDEX deliveries_held_ussd ON deliveries(verification_id) WHERE channel = 'ussd' AND status = 'sent';
