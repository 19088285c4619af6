-- Integration API keys (ADR 019). Only the SHA-256 of a secret is stored.
CREATE TABLE api_keys (
    id                    TEXT PRIMARY KEY CHECK (id LIKE 'key\_%'),
    name                  TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    org                   TEXT NOT NULL CHECK (length(org) BETWEEN 1 AND 100),
    scopes                TEXT[] NOT NULL CHECK (cardinality(scopes) >= 1 AND scopes <@ ARRAY[
                              'catalog:read', 'search:read', 'checkout:read',
                              'checkout:write', 'orders:read', 'admin']::TEXT[]),
    requests_per_minute   INTEGER NOT NULL CHECK (requests_per_minute >= 1),
    daily_quota           INTEGER NOT NULL CHECK (daily_quota >= 1),
    expires_at            TIMESTAMPTZ,
    revoked_at            TIMESTAMPTZ,
    disabled              BOOLEAN NOT NULL DEFAULT FALSE,
    secret_hash           BYTEA NOT NULL CHECK (length(secret_hash) = 32),
    previous_secret_hash  BYTEA CHECK (length(previous_secret_hash) = 32),
    previous_valid_until  TIMESTAMPTZ,
    created_at            TIMESTAMPTZ NOT NULL,
    last_used_at          TIMESTAMPTZ,
    version               BIGINT NOT NULL CHECK (version >= 1),
    CONSTRAINT previous_secret_has_deadline
        CHECK ((previous_secret_hash IS NULL) = (previous_valid_until IS NULL))
);
