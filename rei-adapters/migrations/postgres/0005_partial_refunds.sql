-- Partial refunds: a payment records what went back so far (`refunded_amount`) and the
-- amount of the refund under way (`refund_amount`, set exactly while a refund hold is
-- attached). A payment is `refunded` once all of it went back.

ALTER TABLE payments ADD COLUMN refund_amount   BIGINT CHECK (refund_amount IS NULL OR refund_amount > 0);
ALTER TABLE payments ADD COLUMN refunded_amount BIGINT NOT NULL DEFAULT 0 CHECK (refunded_amount >= 0);

-- Before: a refund was whole, and a refunded payment kept its captured hold's id.
UPDATE payments SET refunded_amount = amount, refund_reservation_id = NULL, refund_id = NULL
    WHERE status = 'refunded';
UPDATE payments SET refund_amount = amount WHERE refund_reservation_id IS NOT NULL;

ALTER TABLE payments ADD CONSTRAINT payments_refund_amount_with_its_hold
    CHECK ((refund_reservation_id IS NULL) = (refund_amount IS NULL));
ALTER TABLE payments ADD CONSTRAINT payments_refunds_add_up
    CHECK (refunded_amount + COALESCE(refund_amount, 0) <= amount
           AND (status = 'refunded') = (refunded_amount = amount));
