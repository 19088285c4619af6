-- Step-ups the gateway watches on the person's behalf: the person's token, sealed
-- (AES-256-GCM under the operator's sealing key, bound to checkout and step-up), kept only
-- until the step-up ends. One per checkout.
CREATE TABLE step_up_watches (
    checkout_id  TEXT PRIMARY KEY,
    step_up_id   TEXT NOT NULL,
    sealed_token BYTEA NOT NULL,
    key_id       TEXT NOT NULL,
    subject      TEXT,
    until        TIMESTAMPTZ NOT NULL,
    next_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX step_up_watches_due ON step_up_watches (key_id, next_at);
CREATE INDEX step_up_watches_until ON step_up_watches (until);
