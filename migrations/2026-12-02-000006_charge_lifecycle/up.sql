-- The payment lifecycle after approval: an attempt in progress is `charging`; an approval
-- has a deadline and a budget of attempts; a failure keeps its reason.
ALTER TABLE payment_authorizations DROP CONSTRAINT payment_authorizations_status_check;
ALTER TABLE payment_authorizations ADD CONSTRAINT payment_authorizations_status_check
    CHECK (status IN ('pending', 'approved', 'charging', 'consumed', 'rejected',
                      'expired', 'cancelled', 'failed'));
ALTER TABLE payment_authorizations
    ADD COLUMN approved_at     TIMESTAMPTZ,
    ADD COLUMN charge_deadline TIMESTAMPTZ,
    ADD COLUMN attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    ADD COLUMN failure         TEXT;

-- Approvals stored before: their window starts now. Failures before kept no reason.
UPDATE payment_authorizations
   SET approved_at = updated_at, charge_deadline = now() + interval '10 minutes'
 WHERE status = 'approved';
UPDATE payment_authorizations SET failure = 'payment_failed' WHERE status = 'failed';
ALTER TABLE payment_authorizations ADD CONSTRAINT failed_has_reason
    CHECK ((status = 'failed') = (failure IS NOT NULL));

-- The live statuses, for the one-live-authorization rule and the driver's scan.
DROP INDEX one_active_authorization_per_checkout;
CREATE UNIQUE INDEX one_active_authorization_per_checkout
    ON payment_authorizations (checkout_id)
    WHERE status IN ('pending', 'approved', 'charging');
DROP INDEX payment_authorizations_due;
CREATE INDEX payment_authorizations_due
    ON payment_authorizations (next_poll_at)
    WHERE status IN ('pending', 'approved', 'charging');
