-- Tenancy: a checkout belongs to the organisation of the key that created it. The owner
-- lives in the domain record (JSONB) and, for operators' queries, in `owner_org`.
ALTER TABLE checkouts ADD COLUMN owner_org TEXT NOT NULL DEFAULT '';

-- Existing checkouts get the organisation the audit log credits with their creation; any
-- other keeps '' (no organisation can have that name, so nobody can read it through the API;
-- the payment driver still finishes what it started).
UPDATE checkouts c
   SET owner_org = created.org
  FROM (SELECT DISTINCT ON (resource) resource, org
          FROM audit_events
         WHERE action = 'POST /checkout' AND status = 201 AND org IS NOT NULL
         ORDER BY resource, id) AS created
 WHERE created.resource = c.id;
UPDATE checkouts SET record = jsonb_set(record, '{owner}', to_jsonb(owner_org));
ALTER TABLE checkouts ALTER COLUMN owner_org DROP DEFAULT;
CREATE INDEX checkouts_by_owner ON checkouts (owner_org, created_at DESC);

-- Refusals are audited counted: one row per source, action, status and minute.
ALTER TABLE audit_events ADD COLUMN source TEXT;
ALTER TABLE audit_events ADD COLUMN count BIGINT NOT NULL DEFAULT 1 CHECK (count >= 1);
CREATE UNIQUE INDEX audit_events_counted
    ON audit_events (at, source, action, status)
    WHERE source IS NOT NULL;
