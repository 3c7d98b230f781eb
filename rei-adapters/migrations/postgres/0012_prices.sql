-- Live prices by product name (`image_generation:4k`, `video:kling-v3:10s`): seeded from
-- the settings on first start, changed by admins (audited), read by every process.

CREATE TABLE prices (
    product     TEXT    PRIMARY KEY CHECK (length(product) BETWEEN 1 AND 100),
    amount      BIGINT  NOT NULL CHECK (amount > 0 AND amount <= 1000000000000000),
    updated_at  BIGINT  NOT NULL
);
