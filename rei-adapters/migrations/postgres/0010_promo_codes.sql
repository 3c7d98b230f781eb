-- Promo codes and who redeemed them. The rules (expiry, uses, one per user) are core's
-- and checked in the redeeming transaction; the constraints here are the last line.

CREATE TABLE promo_codes (
    code        TEXT    PRIMARY KEY CHECK (length(code) BETWEEN 3 AND 32),
    amount      BIGINT  NOT NULL CHECK (amount > 0 AND amount <= 1000000000000000),
    max_uses    BIGINT  CHECK (max_uses IS NULL OR max_uses > 0),
    used        BIGINT  NOT NULL DEFAULT 0 CHECK (used >= 0 AND (max_uses IS NULL OR used <= max_uses)),
    expires_at  BIGINT,
    disabled    BOOLEAN NOT NULL DEFAULT FALSE,
    created_at  BIGINT  NOT NULL
);

CREATE TABLE promo_redemptions (
    code        TEXT    NOT NULL REFERENCES promo_codes (code),
    user_id     BIGINT  NOT NULL REFERENCES users (tg_id),
    created_at  BIGINT  NOT NULL,
    PRIMARY KEY (code, user_id)
);
