-- The sandbox (`SANDBOX=1`) takes top-ups on its own checkout page: those payments are
-- stored as provider 'sandbox', so play money is never mistaken for paid money.
ALTER TABLE payments DROP CONSTRAINT payments_provider_check;
ALTER TABLE payments ADD CONSTRAINT payments_provider_check
    CHECK (provider IN ('yookassa', 'telegram_stars', 'sandbox'));
