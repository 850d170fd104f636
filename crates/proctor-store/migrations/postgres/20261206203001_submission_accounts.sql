-- The Postgres twin of ../sqlite/20261206203001_submission_accounts.sql.
-- Who submitted (the account; NULL for private local runs of `proctor challenge submit`,
-- which never reach a leaderboard) and an admin's moderation: a hidden submission is gone
-- from leaderboards and the API, a disqualified one stays visible but is not ranked.
ALTER TABLE submissions ADD COLUMN IF NOT EXISTS account_id TEXT;
ALTER TABLE submissions ADD COLUMN IF NOT EXISTS hidden BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE submissions ADD COLUMN IF NOT EXISTS disqualified BOOLEAN NOT NULL DEFAULT FALSE;
CREATE INDEX IF NOT EXISTS submissions_by_account ON submissions (account_id, created_ms);
