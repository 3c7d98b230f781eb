-- The jobs table becomes the job queue (leases guard every worker write), finished jobs
-- record whether the user was told, and settled reservations are frozen.

ALTER TABLE jobs ADD COLUMN provider_calls    INTEGER NOT NULL DEFAULT 0 CHECK (provider_calls >= 0);
ALTER TABLE jobs ADD COLUMN cancel_requested  TEXT;
ALTER TABLE jobs ADD COLUMN status_message    TEXT;

-- Users who blocked the bot (a send got 403), cleared when they write again.
ALTER TABLE users ADD COLUMN unreachable_since INTEGER;

-- Dialogue saves are compare-and-set on a version.
ALTER TABLE dialogues ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN delivery          TEXT    NOT NULL DEFAULT 'not_yet'
    CHECK (delivery IN ('not_yet', 'pending', 'delivered', 'unreachable', 'skipped'));
ALTER TABLE jobs ADD COLUMN delivery_attempts INTEGER NOT NULL DEFAULT 0 CHECK (delivery_attempts >= 0);
ALTER TABLE jobs ADD COLUMN delivered_at      INTEGER;

-- Jobs written before this migration: active ones are queued; finished ones were told
-- (best effort) when they finished.
UPDATE jobs SET run_after = created_at WHERE status IN ('pending', 'processing');
UPDATE jobs SET delivery = 'delivered', delivered_at = completed_at
    WHERE status IN ('completed', 'failed', 'cancelled');

-- A job's delivery state follows its status (the domain decides; this is the backstop).
CREATE TRIGGER jobs_delivery_follows_status BEFORE UPDATE ON jobs
WHEN (NEW.status IN ('pending', 'processing')) <> (NEW.delivery = 'not_yet')
BEGIN
    SELECT RAISE(ABORT, 'job delivery state does not match its status');
END;
CREATE TRIGGER jobs_delivery_follows_status_new BEFORE INSERT ON jobs
WHEN (NEW.status IN ('pending', 'processing')) <> (NEW.delivery = 'not_yet')
BEGIN
    SELECT RAISE(ABORT, 'job delivery state does not match its status');
END;

-- A settled reservation never changes again (captured -> released would refund twice).
CREATE TRIGGER reservation_settled_is_final BEFORE UPDATE ON reservations
WHEN OLD.state <> 'held'
BEGIN
    SELECT RAISE(ABORT, 'a settled reservation cannot change');
END;

-- A settlement row names a reservation settled the same way.
CREATE TRIGGER settlement_matches_reservation BEFORE INSERT ON settlements
WHEN (SELECT state FROM reservations WHERE id = NEW.reservation_id)
     IS NOT (CASE NEW.kind WHEN 'capture' THEN 'captured' ELSE 'released' END)
BEGIN
    SELECT RAISE(ABORT, 'a settlement must match a settled reservation');
END;
