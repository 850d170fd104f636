-- Challenge submissions: every upload is a row, rejected ones included.
-- The Postgres twin of ../sqlite/20261125000001_submissions.sql (same columns and
-- indexes; native BOOLEAN, DOUBLE PRECISION and BIGINT where SQLite has its affinities).
CREATE TABLE IF NOT EXISTS submissions (
    id               TEXT PRIMARY KEY NOT NULL,
    challenge        TEXT NOT NULL,
    official         BOOLEAN NOT NULL DEFAULT FALSE,
    participant      TEXT NOT NULL,
    name             TEXT,
    description      TEXT,
    file_name        TEXT NOT NULL,
    status           TEXT NOT NULL,
    score            DOUBLE PRECISION,
    accuracy         DOUBLE PRECISION,
    params           BIGINT,
    params_trainable BIGINT,
    error            TEXT,
    logs             TEXT NOT NULL DEFAULT '',
    result           TEXT,
    project_dir      TEXT,
    attempts         BIGINT NOT NULL DEFAULT 0,
    owner_pid        BIGINT,
    created_ms       BIGINT NOT NULL,
    started_ms       BIGINT,
    finished_ms      BIGINT
);
CREATE INDEX IF NOT EXISTS submissions_by_challenge ON submissions (challenge, created_ms);
CREATE INDEX IF NOT EXISTS submissions_by_status ON submissions (status, created_ms);
