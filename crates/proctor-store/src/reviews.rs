//! The reviews repository: every experiment-code review done through the server (and
//! local CLI reviews), with who asked and the full report. Reads take a [`ReviewScope`],
//! so that a participant's query can only ever return that participant's rows: the
//! ownership check is part of the SQL, not something a handler may forget.

use serde::Serialize;
use sqlx::Row;

use crate::{now_ms, Pool, Store, StoreError};

/// A stored review. Lists leave `report` out (`None`); one review has it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredReview {
    /// Id (unguessable: 122 random bits).
    pub id: String,
    /// The account that asked (`None`: a local CLI review).
    pub account_id: Option<String>,
    /// That account's name.
    pub account_name: Option<String>,
    /// The experiment's id from the case.
    pub experiment: String,
    /// The verdict: no blocker.
    pub ready: bool,
    /// How many blockers.
    pub blockers: i64,
    /// How many warnings.
    pub warnings: i64,
    /// How long the review took.
    pub wall_ms: i64,
    /// Unix ms it was stored.
    pub created_ms: i64,
    /// The full report (JSON), when one review is read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<serde_json::Value>,
}

/// What a new review row holds.
#[derive(Debug, Clone)]
pub struct NewReview {
    /// Id.
    pub id: String,
    /// The account that asked.
    pub account_id: Option<String>,
    /// The experiment's id.
    pub experiment: String,
    /// The verdict.
    pub ready: bool,
    /// Blockers.
    pub blockers: i64,
    /// Warnings.
    pub warnings: i64,
    /// How long the review took.
    pub wall_ms: i64,
    /// The full report.
    pub report: serde_json::Value,
}

/// Whose reviews a read may return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewScope<'a> {
    /// Only this account's (a user id).
    Account(&'a str),
    /// Everyone's (admins, and an operator reading the database).
    All,
}

impl ReviewScope<'_> {
    fn account(self) -> Option<String> {
        match self {
            ReviewScope::Account(id) => Some(id.to_string()),
            ReviewScope::All => None,
        }
    }
}

const COLUMNS: &str = "r.id, r.account_id, u.name AS account_name, r.experiment, r.ready, r.blockers, r.warnings, r.wall_ms, r.created_ms";

/// `$N` is the scope's account id: every row when it is NULL, that account's otherwise.
fn in_scope(n: usize) -> String {
    format!("(${n} IS NULL OR r.account_id = ${n})")
}

fn summary<R: Row>(r: &R) -> Result<StoredReview, sqlx::Error>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(StoredReview {
        id: r.try_get("id")?,
        account_id: r.try_get("account_id")?,
        account_name: r.try_get("account_name")?,
        experiment: r.try_get("experiment")?,
        ready: r.try_get("ready")?,
        blockers: r.try_get("blockers")?,
        warnings: r.try_get("warnings")?,
        wall_ms: r.try_get("wall_ms")?,
        created_ms: r.try_get("created_ms")?,
        report: None,
    })
}

impl Store {
    /// Stores a finished review.
    pub async fn insert_review(&self, r: &NewReview) -> Result<(), StoreError> {
        let sql = "INSERT INTO reviews (id, account_id, experiment, ready, blockers, warnings, wall_ms, created_ms, report) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
        let report = r.report.to_string();
        on_pool!(self, pool => {
            sqlx::query(sql)
                .bind(&r.id)
                .bind(&r.account_id)
                .bind(&r.experiment)
                .bind(r.ready)
                .bind(r.blockers)
                .bind(r.warnings)
                .bind(r.wall_ms)
                .bind(now_ms())
                .bind(&report)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// The review `id` with its report, if it exists and is in `scope` (a review out of
    /// scope reads exactly like a missing one).
    pub async fn review(
        &self,
        id: &str,
        scope: ReviewScope<'_>,
    ) -> Result<Option<StoredReview>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS}, r.report FROM reviews r LEFT JOIN users u ON u.id = r.account_id WHERE r.id = $1 AND {}",
            in_scope(2)
        );
        on_pool!(self, pool => {
            let r = sqlx::query(&sql)
                .bind(id)
                .bind(scope.account())
                .fetch_optional(pool)
                .await?;
            let Some(r) = r else { return Ok(None) };
            let mut review = summary(&r)?;
            let report: String = r.try_get("report")?;
            review.report = serde_json::from_str(&report).ok();
            Ok(Some(review))
        })
    }

    /// The latest reviews in `scope`, newest first, without their reports.
    pub async fn reviews(
        &self,
        scope: ReviewScope<'_>,
        limit: i64,
    ) -> Result<Vec<StoredReview>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM reviews r LEFT JOIN users u ON u.id = r.account_id WHERE {} ORDER BY r.created_ms DESC, r.id LIMIT $2",
            in_scope(1)
        );
        on_pool!(self, pool => {
            let rows = sqlx::query(&sql)
                .bind(scope.account())
                .bind(limit)
                .fetch_all(pool)
                .await?;
            Ok(rows.iter().map(summary).collect::<Result<_, _>>()?)
        })
    }
}
