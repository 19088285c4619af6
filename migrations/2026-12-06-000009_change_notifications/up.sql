-- Changes other replicas must hear of at once, sent on the channel `sacp_changes` from the
-- transaction that makes them (delivered at its commit, never for a rollback):
--   key:<id>             an API key changed (revoked, rotated, updated, disabled) or was
--                        deleted: every replica drops its cached copy;
--   authorization:<t>    a payment authorization falls due at <t> (epoch seconds) earlier
--                        than anyone was told: new, or pulled in while an agent watches;
--   step_up:<t>          a watched step-up falls due at <t>.
-- Recording a key's last use does not change its version and sends nothing.
CREATE FUNCTION sacp_notify_key_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('sacp_changes', 'key:' || OLD.id);
    RETURN NULL;
END $$;

CREATE TRIGGER api_keys_changed
    AFTER UPDATE ON api_keys
    FOR EACH ROW WHEN (OLD.version IS DISTINCT FROM NEW.version)
    EXECUTE FUNCTION sacp_notify_key_changed();
CREATE TRIGGER api_keys_deleted
    AFTER DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION sacp_notify_key_changed();

CREATE FUNCTION sacp_notify_authorization_due() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('sacp_changes',
                      'authorization:' || extract(epoch FROM NEW.next_poll_at)::text);
    RETURN NULL;
END $$;

CREATE TRIGGER payment_authorizations_added
    AFTER INSERT ON payment_authorizations
    FOR EACH ROW EXECUTE FUNCTION sacp_notify_authorization_due();
CREATE TRIGGER payment_authorizations_pulled_in
    AFTER UPDATE OF next_poll_at ON payment_authorizations
    FOR EACH ROW
    WHEN (NEW.next_poll_at < OLD.next_poll_at
          AND NEW.status IN ('pending', 'approved', 'charging'))
    EXECUTE FUNCTION sacp_notify_authorization_due();

CREATE FUNCTION sacp_notify_step_up_due() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('sacp_changes', 'step_up:' || extract(epoch FROM NEW.next_at)::text);
    RETURN NULL;
END $$;

CREATE TRIGGER step_up_watches_added
    AFTER INSERT ON step_up_watches
    FOR EACH ROW EXECUTE FUNCTION sacp_notify_step_up_due();
CREATE TRIGGER step_up_watches_pulled_in
    AFTER UPDATE OF next_at ON step_up_watches
    FOR EACH ROW WHEN (NEW.next_at < OLD.next_at)
    EXECUTE FUNCTION sacp_notify_step_up_due();

-- When the next pending code expires (the driver's next due time), without a scan.
CREATE INDEX payment_authorizations_expiry
    ON payment_authorizations (expires_at)
    WHERE status = 'pending';
