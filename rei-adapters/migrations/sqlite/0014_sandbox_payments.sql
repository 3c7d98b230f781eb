-- The sandbox (`SANDBOX=1`) takes top-ups on its own checkout page: those payments are
-- stored as provider 'sandbox', so play money is never mistaken for paid money.
-- SQLite cannot change a CHECK in place: the payments table is rebuilt with the wider
-- list, every row copied as it is, its indexes and triggers made again. The one table
-- that references payments (referral_rewards) is set aside and put back around it, so
-- the rebuild runs inside the migration's transaction with foreign keys on.

CREATE TABLE referral_rewards_aside AS SELECT * FROM referral_rewards;
DROP TABLE referral_rewards;

CREATE TABLE payments_sandbox (
    id                    TEXT    PRIMARY KEY,
    provider              TEXT    NOT NULL CHECK (provider IN ('yookassa', 'telegram_stars', 'sandbox')),
    provider_payment_id   TEXT    UNIQUE,
    user_id               INTEGER NOT NULL REFERENCES users (tg_id),
    amount                INTEGER NOT NULL CHECK (amount > 0),
    provider_units        INTEGER CHECK (provider_units IS NULL OR provider_units > 0),
    status                TEXT    NOT NULL CHECK (status IN ('pending', 'paid', 'cancelled', 'refunded')),
    confirmation_url      TEXT,
    refund_reservation_id TEXT    REFERENCES reservations (id),
    cancel_reason         TEXT,
    version               INTEGER NOT NULL DEFAULT 0,
    created_at            INTEGER NOT NULL,
    paid_at               INTEGER,
    updated_at            INTEGER NOT NULL,
    refund_id             TEXT,
    checks                INTEGER NOT NULL DEFAULT 0 CHECK (checks >= 0),
    next_check_at         INTEGER,
    refund_amount         INTEGER CHECK (refund_amount IS NULL OR refund_amount > 0),
    refunded_amount       INTEGER NOT NULL DEFAULT 0 CHECK (refunded_amount >= 0),
    CHECK ((status IN ('paid', 'refunded')) = (paid_at IS NOT NULL))
);

INSERT INTO payments_sandbox (id, provider, provider_payment_id, user_id, amount, provider_units, status,
        confirmation_url, refund_reservation_id, cancel_reason, version, created_at, paid_at, updated_at,
        refund_id, checks, next_check_at, refund_amount, refunded_amount)
    SELECT id, provider, provider_payment_id, user_id, amount, provider_units, status,
        confirmation_url, refund_reservation_id, cancel_reason, version, created_at, paid_at, updated_at,
        refund_id, checks, next_check_at, refund_amount, refunded_amount
    FROM payments;

DROP TABLE payments;
ALTER TABLE payments_sandbox RENAME TO payments;

CREATE INDEX payments_by_status ON payments (status, created_at);
CREATE INDEX payments_by_user ON payments (user_id, created_at);
CREATE INDEX payments_due ON payments (status, provider, created_at);

CREATE TRIGGER payments_refund_id_needs_a_refund
BEFORE UPDATE OF refund_id ON payments
WHEN NEW.refund_id IS NOT NULL AND NEW.refund_reservation_id IS NULL AND NEW.status <> 'refunded'
BEGIN
    SELECT RAISE(ABORT, 'a refund id needs a refund under way');
END;

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

CREATE TABLE referral_rewards (
    payment_id  TEXT    PRIMARY KEY REFERENCES payments (id),
    referrer_id INTEGER NOT NULL REFERENCES users (tg_id),
    referee_id  INTEGER NOT NULL REFERENCES users (tg_id),
    reward      INTEGER NOT NULL CHECK (reward > 0),
    taken_back  INTEGER NOT NULL DEFAULT 0 CHECK (taken_back >= 0),
    unrecovered INTEGER NOT NULL DEFAULT 0 CHECK (unrecovered >= 0),
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    CHECK (taken_back + unrecovered <= reward)
);

INSERT INTO referral_rewards (payment_id, referrer_id, referee_id, reward, taken_back, unrecovered, created_at, updated_at)
    SELECT payment_id, referrer_id, referee_id, reward, taken_back, unrecovered, created_at, updated_at
    FROM referral_rewards_aside;
DROP TABLE referral_rewards_aside;

CREATE INDEX referral_rewards_by_referrer ON referral_rewards (referrer_id);
