DROP INDEX audit_events_by_time;
DROP INDEX payment_authorizations_ended;
DROP INDEX checkouts_left_open;
DROP INDEX checkouts_ended;
