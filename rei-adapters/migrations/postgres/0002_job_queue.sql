-- The jobs table becomes the job queue (leases guard every worker write), finished jobs
-- record whether the user was told, and settled reservations are frozen.

ALTER TABLE jobs ADD COLUMN provider_calls    BIGINT NOT NULL DEFAULT 0 CHECK (provider_calls >= 0);
ALTER TABLE jobs ADD COLUMN cancel_requested  TEXT;
ALTER TABLE jobs ADD COLUMN status_message    TEXT;

-- Users who blocked the bot (a send got 403), cleared when they write again.
ALTER TABLE users ADD COLUMN unreachable_since BIGINT;

-- Dialogue saves are compare-and-set on a version.
ALTER TABLE dialogues ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN delivery          TEXT   NOT NULL DEFAULT 'not_yet'
    CHECK (delivery IN ('not_yet', 'pending', 'delivered', 'unreachable', 'skipped'));
ALTER TABLE jobs ADD COLUMN delivery_attempts BIGINT NOT NULL DEFAULT 0 CHECK (delivery_attempts >= 0);
ALTER TABLE jobs ADD COLUMN delivered_at      BIGINT;

UPDATE jobs SET run_after = created_at WHERE status IN ('pending', 'processing');
UPDATE jobs SET delivery = 'delivered', delivered_at = completed_at
    WHERE status IN ('completed', 'failed', 'cancelled');

ALTER TABLE jobs ADD CONSTRAINT jobs_delivery_follows_status
    CHECK ((status IN ('pending', 'processing')) = (delivery = 'not_yet'));

CREATE FUNCTION reservation_settled_is_final() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.state <> 'held' THEN
        RAISE EXCEPTION 'a settled reservation cannot change';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER reservation_settled_is_final BEFORE UPDATE ON reservations
    FOR EACH ROW EXECUTE FUNCTION reservation_settled_is_final();

CREATE FUNCTION settlement_matches_reservation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT state FROM reservations WHERE id = NEW.reservation_id)
       IS DISTINCT FROM (CASE NEW.kind WHEN 'capture' THEN 'captured' ELSE 'released' END) THEN
        RAISE EXCEPTION 'a settlement must match a settled reservation';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER settlement_matches_reservation BEFORE INSERT ON settlements
    FOR EACH ROW EXECUTE FUNCTION settlement_matches_reservation();
