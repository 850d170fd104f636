-- The Postgres twin of ../sqlite/20261206180001_accounts.sql.
-- Accounts: users with a role, and their credentials. Passwords are stored only as
-- argon2id PHC strings and tokens only as SHA-256 hashes: neither is recoverable from here.
CREATE TABLE IF NOT EXISTS users (
    id            TEXT PRIMARY KEY NOT NULL,
    name          TEXT NOT NULL UNIQUE,
    role          TEXT NOT NULL,
    password_hash TEXT,
    created_ms    BIGINT NOT NULL
);
-- API tokens (kind 'api', named, shown once) and web sessions (kind 'session', expiring).
CREATE TABLE IF NOT EXISTS tokens (
    id           TEXT PRIMARY KEY NOT NULL,
    user_id      TEXT NOT NULL REFERENCES users (id),
    kind         TEXT NOT NULL,
    name         TEXT NOT NULL,
    token_hash   TEXT NOT NULL UNIQUE,
    created_ms   BIGINT NOT NULL,
    last_used_ms BIGINT,
    expires_ms   BIGINT,
    revoked_ms   BIGINT
);
CREATE INDEX IF NOT EXISTS tokens_by_user ON tokens (user_id, kind);
