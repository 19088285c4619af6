-- Checkouts: the domain record as JSONB, plus the columns constraints and queries need.
CREATE TABLE checkouts (
    id                    TEXT PRIMARY KEY CHECK (id LIKE 'cs\_%'),
    store_session_id      TEXT NOT NULL UNIQUE,
    status                TEXT NOT NULL CHECK (status IN (
                              'cart', 'ready_for_payment', 'authorizing',
                              'completed', 'cancelled', 'expired', 'failed')),
    record                JSONB NOT NULL,
    hold_authorization_id TEXT,
    order_id              TEXT UNIQUE,
    version               BIGINT NOT NULL CHECK (version >= 1),
    expires_at            TIMESTAMPTZ NOT NULL,
    created_at            TIMESTAMPTZ NOT NULL,
    updated_at            TIMESTAMPTZ NOT NULL,
    -- One order per checkout, present exactly once completed.
    CONSTRAINT completed_has_order CHECK ((status = 'completed') = (order_id IS NOT NULL)),
    -- A pending payment exists exactly while authorizing (its kind lives in the record).
    CONSTRAINT device_hold_only_while_authorizing
        CHECK (hold_authorization_id IS NULL OR status = 'authorizing')
);

-- Guest payment authorizations. The device code is a secret kept server-side only.
CREATE TABLE payment_authorizations (
    id                        TEXT PRIMARY KEY CHECK (id LIKE 'par\_%'),
    checkout_id               TEXT NOT NULL REFERENCES checkouts (id),
    device_code               TEXT NOT NULL,
    user_code                 TEXT NOT NULL,
    verification_uri          TEXT NOT NULL,
    verification_uri_complete TEXT NOT NULL,
    amount_minor              BIGINT NOT NULL CHECK (amount_minor > 0),
    currency                  CHAR(3) NOT NULL,
    status                    TEXT NOT NULL CHECK (status IN (
                                  'pending', 'approved', 'consumed', 'rejected',
                                  'expired', 'cancelled', 'failed')),
    interval_secs             INTEGER NOT NULL CHECK (interval_secs >= 1),
    next_poll_at              TIMESTAMPTZ NOT NULL,
    notification_sent         BOOLEAN NOT NULL,
    created_at                TIMESTAMPTZ NOT NULL,
    expires_at                TIMESTAMPTZ NOT NULL,
    updated_at                TIMESTAMPTZ NOT NULL,
    version                   BIGINT NOT NULL CHECK (version >= 1)
);

-- At most one live (pending or approved) authorization per checkout.
CREATE UNIQUE INDEX one_active_authorization_per_checkout
    ON payment_authorizations (checkout_id)
    WHERE status IN ('pending', 'approved');

-- The background driver's scan.
CREATE INDEX payment_authorizations_due
    ON payment_authorizations (next_poll_at)
    WHERE status IN ('pending', 'approved');
