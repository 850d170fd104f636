-- The Postgres twin of ../sqlite/20261207000001_reviews.sql.
-- Experiment-code reviews done through the server (and local CLI reviews): the verdict in
-- columns for lists, the full report (findings with excerpts, every smoke run with its log
-- tail) as JSON. A review belongs to the account that asked (NULL: a local CLI review,
-- seen only by admins and by whoever can read this database).
CREATE TABLE IF NOT EXISTS reviews (
    id          TEXT PRIMARY KEY NOT NULL,
    account_id  TEXT,
    experiment  TEXT NOT NULL,
    ready       BOOLEAN NOT NULL,
    blockers    BIGINT NOT NULL,
    warnings    BIGINT NOT NULL,
    wall_ms     BIGINT NOT NULL,
    created_ms  BIGINT NOT NULL,
    report      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS reviews_by_account ON reviews (account_id, created_ms);
CREATE INDEX IF NOT EXISTS reviews_by_time ON reviews (created_ms);
