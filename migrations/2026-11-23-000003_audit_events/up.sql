-- The audit log (ADR 019): append-only, never a secret.
CREATE TABLE audit_events (
    id          BIGSERIAL PRIMARY KEY,
    at          TIMESTAMPTZ NOT NULL,
    request_id  TEXT NOT NULL,
    key_id      TEXT,
    org         TEXT,
    subject     TEXT,
    action      TEXT NOT NULL,
    resource    TEXT,
    outcome     TEXT NOT NULL CHECK (outcome IN ('success', 'denied', 'failed')),
    status      SMALLINT NOT NULL CHECK (status BETWEEN 100 AND 599)
);

CREATE INDEX audit_events_newest ON audit_events (id DESC);
CREATE INDEX audit_events_by_key ON audit_events (key_id, id DESC);
