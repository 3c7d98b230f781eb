-- The payment poller: when it last asked the provider and when to ask again (bookkeeping
-- outside the payment state machine), the provider's id of a refund under way, and the
-- payer's e-mail for 54-FZ receipts (asked once, kept).

ALTER TABLE payments ADD COLUMN refund_id     TEXT;
ALTER TABLE payments ADD COLUMN checks        INTEGER NOT NULL DEFAULT 0 CHECK (checks >= 0);
ALTER TABLE payments ADD COLUMN next_check_at INTEGER;

-- A refund id only while a refund hold is attached, or once refunded (SQLite cannot add
-- a CHECK to an existing table: a trigger says the same).
CREATE TRIGGER payments_refund_id_needs_a_refund
BEFORE UPDATE OF refund_id ON payments
WHEN NEW.refund_id IS NOT NULL AND NEW.refund_reservation_id IS NULL AND NEW.status <> 'refunded'
BEGIN
    SELECT RAISE(ABORT, 'a refund id needs a refund under way');
END;

CREATE INDEX payments_due ON payments (status, provider, created_at);

ALTER TABLE users ADD COLUMN receipt_email TEXT;
