DROP INDEX payment_authorizations_due;
CREATE INDEX payment_authorizations_due
    ON payment_authorizations (next_poll_at)
    WHERE status IN ('pending', 'approved');
DROP INDEX one_active_authorization_per_checkout;
CREATE UNIQUE INDEX one_active_authorization_per_checkout
    ON payment_authorizations (checkout_id)
    WHERE status IN ('pending', 'approved');
UPDATE payment_authorizations SET status = 'approved' WHERE status = 'charging';
ALTER TABLE payment_authorizations
    DROP CONSTRAINT failed_has_reason,
    DROP COLUMN failure,
    DROP COLUMN attempts,
    DROP COLUMN charge_deadline,
    DROP COLUMN approved_at;
ALTER TABLE payment_authorizations DROP CONSTRAINT payment_authorizations_status_check;
ALTER TABLE payment_authorizations ADD CONSTRAINT payment_authorizations_status_check
    CHECK (status IN ('pending', 'approved', 'consumed', 'rejected',
                      'expired', 'cancelled', 'failed'));
