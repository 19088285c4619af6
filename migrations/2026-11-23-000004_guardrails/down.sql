DROP TABLE traffic_minutes;
DROP TABLE idempotency_records;
DROP TABLE switches;
DROP TABLE rate_counters;
