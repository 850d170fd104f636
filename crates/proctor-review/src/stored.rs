//! Reviews kept: a finished review stored with the account that asked, under an id
//! nobody can guess (122 random bits), for its page, the API and `proctor review
//! list|show`. Storing is one insert: it adds nothing measurable to a review.

use std::time::Duration;

use proctor_store::{NewReview, Store, StoreError};

use crate::{Case, Review, Severity};

/// Stores `review` of `case`, asked by `account_id` (`None`: a local CLI review), which
/// took `wall`; returns its id.
pub async fn store_review(
    store: &Store,
    case: &Case,
    review: &Review,
    account_id: Option<&str>,
    wall: Duration,
) -> Result<String, StoreError> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let count = |s: Severity| review.findings.iter().filter(|f| f.severity == s).count() as i64;
    store
        .insert_review(&NewReview {
            id: id.clone(),
            account_id: account_id.map(str::to_string),
            experiment: case.experiment.id.clone(),
            ready: review.is_experiment_code_ready,
            blockers: count(Severity::Blocker),
            warnings: count(Severity::Warning),
            wall_ms: wall.as_millis() as i64,
            report: serde_json::to_value(review).unwrap_or_default(),
        })
        .await?;
    Ok(id)
}
