-- Guardrails of ADR 019 shared by every replica: rate-limit counters, kill switches,
-- idempotency records and traffic counts.

-- Fixed-window counters: one row per limit, subject and window.
CREATE TABLE rate_counters (
    name          TEXT NOT NULL,
    window_start  TIMESTAMPTZ NOT NULL,
    window_end    TIMESTAMPTZ NOT NULL,
    count         BIGINT NOT NULL CHECK (count >= 0),
    PRIMARY KEY (name, window_start)
);
CREATE INDEX rate_counters_by_end ON rate_counters (window_end);

-- The global kill switches: a single row.
CREATE TABLE switches (
    id                 SMALLINT PRIMARY KEY CHECK (id = 1),
    read_only          BOOLEAN NOT NULL,
    checkout_creation  BOOLEAN NOT NULL,
    payments           BOOLEAN NOT NULL,
    updated_at         TIMESTAMPTZ NOT NULL
);

-- Idempotency-Key records, scoped to caller + method + path; never a secret in `body`.
CREATE TABLE idempotency_records (
    caller           TEXT NOT NULL,
    method           TEXT NOT NULL,
    path             TEXT NOT NULL,
    idempotency_key  TEXT NOT NULL CHECK (char_length(idempotency_key) BETWEEN 1 AND 255),
    fingerprint      TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('in_flight', 'done')),
    locked_at        TIMESTAMPTZ NOT NULL,
    status           SMALLINT CHECK (status BETWEEN 100 AND 499),
    content_type     TEXT,
    location         TEXT,
    body             BYTEA,
    expires_at       TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (caller, method, path, idempotency_key),
    CHECK (state = 'in_flight' OR (status IS NOT NULL AND body IS NOT NULL))
);
CREATE INDEX idempotency_records_by_expiry ON idempotency_records (expires_at);

-- Requests per key, route and status per minute ('' = no valid key).
CREATE TABLE traffic_minutes (
    minute  TIMESTAMPTZ NOT NULL,
    key_id  TEXT NOT NULL,
    route   TEXT NOT NULL,
    status  SMALLINT NOT NULL CHECK (status BETWEEN 100 AND 599),
    count   BIGINT NOT NULL CHECK (count > 0),
    PRIMARY KEY (minute, key_id, route, status)
);
CREATE INDEX traffic_minutes_by_key ON traffic_minutes (key_id, minute DESC);
