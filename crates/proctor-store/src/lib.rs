/*!
Persistence of proctor: an SQLite database (a file under `$PROCTOR_HOME` by default)
opened through sqlx with embedded migrations, and the repositories of the front doors.
Today it holds challenge submissions: every upload is persisted (as `queued`, or as
`rejected` with its reason) before anything runs, workers claim queued rows atomically,
and [`Store::recover`] resumes or fails the rows of a process that died mid-evaluation.

```no_run
# async fn demo() -> Result<(), proctor_store::StoreError> {
use proctor_store::{NewSubmission, Store};
let store = Store::open(std::path::Path::new("/tmp/proctor.db")).await?;
store.insert(&NewSubmission {
    id: "s1".into(), challenge: "imagenet-pareto-500k".into(), official: false,
    participant: "me".into(), name: None, description: None, file_name: "solution.py".into(),
    status: "queued".into(), error: None, project_dir: Some("/tmp/p".into()),
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
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
};
use sqlx::Row;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened or migrated.
    #[error("cannot open the database {url:?}: {source}")]
    Open {
        /// Where.
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
    /// Who submitted.
    pub participant: String,
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
    /// Who submitted.
    pub participant: String,
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

/// The database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
}

const COLUMNS: &str = "id, challenge, official, participant, name, description, file_name, status, score, accuracy, params, params_trainable, error, logs, result, project_dir, attempts, created_ms, started_ms, finished_ms";

fn row(r: &SqliteRow) -> Result<Submission, sqlx::Error> {
    let result: Option<String> = r.try_get("result")?;
    Ok(Submission {
        id: r.try_get("id")?,
        challenge: r.try_get("challenge")?,
        official: r.try_get::<i64, _>("official")? != 0,
        participant: r.try_get("participant")?,
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

    /// Opens a database by URL (`sqlite://PATH` or `sqlite::memory:`).
    pub async fn open_url(url: &str) -> Result<Store, StoreError> {
        let open = |source| StoreError::Open {
            url: url.to_string(),
            source,
        };
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
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Store { pool })
    }

    /// Persists a new submission.
    pub async fn insert(&self, s: &NewSubmission) -> Result<(), StoreError> {
        let finished = (s.status != "queued").then(now_ms);
        sqlx::query(
            "INSERT INTO submissions (id, challenge, official, participant, name, description, file_name, status, error, project_dir, created_ms, finished_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&s.id)
        .bind(&s.challenge)
        .bind(s.official as i64)
        .bind(&s.participant)
        .bind(&s.name)
        .bind(&s.description)
        .bind(&s.file_name)
        .bind(&s.status)
        .bind(&s.error)
        .bind(&s.project_dir)
        .bind(now_ms())
        .bind(finished)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// One submission.
    pub async fn get(&self, id: &str) -> Result<Option<Submission>, StoreError> {
        let r = sqlx::query(&format!("SELECT {COLUMNS} FROM submissions WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(r.as_ref().map(row).transpose()?)
    }

    /// The latest submissions (of one challenge, or all), newest first.
    pub async fn list(
        &self,
        challenge: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Submission>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM submissions WHERE (?1 IS NULL OR challenge = ?1) ORDER BY created_ms DESC, id LIMIT ?2"
        ))
        .bind(challenge)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(row).collect::<Result<_, _>>()?)
    }

    /// Scored and over-budget submissions of a challenge on public or official data,
    /// best score first (ties: fewer parameters, then earlier).
    pub async fn leaderboard(
        &self,
        challenge: &str,
        official: bool,
        limit: i64,
    ) -> Result<Vec<Submission>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM submissions WHERE challenge = ? AND official = ? AND status IN ('scored', 'over_budget') ORDER BY score DESC, params ASC, created_ms ASC LIMIT ?"
        ))
        .bind(challenge)
        .bind(official as i64)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(row).collect::<Result<_, _>>()?)
    }

    async fn claim_where(
        &self,
        filter: &str,
        id: Option<&str>,
    ) -> Result<Option<Submission>, StoreError> {
        let r = sqlx::query(&format!(
            "UPDATE submissions SET status = 'running', attempts = attempts + 1, owner_pid = ?, started_ms = ? WHERE id = (SELECT id FROM submissions WHERE status = 'queued' {filter} ORDER BY created_ms, id LIMIT 1) AND status = 'queued' RETURNING {COLUMNS}"
        ))
        .bind(std::process::id() as i64)
        .bind(now_ms())
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(r.as_ref().map(row).transpose()?)
    }

    /// Claims the oldest queued submission for this process (atomically: two workers
    /// never claim the same one).
    pub async fn claim_next(&self) -> Result<Option<Submission>, StoreError> {
        self.claim_where("AND (? IS NULL)", None).await
    }

    /// Claims one queued submission by id.
    pub async fn claim(&self, id: &str) -> Result<Option<Submission>, StoreError> {
        self.claim_where("AND id = ?", Some(id)).await
    }

    /// Records the end of an evaluation.
    pub async fn finish(&self, id: &str, f: &Finished) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE submissions SET status = ?, score = ?, accuracy = ?, params = ?, params_trainable = ?, error = ?, logs = ?, result = ?, finished_ms = ?, owner_pid = NULL WHERE id = ?",
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
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Recovers submissions left `running` by processes that are gone (a crash, a
    /// `kill -9`): queued again while they have had fewer than `max_attempts`
    /// evaluations, failed with a clear error otherwise. Rows of live processes are
    /// left alone.
    pub async fn recover(&self, max_attempts: i64) -> Result<Recovered, StoreError> {
        let rows =
            sqlx::query("SELECT id, attempts, owner_pid FROM submissions WHERE status = 'running'")
                .fetch_all(&self.pool)
                .await?;
        let mut out = Recovered::default();
        for r in rows {
            let id: String = r.try_get("id")?;
            let attempts: i64 = r.try_get("attempts")?;
            let owner: Option<i64> = r.try_get("owner_pid")?;
            if owner.is_some_and(|p| p != std::process::id() as i64 && pid_alive(p)) {
                continue;
            }
            if attempts < max_attempts {
                sqlx::query("UPDATE submissions SET status = 'queued', owner_pid = NULL WHERE id = ? AND status = 'running'")
                    .bind(&id)
                    .execute(&self.pool)
                    .await?;
                out.requeued.push(id);
            } else {
                sqlx::query("UPDATE submissions SET status = 'error', error = ?, finished_ms = ?, owner_pid = NULL WHERE id = ? AND status = 'running'")
                    .bind(format!("the evaluation was interrupted {attempts} times (the server stopped while it ran); it is not retried again"))
                    .bind(now_ms())
                    .bind(&id)
                    .execute(&self.pool)
                    .await?;
                out.failed.push(id);
            }
        }
        Ok(out)
    }

    /// Marks a row as belonging to a dead process (tests of crash recovery).
    #[doc(hidden)]
    pub async fn set_owner(&self, id: &str, pid: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE submissions SET owner_pid = ? WHERE id = ?")
            .bind(pid)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(id: &str, status: &str) -> NewSubmission {
        NewSubmission {
            id: id.into(),
            challenge: "c".into(),
            official: false,
            participant: "p".into(),
            name: None,
            description: None,
            file_name: "solution.py".into(),
            status: status.into(),
            error: (status == "rejected").then(|| "bad zip".to_string()),
            project_dir: None,
        }
    }

    #[tokio::test]
    async fn queue_claims_each_submission_once_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db/proctor.db"))
            .await
            .unwrap();
        store.insert(&new("a", "queued")).await.unwrap();
        store.insert(&new("r", "rejected")).await.unwrap();
        store.insert(&new("b", "queued")).await.unwrap();
        let first = store.claim_next().await.unwrap().unwrap();
        assert_eq!(first.status, "running");
        assert_eq!(first.attempts, 1);
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
                    params: Some(10),
                    ..Finished::default()
                },
            )
            .await
            .unwrap();
        let a = store.get("a").await.unwrap().unwrap();
        assert_eq!(a.status, "scored");
        assert!(a.finished_ms.is_some());
        assert_eq!(store.list(Some("c"), 10).await.unwrap().len(), 3);
        assert_eq!(
            store.get("r").await.unwrap().unwrap().error.as_deref(),
            Some("bad zip")
        );
        assert_eq!(store.leaderboard("c", false, 10).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn recovery_requeues_then_fails_interrupted_submissions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proctor.db");
        let store = Store::open(&path).await.unwrap();
        store.insert(&new("x", "queued")).await.unwrap();
        store.claim("x").await.unwrap().unwrap();
        // A live owner (this very process counts as a restart) vs a dead one.
        store.set_owner("x", 1).await.unwrap(); // pid 1 is alive: left alone
        assert_eq!(store.recover(2).await.unwrap(), Recovered::default());
        store.set_owner("x", i32::MAX as i64).await.unwrap();
        drop(store);
        let store = Store::open(&path).await.unwrap();
        let r = store.recover(2).await.unwrap();
        assert_eq!(r.requeued, vec!["x".to_string()]);
        assert_eq!(store.get("x").await.unwrap().unwrap().status, "queued");
        store.claim("x").await.unwrap().unwrap();
        store.set_owner("x", i32::MAX as i64).await.unwrap();
        let r = store.recover(2).await.unwrap();
        assert_eq!(r.failed, vec!["x".to_string()]);
        let x = store.get("x").await.unwrap().unwrap();
        assert_eq!(x.status, "error");
        assert!(x.error.unwrap().contains("interrupted 2 times"));
    }
}
