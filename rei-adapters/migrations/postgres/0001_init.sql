-- REI schema (PostgreSQL). Amounts are kopecks; times are Unix milliseconds.
-- Constraints are the last line of defence behind the domain rules.

CREATE TABLE users (
    tg_id         BIGINT  PRIMARY KEY CHECK (tg_id > 0),
    username      TEXT,
    first_name    TEXT,
    language      TEXT    NOT NULL DEFAULT 'ru' CHECK (language IN ('ru', 'en')),
    is_banned     BOOLEAN NOT NULL DEFAULT FALSE,
    ban_notified  BOOLEAN NOT NULL DEFAULT FALSE,
    -- Cached sum of the user's ledger entries; `rei-cli ledger verify` checks it.
    balance       BIGINT  NOT NULL DEFAULT 0 CHECK (balance >= 0 AND balance <= 1000000000000000),
    created_at    BIGINT  NOT NULL
);

-- Append-only: see the triggers below.
CREATE TABLE ledger (
    id              BIGSERIAL PRIMARY KEY,
    user_id         BIGINT  NOT NULL REFERENCES users (tg_id),
    type            TEXT    NOT NULL CHECK (type IN ('credit', 'debit', 'refund')),
    amount          BIGINT  NOT NULL CHECK (amount > 0 AND amount <= 1000000000000000),
    ref_type        TEXT    NOT NULL CHECK (ref_type IN ('payment', 'job', 'admin', 'reservation')),
    ref_id          TEXT    NOT NULL,
    description     TEXT    NOT NULL,
    idempotency_key TEXT    NOT NULL UNIQUE,
    created_at      BIGINT  NOT NULL
);
CREATE INDEX ledger_by_user ON ledger (user_id, id);
CREATE INDEX ledger_by_ref ON ledger (ref_type, ref_id);

-- The cached balance follows every entry in the same statement; CHECK (balance >= 0)
-- on users turns an overdraft into a constraint error, whatever the caller does.
CREATE FUNCTION ledger_updates_balance() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE users SET balance = balance + (CASE NEW.type WHEN 'debit' THEN -NEW.amount ELSE NEW.amount END)
    WHERE tg_id = NEW.user_id;
    RETURN NULL;
END;
$$;
CREATE TRIGGER ledger_updates_balance AFTER INSERT ON ledger
    FOR EACH ROW EXECUTE FUNCTION ledger_updates_balance();

CREATE FUNCTION ledger_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger is append-only';
END;
$$;
CREATE TRIGGER ledger_no_update BEFORE UPDATE OR DELETE ON ledger
    FOR EACH ROW EXECUTE FUNCTION ledger_is_append_only();

CREATE TABLE reservations (
    id              TEXT    PRIMARY KEY,
    user_id         BIGINT  NOT NULL REFERENCES users (tg_id),
    amount          BIGINT  NOT NULL CHECK (amount > 0),
    state           TEXT    NOT NULL CHECK (state IN ('held', 'captured', 'released')),
    captured        BIGINT  CHECK (captured IS NULL OR (captured >= 0 AND captured <= amount)),
    job_id          TEXT,
    description     TEXT    NOT NULL,
    idempotency_key TEXT    NOT NULL UNIQUE,
    created_at      BIGINT  NOT NULL,
    settled_at      BIGINT ,
    CHECK ((state = 'held') = (settled_at IS NULL)),
    CHECK ((state = 'captured') = (captured IS NOT NULL))
);
CREATE INDEX reservations_held_by_user ON reservations (user_id) WHERE state = 'held';

-- One settlement per reservation, whatever the code above does.
CREATE TABLE settlements (
    reservation_id TEXT    PRIMARY KEY REFERENCES reservations (id),
    kind           TEXT    NOT NULL CHECK (kind IN ('capture', 'release')),
    actual         BIGINT  CHECK (actual IS NULL OR actual >= 0),
    settled_at     BIGINT  NOT NULL,
    CHECK ((kind = 'capture') = (actual IS NOT NULL))
);

-- Settling a reservation records its one settlement (the primary key refuses a second).
CREATE FUNCTION reservation_settles_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO settlements (reservation_id, kind, actual, settled_at)
    VALUES (NEW.id, CASE NEW.state WHEN 'captured' THEN 'capture' ELSE 'release' END, NEW.captured, NEW.settled_at);
    RETURN NULL;
END;
$$;
CREATE TRIGGER reservation_settles_once AFTER UPDATE OF state ON reservations
    FOR EACH ROW WHEN (OLD.state = 'held' AND NEW.state <> 'held') EXECUTE FUNCTION reservation_settles_once();

CREATE TABLE jobs (
    id               TEXT    PRIMARY KEY,
    seq              BIGSERIAL NOT NULL UNIQUE,
    user_id          BIGINT  NOT NULL REFERENCES users (tg_id),
    type             TEXT    NOT NULL CHECK (type IN ('image_generation', 'image_edit', 'video_generation')),
    status           TEXT    NOT NULL CHECK (status IN ('pending', 'processing', 'completed', 'failed', 'cancelled')),
    progress         BIGINT  NOT NULL CHECK (progress IN (0, 10, 50, 100)),
    params           TEXT    NOT NULL,
    quote            TEXT    NOT NULL,
    cost_estimate    BIGINT  NOT NULL CHECK (cost_estimate > 0),
    cost_actual      BIGINT  CHECK (cost_actual IS NULL OR (cost_actual >= 0 AND cost_actual <= cost_estimate)),
    reservation_id   TEXT    NOT NULL UNIQUE REFERENCES reservations (id),
    idempotency_key  TEXT    NOT NULL UNIQUE,
    attempts         BIGINT  NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    provider_task_id TEXT,
    result_url       TEXT,
    error_message    TEXT,
    version          BIGINT  NOT NULL DEFAULT 0,
    created_at       BIGINT  NOT NULL,
    started_at       BIGINT ,
    completed_at     BIGINT ,
    updated_at       BIGINT  NOT NULL,
    -- Queue / lease columns for the database-backed job queue.
    run_after        BIGINT ,
    lease_token      TEXT,
    lease_until      BIGINT ,
    deliveries       BIGINT  NOT NULL DEFAULT 0,
    CHECK ((status = 'completed') = (cost_actual IS NOT NULL))
);
CREATE INDEX jobs_by_user ON jobs (user_id, created_at);
CREATE INDEX jobs_active_by_user ON jobs (user_id) WHERE status IN ('pending', 'processing');
CREATE INDEX jobs_by_status ON jobs (status, created_at);
CREATE INDEX jobs_ready ON jobs (run_after) WHERE run_after IS NOT NULL;

CREATE TABLE payments (
    id                    TEXT    PRIMARY KEY,
    seq                   BIGSERIAL NOT NULL UNIQUE,
    provider              TEXT    NOT NULL CHECK (provider IN ('yookassa', 'telegram_stars')),
    provider_payment_id   TEXT    UNIQUE,
    user_id               BIGINT  NOT NULL REFERENCES users (tg_id),
    amount                BIGINT  NOT NULL CHECK (amount > 0),
    provider_units        BIGINT  CHECK (provider_units IS NULL OR provider_units > 0),
    status                TEXT    NOT NULL CHECK (status IN ('pending', 'paid', 'cancelled', 'refunded')),
    confirmation_url      TEXT,
    refund_reservation_id TEXT    REFERENCES reservations (id),
    cancel_reason         TEXT,
    version               BIGINT  NOT NULL DEFAULT 0,
    created_at            BIGINT  NOT NULL,
    paid_at               BIGINT ,
    updated_at            BIGINT  NOT NULL,
    CHECK ((status IN ('paid', 'refunded')) = (paid_at IS NOT NULL))
);
CREATE INDEX payments_by_status ON payments (status, created_at);
CREATE INDEX payments_by_user ON payments (user_id, created_at);

CREATE TABLE audit_log (
    id          BIGSERIAL PRIMARY KEY,
    actor       TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    target_user BIGINT ,
    amount      BIGINT  CHECK (amount IS NULL OR amount >= 0),
    reason      TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL
);

-- The bot's dialogue and draft state (teloxide's own storage cannot link beside sqlx 0.9).
CREATE TABLE dialogues (
    user_id    BIGINT  PRIMARY KEY REFERENCES users (tg_id),
    state      TEXT    NOT NULL,
    updated_at BIGINT  NOT NULL
);
