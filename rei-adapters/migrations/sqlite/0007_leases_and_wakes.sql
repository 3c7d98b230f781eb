-- Named leases (one payment poller per deployment), and the time a provider last said a
-- running job's task changed (its worker, in any process, asks at once).

CREATE TABLE leases (
    name   TEXT    PRIMARY KEY,
    holder TEXT    NOT NULL,
    until  INTEGER NOT NULL
);

ALTER TABLE jobs ADD COLUMN woken_at INTEGER;
