-- Jobs of the v2.0 Python bot, kept as history by `rei-cli import-legacy` (their money
-- is already in the imported ledger; they never enter the job queue).
CREATE TABLE legacy_jobs (
    id            BIGINT PRIMARY KEY,
    user_id       BIGINT NOT NULL REFERENCES users (tg_id),
    kind          TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    params        TEXT    NOT NULL,
    result_url    TEXT,
    error_message TEXT,
    cost_estimate BIGINT CHECK (cost_estimate IS NULL OR cost_estimate >= 0),
    cost_actual   BIGINT CHECK (cost_actual IS NULL OR cost_actual >= 0),
    created_at    BIGINT NOT NULL,
    completed_at  BIGINT
);
CREATE INDEX legacy_jobs_by_user ON legacy_jobs (user_id, created_at);
