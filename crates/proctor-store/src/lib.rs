/*!
Persistence of proctor: an SQLite database by default (a file under `$PROCTOR_HOME`), or a
Postgres server given by URL, opened through sqlx with embedded migrations (one set per
backend: `migrations/sqlite`, `migrations/postgres`), and the repositories of the front
doors. Both backends answer the same API with the same semantics. It holds accounts,
experiment-code reviews (each with its owner and full report) and challenge
submissions: every upload is persisted (as `queued`, or as `rejected` with its
reason) before anything runs, workers claim queued rows atomically (two workers never
claim the same row; on Postgres, concurrent claimers skip each other's locked rows), and
[`Store::recover`] resumes or fails the rows of a process that died mid-evaluation.

```no_run
# async fn demo() -> Result<(), proctor_store::StoreError> {
use proctor_store::{NewSubmission, Store};
let store = Store::open(std::path::Path::new("/tmp/proctor.db")).await?;
// or: Store::open_url("postgres://proctor:secret@127.0.0.1/proctor").await?
store.insert(&NewSubmission {
    id: "s1".into(), challenge: "imagenet-pareto-500k".into(), official: false,
    participant: "me".into(), account_id: None, name: None, description: None,
    file_name: "solution.py".into(), status: "queued".into(), error: None,
    project_dir: Some("/tmp/p".into()),
}).await?;
let claimed = store.claim("s1").await?;
assert!(claimed.is_some());
# Ok(()) }
```
*/
#![deny(missing_docs)]

use std::path::Path;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::{ColumnIndex, Decode, Row, Type};

#[doc(hidden)]
pub mod testing;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened or migrated.
    #[error("cannot open the database {url:?}: {source}")]
    Open {
        /// Where (a Postgres password is masked).
        url: String,
        /// Why.
        source: sqlx::Error,
    },
    /// A query failed.
    #[error("database error: {0}")]
    Query(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// A submission as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Submission {
    /// Id (a UUID).
    pub id: String,
    /// Challenge id.
    pub challenge: String,
    /// Evaluated on official (secret) data rather than public data.
    pub official: bool,
    /// Who submitted: the account's name (free text in rows older than accounts).
    pub participant: String,
    /// The submitting account's user id (`None`: a private local run).
    pub account_id: Option<String>,
    /// Hidden by an admin: gone from leaderboards and the API.
    pub hidden: bool,
    /// Disqualified by an admin: shown, never ranked.
    pub disqualified: bool,
    /// Solution name from the manifest.
    pub name: Option<String>,
    /// Solution description from the manifest.
    pub description: Option<String>,
    /// Uploaded file name.
    pub file_name: String,
    /// `queued`, `running`, `scored`, `over_budget`, `rejected`, `error`, `timeout`, `oom`.
    pub status: String,
    /// Rank metric.
    pub score: Option<f64>,
    /// Test accuracy.
    pub accuracy: Option<f64>,
    /// Counted parameters.
    pub params: Option<i64>,
    /// Trainable parameters (the original rule).
    pub params_trainable: Option<i64>,
    /// Reason of a failure, for the submitter.
    pub error: Option<String>,
    /// Output of the runs.
    pub logs: String,
    /// The full evaluation result (JSON).
    pub result: Option<serde_json::Value>,
    /// The validated project on disk.
    pub project_dir: Option<String>,
    /// Evaluations started (a crash mid-evaluation leaves one behind).
    pub attempts: i64,
    /// Unix ms of the upload.
    pub created_ms: i64,
    /// Unix ms the last evaluation started.
    pub started_ms: Option<i64>,
    /// Unix ms it finished.
    pub finished_ms: Option<i64>,
}

/// What a new row holds.
#[derive(Debug, Clone)]
pub struct NewSubmission {
    /// Id.
    pub id: String,
    /// Challenge id.
    pub challenge: String,
    /// Official data.
    pub official: bool,
    /// Who submitted (the account's name).
    pub participant: String,
    /// The submitting account's user id (`None`: a private local run).
    pub account_id: Option<String>,
    /// Solution name.
    pub name: Option<String>,
    /// Solution description.
    pub description: Option<String>,
    /// Uploaded file name.
    pub file_name: String,
    /// `queued` or `rejected`.
    pub status: String,
    /// Rejection reason.
    pub error: Option<String>,
    /// The validated project on disk.
    pub project_dir: Option<String>,
}

/// The end of an evaluation.
#[derive(Debug, Clone, Default)]
pub struct Finished {
    /// Final status.
    pub status: String,
    /// Rank metric.
    pub score: Option<f64>,
    /// Accuracy.
    pub accuracy: Option<f64>,
    /// Counted parameters.
    pub params: Option<i64>,
    /// Trainable parameters.
    pub params_trainable: Option<i64>,
    /// Reason of a failure.
    pub error: Option<String>,
    /// Output of the runs.
    pub logs: String,
    /// Full result.
    pub result: Option<serde_json::Value>,
}

/// What [`Store::recover`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Recovered {
    /// Interrupted submissions queued again.
    pub requeued: Vec<String>,
    /// Interrupted submissions failed (interrupted too often).
    pub failed: Vec<String>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn pid_alive(pid: i64) -> bool {
    pid > 0 && Path::new(&format!("/proc/{pid}")).exists()
}

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// An SQLite file (the default).
    Sqlite,
    /// A Postgres server.
    Postgres,
}

impl Backend {
    /// The backend a URL names: `sqlite:…` or `postgres://…` / `postgresql://…`.
    pub fn of_url(url: &str) -> Option<Backend> {
        if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }
}

/// `url` with the password of its authority (if any) replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

#[derive(Debug, Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the concrete pool: every query is written once, in
/// the SQL both backends accept (`$N` placeholders, `RETURNING`), and executed natively.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.pool {
            Pool::Sqlite($pool) => $body,
            Pool::Postgres($pool) => $body,
        }
    };
}

mod accounts;
mod moderation;
mod reviews;
pub use accounts::{Token, User};
pub use moderation::{Moderation, Recent};
pub use reviews::{NewReview, ReviewScope, StoredReview};

/// The database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: Pool,
}

const COLUMNS: &str = "id, challenge, official, participant, account_id, hidden, disqualified, name, description, file_name, status, score, accuracy, params, params_trainable, error, logs, result, project_dir, attempts, created_ms, started_ms, finished_ms";

/// Rows anyone may see: submitted by an account (not a private local run), not hidden.
const PUBLIC: &str = "account_id IS NOT NULL AND NOT hidden";

/// Which rows [`Store::list`] returns (default: every row).
#[derive(Debug, Clone, Copy, Default)]
pub struct Filter<'a> {
    /// One challenge's.
    pub challenge: Option<&'a str>,
    /// One account's (a user id).
    pub account_id: Option<&'a str>,
    /// Only rows anyone may see: an account's, not hidden.
    pub public_only: bool,
}

fn row<R: Row>(r: &R) -> Result<Submission, sqlx::Error>
where
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> bool: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> f64: Decode<'r, R::Database> + Type<R::Database>,
{
    let result: Option<String> = r.try_get("result")?;
    Ok(Submission {
        id: r.try_get("id")?,
        challenge: r.try_get("challenge")?,
        // SQLite stores it as INTEGER 0/1, Postgres as BOOLEAN; both decode as bool.
        official: r.try_get("official")?,
        participant: r.try_get("participant")?,
        account_id: r.try_get("account_id")?,
        hidden: r.try_get("hidden")?,
        disqualified: r.try_get("disqualified")?,
        name: r.try_get("name")?,
        description: r.try_get("description")?,
        file_name: r.try_get("file_name")?,
        status: r.try_get("status")?,
        score: r.try_get("score")?,
        accuracy: r.try_get("accuracy")?,
        params: r.try_get("params")?,
        params_trainable: r.try_get("params_trainable")?,
        error: r.try_get("error")?,
        logs: r.try_get("logs")?,
        result: result.and_then(|s| serde_json::from_str(&s).ok()),
        project_dir: r.try_get("project_dir")?,
        attempts: r.try_get("attempts")?,
        created_ms: r.try_get("created_ms")?,
        started_ms: r.try_get("started_ms")?,
        finished_ms: r.try_get("finished_ms")?,
    })
}

impl Store {
    /// Opens (creating it and its directory if needed) the SQLite file at `path` and
    /// runs the migrations.
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(parent) = path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        Store::open_url(&format!("sqlite://{}", path.display())).await
    }

    /// Opens a database by URL and runs its backend's migrations: `sqlite://PATH`
    /// (created if missing), `sqlite::memory:`, or `postgres://USER:PASSWORD@HOST/DB`
    /// (the database must exist; the schema is created in it).
    pub async fn open_url(url: &str) -> Result<Store, StoreError> {
        let open = |source| StoreError::Open {
            url: redact_url(url),
            source,
        };
        let pool = match Backend::of_url(url) {
            Some(Backend::Sqlite) => {
                let options = SqliteConnectOptions::from_str(url)
                    .map_err(open)?
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .busy_timeout(std::time::Duration::from_secs(10));
                let max = if url.contains(":memory:") { 1 } else { 4 };
                let pool = SqlitePoolOptions::new()
                    .max_connections(max)
                    .connect_with(options)
                    .await
                    .map_err(open)?;
                // Two processes opening a fresh file at once (`proctor serve` and
                // `proctor gym serve`) race on the migrations table: the loser retries,
                // finding the winner's migrations applied.
                let mut attempt = 0;
                while let Err(e) = sqlx::migrate!("./migrations/sqlite").run(&pool).await {
                    attempt += 1;
                    if attempt == 5 {
                        return Err(e.into());
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100 * attempt)).await;
                }
                Pool::Sqlite(pool)
            }
            Some(Backend::Postgres) => {
                let options = PgConnectOptions::from_str(url).map_err(open)?;
                let pool = PgPoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(std::time::Duration::from_secs(10))
                    .connect_with(options)
                    .await
                    .map_err(open)?;
                // Concurrent openers serialize on sqlx's advisory lock.
                sqlx::migrate!("./migrations/postgres").run(&pool).await?;
                Pool::Postgres(pool)
            }
            None => return Err(open(sqlx::Error::Configuration(
                "unsupported database URL: use sqlite://PATH or postgres://USER:PASSWORD@HOST/DB"
                    .into(),
            ))),
        };
        Ok(Store { pool })
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// Persists a new submission.
    pub async fn insert(&self, s: &NewSubmission) -> Result<(), StoreError> {
        let finished = (s.status != "queued").then(now_ms);
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO submissions (id, challenge, official, participant, name, description, file_name, status, error, project_dir, created_ms, finished_ms, account_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            )
            .bind(&s.id)
            .bind(&s.challenge)
            .bind(s.official)
            .bind(&s.participant)
            .bind(&s.name)
            .bind(&s.description)
            .bind(&s.file_name)
            .bind(&s.status)
            .bind(&s.error)
            .bind(&s.project_dir)
            .bind(now_ms())
            .bind(finished)
            .bind(&s.account_id)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// One submission.
    pub async fn get(&self, id: &str) -> Result<Option<Submission>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM submissions WHERE id = $1");
        on_pool!(self, pool => {
            let r = sqlx::query(&sql).bind(id).fetch_optional(pool).await?;
            Ok(r.as_ref().map(row).transpose()?)
        })
    }

    /// The latest submissions that pass `filter`, newest first.
    pub async fn list(
        &self,
        filter: &Filter<'_>,
        limit: i64,
    ) -> Result<Vec<Submission>, StoreError> {
        let mut conditions = Vec::new();
        let mut binds = Vec::new();
        for (column, value) in [
            ("challenge", filter.challenge),
            ("account_id", filter.account_id),
        ] {
            if let Some(v) = value {
                binds.push(v);
                conditions.push(format!("{column} = ${}", binds.len()));
            }
        }
        if filter.public_only {
            conditions.push(PUBLIC.to_string());
        }
        let filter_sql = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM submissions {filter_sql} ORDER BY created_ms DESC, id LIMIT ${}",
            binds.len() + 1
        );
        on_pool!(self, pool => {
            let mut q = sqlx::query(&sql);
            for v in &binds {
                q = q.bind(*v);
            }
            let rows = q.bind(limit).fetch_all(pool).await?;
            Ok(rows.iter().map(row).collect::<Result<_, _>>()?)
        })
    }

    /// Scored and over-budget submissions of a challenge on public or official data,
    /// best score first (ties: fewer parameters, then earlier); only accounts' rows that
    /// are neither hidden nor disqualified.
    pub async fn leaderboard(
        &self,
        challenge: &str,
        official: bool,
        limit: i64,
    ) -> Result<Vec<Submission>, StoreError> {
        // NULLS LAST spelled portably: Postgres sorts NULL first in DESC order.
        let sql = format!(
            "SELECT {COLUMNS} FROM submissions WHERE challenge = $1 AND official = $2 AND status IN ('scored', 'over_budget') AND {PUBLIC} AND NOT disqualified ORDER BY score IS NULL, score DESC, params ASC, created_ms ASC LIMIT $3"
        );
        on_pool!(self, pool => {
            let rows = sqlx::query(&sql)
                .bind(challenge)
                .bind(official)
                .bind(limit)
                .fetch_all(pool)
                .await?;
            Ok(rows.iter().map(row).collect::<Result<_, _>>()?)
        })
    }

    async fn claim_where(&self, id: Option<&str>) -> Result<Option<Submission>, StoreError> {
        let filter = if id.is_some() { "AND id = $3" } else { "" };
        // SQLite has one writer at a time, so the UPDATE is atomic as written. Postgres
        // runs claims concurrently: the picked row is locked, and a concurrent claimer
        // skips it for the next queued one instead of blocking and coming back empty.
        let lock = match self.backend() {
            Backend::Sqlite => "",
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
        };
        let sql = format!(
            "UPDATE submissions SET status = 'running', attempts = attempts + 1, owner_pid = $1, started_ms = $2 WHERE id = (SELECT id FROM submissions WHERE status = 'queued' {filter} ORDER BY created_ms, id LIMIT 1 {lock}) AND status = 'queued' RETURNING {COLUMNS}"
        );
        on_pool!(self, pool => {
            let mut q = sqlx::query(&sql)
                .bind(std::process::id() as i64)
                .bind(now_ms());
            if let Some(id) = id {
                q = q.bind(id);
            }
            let r = q.fetch_optional(pool).await?;
            Ok(r.as_ref().map(row).transpose()?)
        })
    }

    /// Claims the oldest queued submission for this process (atomically: two workers
    /// never claim the same one).
    pub async fn claim_next(&self) -> Result<Option<Submission>, StoreError> {
        self.claim_where(None).await
    }

    /// Claims one queued submission by id.
    pub async fn claim(&self, id: &str) -> Result<Option<Submission>, StoreError> {
        self.claim_where(Some(id)).await
    }

    /// Records the end of an evaluation.
    pub async fn finish(&self, id: &str, f: &Finished) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query(
                "UPDATE submissions SET status = $1, score = $2, accuracy = $3, params = $4, params_trainable = $5, error = $6, logs = $7, result = $8, finished_ms = $9, owner_pid = NULL WHERE id = $10",
            )
            .bind(&f.status)
            .bind(f.score)
            .bind(f.accuracy)
            .bind(f.params)
            .bind(f.params_trainable)
            .bind(&f.error)
            .bind(&f.logs)
            .bind(f.result.as_ref().map(|v| v.to_string()))
            .bind(now_ms())
            .bind(id)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Recovers submissions left `running` by processes that are gone (a crash, a
    /// `kill -9`): queued again while they have had fewer than `max_attempts`
    /// evaluations, failed with a clear error otherwise. Rows of live processes are
    /// left alone. (Owners are process ids of this host: with a Postgres server shared
    /// by several hosts, run the workers on one of them.)
    pub async fn recover(&self, max_attempts: i64) -> Result<Recovered, StoreError> {
        let mut running: Vec<(String, i64, Option<i64>)> = Vec::new();
        on_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT id, attempts, owner_pid FROM submissions WHERE status = 'running' ORDER BY created_ms, id",
            )
            .fetch_all(pool)
            .await?;
            for r in rows {
                running.push((r.try_get("id")?, r.try_get("attempts")?, r.try_get("owner_pid")?));
            }
        });
        let mut out = Recovered::default();
        for (id, attempts, owner) in running {
            if owner.is_some_and(|p| p != std::process::id() as i64 && pid_alive(p)) {
                continue;
            }
            // `AND status = 'running'` (and the same owner): a row that changed since the
            // SELECT (finished, or recovered by a concurrent opener) is left alone.
            let changed = if attempts < max_attempts {
                on_pool!(self, pool => {
                    sqlx::query("UPDATE submissions SET status = 'queued', owner_pid = NULL WHERE id = $1 AND status = 'running' AND attempts = $2")
                        .bind(&id)
                        .bind(attempts)
                        .execute(pool)
                        .await?
                        .rows_affected()
                })
            } else {
                on_pool!(self, pool => {
                    sqlx::query("UPDATE submissions SET status = 'error', error = $1, finished_ms = $2, owner_pid = NULL WHERE id = $3 AND status = 'running' AND attempts = $4")
                        .bind(format!("the evaluation was interrupted {attempts} times (the server stopped while it ran); it is not retried again"))
                        .bind(now_ms())
                        .bind(&id)
                        .bind(attempts)
                        .execute(pool)
                        .await?
                        .rows_affected()
                })
            };
            if changed == 0 {
                continue;
            }
            if attempts < max_attempts {
                out.requeued.push(id);
            } else {
                out.failed.push(id);
            }
        }
        Ok(out)
    }

    /// Marks a row as belonging to a dead process (tests of crash recovery).
    #[doc(hidden)]
    pub async fn set_owner(&self, id: &str, pid: i64) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query("UPDATE submissions SET owner_pid = $1 WHERE id = $2")
                .bind(pid)
                .bind(id)
                .execute(pool)
                .await?;
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestPostgres;

    fn new(id: &str, status: &str) -> NewSubmission {
        NewSubmission {
            id: id.into(),
            challenge: "c".into(),
            official: false,
            participant: "p".into(),
            account_id: Some("u".into()),
            name: None,
            description: None,
            file_name: "solution.py".into(),
            status: status.into(),
            error: (status == "rejected").then(|| "bad zip".to_string()),
            project_dir: None,
        }
    }

    fn of(challenge: &str) -> Filter<'_> {
        Filter {
            challenge: Some(challenge),
            ..Filter::default()
        }
    }

    /// A database of one backend; the same tests run on both.
    struct Db {
        url: String,
        _dir: Option<tempfile::TempDir>,
        _pg: Option<TestPostgres>,
    }

    impl Db {
        async fn sqlite() -> Db {
            let dir = tempfile::tempdir().unwrap();
            Db {
                url: format!("sqlite://{}", dir.path().join("proctor.db").display()),
                _dir: Some(dir),
                _pg: None,
            }
        }

        async fn postgres() -> Db {
            let pg = TestPostgres::new().await;
            Db {
                url: pg.url.clone(),
                _dir: None,
                _pg: Some(pg),
            }
        }

        async fn open(&self) -> Store {
            Store::open_url(&self.url).await.unwrap()
        }
    }

    /// One `#[tokio::test]` per backend for a test body `async fn(Db)`.
    macro_rules! on_both {
        ($body:ident) => {
            mod $body {
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn sqlite() {
                    super::$body(super::Db::sqlite().await).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn postgres() {
                    super::$body(super::Db::postgres().await).await
                }
            }
        };
    }

    on_both!(queue_claims_each_submission_once_in_order);
    async fn queue_claims_each_submission_once_in_order(db: Db) {
        let store = db.open().await;
        store.insert(&new("a", "queued")).await.unwrap();
        store.insert(&new("r", "rejected")).await.unwrap();
        store.insert(&new("b", "queued")).await.unwrap();
        let first = store.claim_next().await.unwrap().unwrap();
        assert_eq!(first.status, "running");
        assert_eq!(first.attempts, 1);
        assert!(first.started_ms.is_some());
        let second = store.claim_next().await.unwrap().unwrap();
        assert_ne!(first.id, second.id);
        assert!(store.claim_next().await.unwrap().is_none());
        assert!(store.claim("a").await.unwrap().is_none());
        store
            .finish(
                "a",
                &Finished {
                    status: "scored".into(),
                    score: Some(50.0),
                    accuracy: Some(0.875),
                    params: Some(10_000_000_000),
                    params_trainable: Some(7),
                    logs: "ok".into(),
                    result: Some(serde_json::json!({"k": [1, 2.5]})),
                    ..Finished::default()
                },
            )
            .await
            .unwrap();
        let a = store.get("a").await.unwrap().unwrap();
        assert_eq!(a.status, "scored");
        assert!(a.finished_ms.is_some());
        // Values round-trip exactly on both backends (f64, i64 beyond 32 bits, JSON).
        assert_eq!(a.score, Some(50.0));
        assert_eq!(a.accuracy, Some(0.875));
        assert_eq!(a.params, Some(10_000_000_000));
        assert_eq!(a.result, Some(serde_json::json!({"k": [1, 2.5]})));
        assert_eq!(store.list(&of("c"), 10).await.unwrap().len(), 3);
        assert_eq!(store.list(&Filter::default(), 2).await.unwrap().len(), 2);
        assert!(store.list(&of("other"), 10).await.unwrap().is_empty());
        assert_eq!(
            store.get("r").await.unwrap().unwrap().error.as_deref(),
            Some("bad zip")
        );
        assert!(store.get("nope").await.unwrap().is_none());
        assert_eq!(store.leaderboard("c", false, 10).await.unwrap().len(), 1);
        assert!(store.leaderboard("c", true, 10).await.unwrap().is_empty());
        // Official rows (a boolean on both backends) have their own leaderboard.
        store
            .insert(&NewSubmission {
                official: true,
                ..new("o", "queued")
            })
            .await
            .unwrap();
        assert!(store.get("o").await.unwrap().unwrap().official);
        store.claim("o").await.unwrap().unwrap();
        let over = Finished {
            status: "over_budget".into(),
            score: Some(0.0),
            ..Finished::default()
        };
        store.finish("o", &over).await.unwrap();
        let official = store.leaderboard("c", true, 10).await.unwrap();
        assert_eq!(official.len(), 1);
        assert_eq!(official[0].id, "o");
    }

    on_both!(only_visible_account_rows_rank_and_admins_moderate);
    async fn only_visible_account_rows_rank_and_admins_moderate(db: Db) {
        let store = db.open().await;
        let scored = Finished {
            status: "scored".into(),
            score: Some(10.0),
            ..Finished::default()
        };
        // A private local run (no account) and two accounts' rows.
        for (id, account) in [("local", None), ("a1", Some("ua")), ("b1", Some("ub"))] {
            store
                .insert(&NewSubmission {
                    account_id: account.map(str::to_string),
                    ..new(id, "queued")
                })
                .await
                .unwrap();
            store.claim(id).await.unwrap().unwrap();
            store.finish(id, &scored).await.unwrap();
        }
        store.insert(&new("r", "rejected")).await.unwrap();
        let ids = |rows: Vec<Submission>| rows.into_iter().map(|s| s.id).collect::<Vec<_>>();
        let board = || async { ids(store.leaderboard("c", false, 10).await.unwrap()) };
        let mut ranked = board().await;
        ranked.sort();
        assert_eq!(ranked, ["a1", "b1"], "the local run is private");
        let public = Filter {
            challenge: Some("c"),
            public_only: true,
            ..Filter::default()
        };
        assert_eq!(store.list(&public, 10).await.unwrap().len(), 3);

        assert!(store.moderate("a1", Moderation::Hide).await.unwrap());
        assert_eq!(board().await, ["b1"]);
        assert!(!ids(store.list(&public, 10).await.unwrap()).contains(&"a1".to_string()));
        let a1 = store.get("a1").await.unwrap().unwrap();
        assert!(a1.hidden && !a1.disqualified);
        assert!(store.moderate("b1", Moderation::Disqualify).await.unwrap());
        assert!(board().await.is_empty());
        assert!(ids(store.list(&public, 10).await.unwrap()).contains(&"b1".to_string()));
        assert!(store.moderate("a1", Moderation::Restore).await.unwrap());
        assert_eq!(board().await, ["a1"]);
        assert!(!store.moderate("nope", Moderation::Hide).await.unwrap());

        // An account's own rows, and its recent uploads for quotas.
        let mine = Filter {
            account_id: Some("ub"),
            ..Filter::default()
        };
        assert_eq!(ids(store.list(&mine, 10).await.unwrap()), ["b1"]);
        let recent = store.recent("u", 0).await.unwrap();
        assert_eq!(recent.len(), 1);
        assert!(recent[0].rejected && !recent[0].official);
        assert!(store
            .recent("u", now_ms() + 60_000)
            .await
            .unwrap()
            .is_empty());

        // Rescoring: a finished row is queued again with its result cleared, once.
        store
            .insert(&NewSubmission {
                project_dir: Some("/p".into()),
                ..new("e", "queued")
            })
            .await
            .unwrap();
        assert!(!store.requeue("e").await.unwrap(), "already queued");
        store.claim("e").await.unwrap().unwrap();
        store.finish("e", &scored).await.unwrap();
        assert!(store.requeue("e").await.unwrap());
        let e = store.get("e").await.unwrap().unwrap();
        assert_eq!(
            (e.status.as_str(), e.score, e.attempts),
            ("queued", None, 0)
        );
        assert!(
            !store.requeue("r").await.unwrap(),
            "a rejected upload has no files"
        );
    }

    on_both!(recovery_requeues_then_fails_interrupted_submissions);
    async fn recovery_requeues_then_fails_interrupted_submissions(db: Db) {
        let store = db.open().await;
        store.insert(&new("x", "queued")).await.unwrap();
        store.claim("x").await.unwrap().unwrap();
        // A live owner (this very process counts as a restart) vs a dead one.
        store.set_owner("x", 1).await.unwrap(); // pid 1 is alive: left alone
        assert_eq!(store.recover(2).await.unwrap(), Recovered::default());
        store.set_owner("x", i32::MAX as i64).await.unwrap();
        drop(store);
        // A restart: the database is opened again (migrations already applied).
        let store = db.open().await;
        let r = store.recover(2).await.unwrap();
        assert_eq!(r.requeued, vec!["x".to_string()]);
        assert_eq!(store.get("x").await.unwrap().unwrap().status, "queued");
        store.claim("x").await.unwrap().unwrap();
        store.set_owner("x", i32::MAX as i64).await.unwrap();
        let r = store.recover(2).await.unwrap();
        assert_eq!(r.failed, vec!["x".to_string()]);
        let x = store.get("x").await.unwrap().unwrap();
        assert_eq!(x.status, "error");
        assert_eq!(x.attempts, 2);
        assert!(x.finished_ms.is_some());
        assert!(x.error.unwrap().contains("interrupted 2 times"));
        assert_eq!(store.recover(2).await.unwrap(), Recovered::default());
    }

    on_both!(concurrent_claims_never_share_a_row_and_drain_the_queue);
    async fn concurrent_claims_never_share_a_row_and_drain_the_queue(db: Db) {
        let store = db.open().await;
        let n = 40;
        for i in 0..n {
            store
                .insert(&new(&format!("s{i:02}"), "queued"))
                .await
                .unwrap();
        }
        // Eight workers, each with its own pool (as separate processes would have).
        let mut workers = Vec::new();
        for _ in 0..8 {
            let store = db.open().await;
            workers.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                while let Some(s) = store.claim_next().await.unwrap() {
                    assert_eq!(s.status, "running");
                    mine.push(s.id);
                }
                mine
            }));
        }
        let mut all = Vec::new();
        for w in workers {
            all.extend(w.await.unwrap());
        }
        let claimed = all.len();
        all.sort();
        all.dedup();
        assert_eq!(claimed, n, "every row claimed exactly once");
        assert_eq!(all.len(), n);
        for s in store.list(&of("c"), 100).await.unwrap() {
            assert_eq!((s.status.as_str(), s.attempts), ("running", 1), "{}", s.id);
        }
    }

    on_both!(reviews_are_read_only_in_their_owners_scope);
    async fn reviews_are_read_only_in_their_owners_scope(db: Db) {
        let store = db.open().await;
        let alice = User {
            id: "ua".into(),
            name: "alice".into(),
            role: "participant".into(),
            created_ms: 1,
        };
        assert!(store.insert_user(&alice, None).await.unwrap());
        let report =
            serde_json::json!({"findings": [{"id": "placeholder", "line": 2}], "runs": []});
        for (id, account) in [("ra", Some("ua")), ("rb", Some("ub")), ("local", None)] {
            store
                .insert_review(&NewReview {
                    id: id.into(),
                    account_id: account.map(str::to_string),
                    experiment: "exp-1".into(),
                    ready: id == "rb",
                    blockers: 1,
                    warnings: 2,
                    wall_ms: 1234,
                    report: report.clone(),
                })
                .await
                .unwrap();
        }
        let ra = store
            .review("ra", ReviewScope::Account("ua"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ra.report.as_ref(), Some(&report), "the report round-trips");
        assert_eq!(ra.account_name.as_deref(), Some("alice"));
        assert_eq!(
            (ra.ready, ra.blockers, ra.warnings, ra.wall_ms),
            (false, 1, 2, 1234)
        );
        assert!(
            store
                .review("rb", ReviewScope::All)
                .await
                .unwrap()
                .unwrap()
                .ready
        );
        // Another account's review and a local one read like missing ones.
        for id in ["rb", "local", "nope"] {
            assert!(store
                .review(id, ReviewScope::Account("ua"))
                .await
                .unwrap()
                .is_none());
        }
        let ids = |rows: Vec<StoredReview>| rows.into_iter().map(|r| r.id).collect::<Vec<_>>();
        let mine = store.reviews(ReviewScope::Account("ua"), 10).await.unwrap();
        assert!(mine[0].report.is_none(), "lists leave the report out");
        assert_eq!(ids(mine), ["ra"]);
        let mut all = ids(store.reviews(ReviewScope::All, 10).await.unwrap());
        all.sort();
        assert_eq!(all, ["local", "ra", "rb"]);
        assert_eq!(store.reviews(ReviewScope::All, 1).await.unwrap().len(), 1);
        assert!(store
            .reviews(ReviewScope::Account("nobody"), 10)
            .await
            .unwrap()
            .is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_openers_of_a_fresh_sqlite_file_all_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proctor.db");
        let openers: Vec<_> = (0..6)
            .map(|_| {
                let path = path.clone();
                tokio::spawn(async move { Store::open(&path).await.map(|_| ()) })
            })
            .collect();
        for o in openers {
            o.await.unwrap().unwrap();
        }
    }

    #[tokio::test]
    async fn open_creates_the_sqlite_file_and_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db/proctor.db");
        let store = Store::open(&path).await.unwrap();
        assert_eq!(store.backend(), Backend::Sqlite);
        assert!(path.exists());
    }

    #[tokio::test]
    async fn postgres_urls_are_recognized_and_passwords_masked() {
        assert_eq!(
            Backend::of_url("postgresql://u:p@h/db"),
            Some(Backend::Postgres)
        );
        assert_eq!(Backend::of_url("sqlite::memory:"), Some(Backend::Sqlite));
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db?x=1"),
            "postgres://u:***@h:5432/db?x=1"
        );
        let err = Store::open_url("mysql://u:secret@h/db").await.unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("unsupported database URL") && !msg.contains("secret"),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn postgres_store_reports_its_backend() {
        let pg = TestPostgres::new().await;
        let store = Store::open_url(&pg.url).await.unwrap();
        assert_eq!(store.backend(), Backend::Postgres);
    }
}
