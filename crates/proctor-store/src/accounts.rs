//! The accounts repository: users and their credentials (API tokens and web sessions).
//! Secrets never reach this module in clear: passwords arrive as argon2id PHC strings and
//! tokens as SHA-256 hex digests (hashing is `proctor-accounts`' job).

use serde::Serialize;
use sqlx::Row;

use crate::{now_ms, Pool, Store, StoreError};

/// A user as stored (without the password hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    /// Id (a UUID).
    pub id: String,
    /// Unique login name, shown on leaderboards.
    pub name: String,
    /// `participant` or `admin`.
    pub role: String,
    /// Unix ms of creation.
    pub created_ms: i64,
}

/// A credential as stored: an API token or a web session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Token {
    /// Id (a UUID).
    pub id: String,
    /// Owner.
    pub user_id: String,
    /// `api` or `session`.
    pub kind: String,
    /// The operator's label.
    pub name: String,
    /// SHA-256 hex of the secret.
    #[serde(skip)]
    pub token_hash: String,
    /// Unix ms of creation.
    pub created_ms: i64,
    /// Unix ms of the last request it authenticated.
    pub last_used_ms: Option<i64>,
    /// Unix ms after which it is refused (sessions).
    pub expires_ms: Option<i64>,
    /// Unix ms of revocation.
    pub revoked_ms: Option<i64>,
}

const USER_COLUMNS: &str = "id, name, role, created_ms";
const TOKEN_COLUMNS: &str =
    "id, user_id, kind, name, token_hash, created_ms, last_used_ms, expires_ms, revoked_ms";

fn user<R: Row>(r: &R) -> Result<User, sqlx::Error>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(User {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        role: r.try_get("role")?,
        created_ms: r.try_get("created_ms")?,
    })
}

fn token<R: Row>(r: &R) -> Result<Token, sqlx::Error>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(Token {
        id: r.try_get("id")?,
        user_id: r.try_get("user_id")?,
        kind: r.try_get("kind")?,
        name: r.try_get("name")?,
        token_hash: r.try_get("token_hash")?,
        created_ms: r.try_get("created_ms")?,
        last_used_ms: r.try_get("last_used_ms")?,
        expires_ms: r.try_get("expires_ms")?,
        revoked_ms: r.try_get("revoked_ms")?,
    })
}

impl Store {
    /// Creates a user; `false` when the name is taken.
    pub async fn insert_user(
        &self,
        user: &User,
        password_hash: Option<&str>,
    ) -> Result<bool, StoreError> {
        let sql = "INSERT INTO users (id, name, role, password_hash, created_ms) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO NOTHING";
        let done = on_pool!(self, pool => sqlx::query(sql)
            .bind(&user.id)
            .bind(&user.name)
            .bind(&user.role)
            .bind(password_hash)
            .bind(user.created_ms)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(done == 1)
    }

    /// A user by name, with their password hash.
    pub async fn user_by_name(
        &self,
        name: &str,
    ) -> Result<Option<(User, Option<String>)>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS}, password_hash FROM users WHERE name = $1");
        on_pool!(self, pool => {
            let r = sqlx::query(&sql).bind(name).fetch_optional(pool).await?;
            Ok(match r {
                Some(r) => Some((user(&r)?, r.try_get("password_hash")?)),
                None => None,
            })
        })
    }

    /// Every user, by name.
    pub async fn users(&self) -> Result<Vec<User>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY name");
        on_pool!(self, pool => {
            let rows = sqlx::query(&sql).fetch_all(pool).await?;
            Ok(rows.iter().map(user).collect::<Result<_, _>>()?)
        })
    }

    /// Replaces a user's password hash; `false` when there is no such user.
    pub async fn set_password_hash(&self, user_id: &str, hash: &str) -> Result<bool, StoreError> {
        let done = on_pool!(self, pool => sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(hash)
            .bind(user_id)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(done == 1)
    }

    /// Stores a new credential.
    pub async fn insert_token(&self, t: &Token) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO tokens ({TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        );
        on_pool!(self, pool => {
            sqlx::query(&sql)
                .bind(&t.id)
                .bind(&t.user_id)
                .bind(&t.kind)
                .bind(&t.name)
                .bind(&t.token_hash)
                .bind(t.created_ms)
                .bind(t.last_used_ms)
                .bind(t.expires_ms)
                .bind(t.revoked_ms)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// The live (not revoked, not expired) credential with this hash, and its user.
    pub async fn live_token(&self, token_hash: &str) -> Result<Option<(Token, User)>, StoreError> {
        let sql = format!(
            "SELECT {}, u.name AS user_name, u.role, u.created_ms AS user_created_ms FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = $1 AND t.revoked_ms IS NULL AND (t.expires_ms IS NULL OR t.expires_ms > $2)",
            TOKEN_COLUMNS
                .split(", ")
                .map(|c| format!("t.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        on_pool!(self, pool => {
            let r = sqlx::query(&sql).bind(token_hash).bind(now_ms()).fetch_optional(pool).await?;
            let Some(r) = r else { return Ok(None) };
            let t = token(&r)?;
            let u = User {
                id: t.user_id.clone(),
                name: r.try_get("user_name")?,
                role: r.try_get("role")?,
                created_ms: r.try_get("user_created_ms")?,
            };
            Ok(Some((t, u)))
        })
    }

    /// Records that a credential was used now.
    pub async fn touch_token(&self, id: &str) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query("UPDATE tokens SET last_used_ms = $1 WHERE id = $2")
                .bind(now_ms())
                .bind(id)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// A user's credentials of one kind, newest first (revoked ones included).
    pub async fn tokens(&self, user_id: &str, kind: &str) -> Result<Vec<Token>, StoreError> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE user_id = $1 AND kind = $2 ORDER BY created_ms DESC, id");
        on_pool!(self, pool => {
            let rows = sqlx::query(&sql).bind(user_id).bind(kind).fetch_all(pool).await?;
            Ok(rows.iter().map(token).collect::<Result<_, _>>()?)
        })
    }

    /// Revokes a user's live credentials of one kind named `name` (every one when `name`
    /// is `None`); returns how many.
    pub async fn revoke_tokens(
        &self,
        user_id: &str,
        kind: &str,
        name: Option<&str>,
    ) -> Result<u64, StoreError> {
        let sql = "UPDATE tokens SET revoked_ms = $1 WHERE user_id = $2 AND kind = $3 AND revoked_ms IS NULL AND ($4 IS NULL OR name = $4)";
        Ok(on_pool!(self, pool => sqlx::query(sql)
            .bind(now_ms())
            .bind(user_id)
            .bind(kind)
            .bind(name)
            .execute(pool)
            .await?
            .rows_affected()))
    }

    /// Revokes the credential with this hash (a logout); returns whether one was live.
    pub async fn revoke_token_hash(&self, token_hash: &str) -> Result<bool, StoreError> {
        let done = on_pool!(self, pool => sqlx::query("UPDATE tokens SET revoked_ms = $1 WHERE token_hash = $2 AND revoked_ms IS NULL")
            .bind(now_ms())
            .bind(token_hash)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(done == 1)
    }

    /// Raw text of every row of `table` (tests: secrets must not be recoverable).
    #[doc(hidden)]
    pub async fn dump_table(&self, table: &str) -> Result<String, StoreError> {
        let columns = match table {
            "users" => "id, name, role, COALESCE(password_hash, '') AS secret",
            "tokens" => "id, user_id, kind, name, token_hash AS secret",
            _ => return Ok(String::new()),
        };
        let sql = format!("SELECT {columns} FROM {table}");
        let mut out = String::new();
        on_pool!(self, pool => {
            for r in sqlx::query(&sql).fetch_all(pool).await? {
                for c in ["id", "name", "secret"] {
                    let v: String = r.try_get(c)?;
                    out.push_str(&v);
                    out.push('\n');
                }
            }
        });
        Ok(out)
    }
}
