-- Challenge submissions: every upload is a row, rejected ones included.
CREATE TABLE IF NOT EXISTS submissions (
    id               TEXT PRIMARY KEY NOT NULL,
    challenge        TEXT NOT NULL,
    official         INTEGER NOT NULL DEFAULT 0,
    participant      TEXT NOT NULL,
    name             TEXT,
    description      TEXT,
    file_name        TEXT NOT NULL,
    status           TEXT NOT NULL,
    score            REAL,
    accuracy         REAL,
    params           INTEGER,
    params_trainable INTEGER,
    error            TEXT,
    logs             TEXT NOT NULL DEFAULT '',
    result           TEXT,
    project_dir      TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    owner_pid        INTEGER,
    created_ms       INTEGER NOT NULL,
    started_ms       INTEGER,
    finished_ms      INTEGER
);
CREATE INDEX IF NOT EXISTS submissions_by_challenge ON submissions (challenge, created_ms);
CREATE INDEX IF NOT EXISTS submissions_by_status ON submissions (status, created_ms);
