//! What an account has submitted lately (for quotas), and an admin's moderation of
//! submissions: hide, disqualify, restore, evaluate again.

use serde::Serialize;
use sqlx::Row;

use crate::{Pool, Store, StoreError};

/// A recent submission of an account, as quotas count them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recent {
    /// Challenge id.
    pub challenge: String,
    /// On official data.
    pub official: bool,
    /// Rejected at intake (never evaluated).
    pub rejected: bool,
    /// Unix ms of the upload.
    pub created_ms: i64,
}

/// An admin's decision on a submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Moderation {
    /// Gone from leaderboards, lists and the API (its owner and admins still see it).
    Hide,
    /// Shown, never ranked.
    Disqualify,
    /// Neither hidden nor disqualified.
    Restore,
}

impl Moderation {
    /// `hide`, `disqualify` or `restore`.
    pub fn parse(s: &str) -> Option<Moderation> {
        match s {
            "hide" => Some(Moderation::Hide),
            "disqualify" => Some(Moderation::Disqualify),
            "restore" => Some(Moderation::Restore),
            _ => None,
        }
    }
}

impl Store {
    /// The submissions of account `account_id` uploaded since `since_ms`, oldest first.
    pub async fn recent(&self, account_id: &str, since_ms: i64) -> Result<Vec<Recent>, StoreError> {
        on_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT challenge, official, status, created_ms FROM submissions WHERE account_id = $1 AND created_ms >= $2 ORDER BY created_ms",
            )
            .bind(account_id)
            .bind(since_ms)
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|r| {
                    Ok(Recent {
                        challenge: r.try_get("challenge")?,
                        official: r.try_get("official")?,
                        rejected: r.try_get::<String, _>("status")? == "rejected",
                        created_ms: r.try_get("created_ms")?,
                    })
                })
                .collect::<Result<_, sqlx::Error>>()
                .map_err(StoreError::from)
        })
    }

    /// Applies an admin's decision; whether the submission exists.
    pub async fn moderate(&self, id: &str, m: Moderation) -> Result<bool, StoreError> {
        let (hidden, disqualified) = match m {
            Moderation::Hide => (true, false),
            Moderation::Disqualify => (false, true),
            Moderation::Restore => (false, false),
        };
        on_pool!(self, pool => {
            let n = sqlx::query("UPDATE submissions SET hidden = $1, disqualified = $2 WHERE id = $3")
                .bind(hidden)
                .bind(disqualified)
                .bind(id)
                .execute(pool)
                .await?
                .rows_affected();
            Ok(n > 0)
        })
    }

    /// Queues a finished submission for a fresh evaluation (its result is cleared);
    /// false when it is queued or running already, or has no files (rejected at intake).
    pub async fn requeue(&self, id: &str) -> Result<bool, StoreError> {
        on_pool!(self, pool => {
            let n = sqlx::query(
                "UPDATE submissions SET status = 'queued', score = NULL, accuracy = NULL, params = NULL, params_trainable = NULL, error = NULL, logs = '', result = NULL, attempts = 0, owner_pid = NULL, started_ms = NULL, finished_ms = NULL WHERE id = $1 AND status NOT IN ('queued', 'running') AND project_dir IS NOT NULL",
            )
            .bind(id)
            .execute(pool)
            .await?
            .rows_affected();
            Ok(n > 0)
        })
    }
}
