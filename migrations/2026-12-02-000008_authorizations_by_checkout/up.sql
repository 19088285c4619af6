-- A checkout's latest payment authorization, live or ended (MCP's get_payment_status asks by
-- checkout): an index instead of a scan of every authorization.
CREATE INDEX payment_authorizations_by_checkout
    ON payment_authorizations (checkout_id, created_at DESC);
