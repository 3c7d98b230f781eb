-- The payment poller: when it last asked the provider and when to ask again (bookkeeping
-- outside the payment state machine), the provider's id of a refund under way, and the
-- payer's e-mail for 54-FZ receipts (asked once, kept).

ALTER TABLE payments ADD COLUMN refund_id     TEXT;
ALTER TABLE payments ADD COLUMN checks        BIGINT NOT NULL DEFAULT 0 CHECK (checks >= 0);
ALTER TABLE payments ADD COLUMN next_check_at BIGINT;

-- A refund id only while a refund hold is attached, or once refunded.
ALTER TABLE payments ADD CONSTRAINT payments_refund_id_needs_a_refund
    CHECK (refund_id IS NULL OR refund_reservation_id IS NOT NULL OR status = 'refunded');

CREATE INDEX payments_due ON payments (status, provider, created_at);

ALTER TABLE users ADD COLUMN receipt_email TEXT;
