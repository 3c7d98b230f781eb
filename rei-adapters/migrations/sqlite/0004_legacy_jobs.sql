-- Jobs of the v2.0 Python bot, kept as history by `rei-cli import-legacy` (their money
-- is already in the imported ledger; they never enter the job queue).
CREATE TABLE legacy_jobs (
    id            INTEGER PRIMARY KEY,
    user_id       INTEGER NOT NULL REFERENCES users (tg_id),
    kind          TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    params        TEXT    NOT NULL,
    result_url    TEXT,
    error_message TEXT,
    cost_estimate INTEGER CHECK (cost_estimate IS NULL OR cost_estimate >= 0),
    cost_actual   INTEGER CHECK (cost_actual IS NULL OR cost_actual >= 0),
    created_at    INTEGER NOT NULL,
    completed_at  INTEGER
);
CREATE INDEX legacy_jobs_by_user ON legacy_jobs (user_id, created_at);
