-- The live offer besides prices: the video models switched off and the top-up amounts
-- (seeded from the settings on first start, changed by admins with an audit line, read
-- by every process). Values are checked by core before they are written.

CREATE TABLE offer_options (
    key         TEXT    PRIMARY KEY CHECK (key IN ('models_off', 'topup_amounts')),
    value       TEXT    NOT NULL CHECK (length(value) <= 2000),
    updated_at  BIGINT  NOT NULL
);
