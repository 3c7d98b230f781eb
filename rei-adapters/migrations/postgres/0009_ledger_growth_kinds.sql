-- Growth money paths are ledger entries of their own kinds: a signup bonus, a referral
-- reward, a promo code credit.

ALTER TABLE ledger DROP CONSTRAINT ledger_ref_type_check;
ALTER TABLE ledger ADD CONSTRAINT ledger_ref_type_check
    CHECK (ref_type IN ('payment', 'job', 'admin', 'reservation', 'bonus', 'referral', 'promo'));
