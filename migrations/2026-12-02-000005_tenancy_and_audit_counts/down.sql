DROP INDEX IF EXISTS audit_events_counted;
ALTER TABLE audit_events DROP COLUMN IF EXISTS count;
ALTER TABLE audit_events DROP COLUMN IF EXISTS source;
DROP INDEX IF EXISTS checkouts_by_owner;
UPDATE checkouts SET record = record - 'owner' - 'payer';
ALTER TABLE checkouts DROP COLUMN IF EXISTS owner_org;
