-- The web admin's sign-in ([admin-web]): one-time links an admin gets from the bot
-- (/web) and the sessions they open. Only SHA-256 digests of the tokens are kept; who
-- is an admin is checked by core at every request.

CREATE TABLE web_links (
    digest      TEXT    PRIMARY KEY CHECK (length(digest) = 64),
    admin_id    BIGINT  NOT NULL,
    expires_at  BIGINT  NOT NULL,
    used        INTEGER NOT NULL DEFAULT 0 CHECK (used IN (0, 1))
);

CREATE TABLE web_sessions (
    digest      TEXT    PRIMARY KEY CHECK (length(digest) = 64),
    admin_id    BIGINT  NOT NULL,
    csrf        TEXT    NOT NULL CHECK (length(csrf) BETWEEN 16 AND 128),
    created_at  BIGINT  NOT NULL,
    expires_at  BIGINT  NOT NULL CHECK (expires_at > created_at)
);
