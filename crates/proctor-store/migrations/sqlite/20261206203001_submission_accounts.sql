-- Who submitted (the account; NULL for private local runs of `proctor challenge submit`,
-- which never reach a leaderboard) and an admin's moderation: a hidden submission is gone
-- from leaderboards and the API, a disqualified one stays visible but is not ranked.
ALTER TABLE submissions ADD COLUMN account_id TEXT;
ALTER TABLE submissions ADD COLUMN hidden INTEGER NOT NULL DEFAULT 0;
ALTER TABLE submissions ADD COLUMN disqualified INTEGER NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS submissions_by_account ON submissions (account_id, created_ms);
