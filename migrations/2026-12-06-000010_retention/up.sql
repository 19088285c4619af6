-- Retirement of what ended (SACP_RETENTION_HOURS, SACP_AUDIT_RETENTION_DAYS): each
-- housekeeping round deletes in batches, oldest first, through these partial indexes instead
-- of walking whole tables.
CREATE INDEX checkouts_ended
    ON checkouts (updated_at)
    WHERE status IN ('completed', 'cancelled', 'expired', 'failed');
CREATE INDEX checkouts_left_open
    ON checkouts (expires_at)
    WHERE status IN ('cart', 'ready_for_payment');
CREATE INDEX payment_authorizations_ended
    ON payment_authorizations (updated_at)
    WHERE status NOT IN ('pending', 'approved', 'charging');
-- A retired checkout's authorizations are found by checkout (the index of migration 8).
CREATE INDEX audit_events_by_time ON audit_events (at);
