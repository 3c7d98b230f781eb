-- Partial refunds: a payment records what went back so far (`refunded_amount`) and the
-- amount of the refund under way (`refund_amount`, set exactly while a refund hold is
-- attached). A payment is `refunded` once all of it went back.

ALTER TABLE payments ADD COLUMN refund_amount   INTEGER CHECK (refund_amount IS NULL OR refund_amount > 0);
ALTER TABLE payments ADD COLUMN refunded_amount INTEGER NOT NULL DEFAULT 0 CHECK (refunded_amount >= 0);

-- Before: a refund was whole, and a refunded payment kept its captured hold's id.
UPDATE payments SET refunded_amount = amount, refund_reservation_id = NULL, refund_id = NULL
    WHERE status = 'refunded';
UPDATE payments SET refund_amount = amount WHERE refund_reservation_id IS NOT NULL;

-- SQLite cannot add a CHECK to an existing table: triggers say the same.
CREATE TRIGGER payments_refund_amount_with_its_hold_insert
BEFORE INSERT ON payments
WHEN (NEW.refund_reservation_id IS NULL) <> (NEW.refund_amount IS NULL)
    OR NEW.refunded_amount > NEW.amount
    OR NEW.refunded_amount + COALESCE(NEW.refund_amount, 0) > NEW.amount
    OR (NEW.status = 'refunded') <> (NEW.refunded_amount = NEW.amount)
BEGIN
    SELECT RAISE(ABORT, 'a payment''s refunds must add up: a refund amount exactly with its hold, never more than was paid');
END;

CREATE TRIGGER payments_refund_amount_with_its_hold_update
BEFORE UPDATE ON payments
WHEN (NEW.refund_reservation_id IS NULL) <> (NEW.refund_amount IS NULL)
    OR NEW.refunded_amount > NEW.amount
    OR NEW.refunded_amount + COALESCE(NEW.refund_amount, 0) > NEW.amount
    OR (NEW.status = 'refunded') <> (NEW.refunded_amount = NEW.amount)
    OR NEW.refunded_amount < OLD.refunded_amount
BEGIN
    SELECT RAISE(ABORT, 'a payment''s refunds must add up: a refund amount exactly with its hold, never more than was paid');
END;
