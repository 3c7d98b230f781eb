-- A result that may still come after its job was refunded (a deadline passed, an admin
-- cancelled it after the call went out) is watched for until `watch_until` and then
-- delivered free; the provider's own URL of a result is kept so that a worker on another
-- host can fetch it again; a result resent to a user who had blocked the bot says so.

ALTER TABLE jobs ADD COLUMN provider_result_url TEXT;
ALTER TABLE jobs ADD COLUMN watch_until         INTEGER;
ALTER TABLE jobs ADD COLUMN redelivery          INTEGER NOT NULL DEFAULT 0 CHECK (redelivery IN (0, 1));
