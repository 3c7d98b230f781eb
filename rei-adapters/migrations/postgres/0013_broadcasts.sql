-- Broadcasts and their recipients. A recipient is `pending`, then `sending` (claimed in
-- its own commit right before the one send), then `sent`, `blocked` or `failed`; a row
-- left `sending` by a killed process is never sent again.

CREATE TABLE broadcasts (
    id           BIGSERIAL PRIMARY KEY,
    text         TEXT    NOT NULL CHECK (length(text) BETWEEN 1 AND 4096),
    photo        TEXT,
    button_label TEXT,
    button_url   TEXT    CHECK ((button_label IS NULL) = (button_url IS NULL)),
    segment      TEXT    NOT NULL,
    state        TEXT    NOT NULL CHECK (state IN ('draft', 'running', 'paused', 'cancelled', 'done')),
    created_at   BIGINT  NOT NULL,
    updated_at   BIGINT  NOT NULL
);

CREATE TABLE broadcast_recipients (
    broadcast_id BIGINT  NOT NULL REFERENCES broadcasts (id),
    user_id      BIGINT  NOT NULL REFERENCES users (tg_id),
    status       TEXT    NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'sending', 'sent', 'blocked', 'failed')),
    updated_at   BIGINT, 
    PRIMARY KEY (broadcast_id, user_id)
);

CREATE INDEX broadcast_recipients_by_status ON broadcast_recipients (broadcast_id, status);
