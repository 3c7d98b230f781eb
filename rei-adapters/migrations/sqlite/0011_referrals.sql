-- Referrals: each user's code, who referred them, and the reward of each referee's
-- top-up with what refunds took back of it. The rules (once, not oneself, no loops,
-- not after a first job, the share) are core's; the constraints here are the last line.

CREATE TABLE referrals (
    user_id     INTEGER PRIMARY KEY REFERENCES users (tg_id),
    code        TEXT    UNIQUE CHECK (code IS NULL OR length(code) BETWEEN 4 AND 32),
    referrer_id INTEGER REFERENCES users (tg_id) CHECK (referrer_id IS NULL OR referrer_id <> user_id),
    bound_at    INTEGER,
    created_at  INTEGER NOT NULL
);

CREATE INDEX referrals_by_referrer ON referrals (referrer_id);

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

CREATE INDEX referral_rewards_by_referrer ON referral_rewards (referrer_id);
