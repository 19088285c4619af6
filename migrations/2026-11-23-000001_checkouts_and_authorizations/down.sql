DROP TABLE payment_authorizations;
DROP TABLE checkouts;
