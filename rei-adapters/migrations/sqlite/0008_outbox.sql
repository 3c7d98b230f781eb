-- The outbox: money notices ("credited", "refunded", a manual adjustment) written in
-- the same transaction as the money change, sent afterwards by a dispatcher. A row
-- leaves (next_at NULL) when it was sent or given up; it is kept as the record.

CREATE TABLE outbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id     INTEGER NOT NULL REFERENCES users (tg_id),
    notice      TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    next_at     INTEGER,
    attempts    INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    sent_at     INTEGER,
    given_up_at INTEGER,
    CHECK (sent_at IS NULL OR given_up_at IS NULL),
    CHECK (next_at IS NULL OR (sent_at IS NULL AND given_up_at IS NULL))
);

CREATE INDEX outbox_due ON outbox (next_at) WHERE next_at IS NOT NULL;
