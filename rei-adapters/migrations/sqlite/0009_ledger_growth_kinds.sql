-- Growth money paths are ledger entries of their own kinds: a signup bonus, a referral
-- reward, a promo code credit. SQLite cannot change a CHECK in place: the ledger is
-- rebuilt with the wider list, every row copied as it is (ids too), then its indexes
-- and triggers made again. The balance trigger is created after the copy, so copying
-- moves no balance.

CREATE TABLE ledger_growth (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id         INTEGER NOT NULL REFERENCES users (tg_id),
    type            TEXT    NOT NULL CHECK (type IN ('credit', 'debit', 'refund')),
    amount          INTEGER NOT NULL CHECK (amount > 0 AND amount <= 1000000000000000),
    ref_type        TEXT    NOT NULL CHECK (ref_type IN ('payment', 'job', 'admin', 'reservation', 'bonus', 'referral', 'promo')),
    ref_id          TEXT    NOT NULL,
    description     TEXT    NOT NULL,
    idempotency_key TEXT    NOT NULL UNIQUE,
    created_at      INTEGER NOT NULL
);

INSERT INTO ledger_growth (id, user_id, type, amount, ref_type, ref_id, description, idempotency_key, created_at)
    SELECT id, user_id, type, amount, ref_type, ref_id, description, idempotency_key, created_at FROM ledger ORDER BY id;

-- Dropping a table fires no DELETE trigger; nothing references the ledger.
DROP TABLE ledger;
ALTER TABLE ledger_growth RENAME TO ledger;

CREATE INDEX ledger_by_user ON ledger (user_id, id);
CREATE INDEX ledger_by_ref ON ledger (ref_type, ref_id);

CREATE TRIGGER ledger_updates_balance AFTER INSERT ON ledger
BEGIN
    UPDATE users SET balance = balance + (CASE NEW.type WHEN 'debit' THEN -NEW.amount ELSE NEW.amount END)
    WHERE tg_id = NEW.user_id;
END;

CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'ledger is append-only');
END;
CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'ledger is append-only');
END;
