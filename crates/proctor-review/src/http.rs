//! The review's HTTP side: `POST /api/review`, the stored reviews (`GET /api/reviews`,
//! `GET /api/reviews/{id}`) and the pages (`/review`, `/reviews/{id}`).
//!
//! Who may act: a review runs for a signed-in account only (401 otherwise, like a
//! challenge submission: a review spends sandbox time), at most [`RUNNING_PER_ACCOUNT`]
//! at once per account (429 beyond), and is stored as that account's. Its body, a zip
//! archive or the JSON case, is read only then, up to 32 MiB (413 beyond).
//! An account lists and reads its own reviews; admins every review; anyone else gets the
//! same 404 as for a review that does not exist.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{FromRef, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use proctor_accounts::{Accounts, Caller};
use proctor_engine::LocalBackend;
use proctor_store::{ReviewScope, StoredReview};
use serde_json::{json, Value};

use crate::case::MAX_CASE_BYTES;
use crate::{pages, review, store_review, Case, ReviewOptions};

/// The header a cookie-authenticated page sends its session's CSRF token in.
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";

/// Reviews one account may have running at once: each takes sandbox runs on every core,
/// so a script looping over `POST /api/review` would otherwise take the machine.
pub const RUNNING_PER_ACCOUNT: usize = 2;

/// What the review routes need: the backend that runs the smoke runs, the accounts
/// (whose store keeps the reviews) and the reviews running per account.
#[derive(Clone)]
pub struct ReviewState {
    backend: LocalBackend,
    accounts: Accounts,
    running: Arc<Mutex<HashMap<String, usize>>>,
}

/// One running review of an account, given back when dropped (the review finished, or
/// its client left and the handler was cancelled).
struct Running {
    running: Arc<Mutex<HashMap<String, usize>>>,
    account: String,
}

impl ReviewState {
    /// A slot for one more review of `account`, if it has fewer than
    /// [`RUNNING_PER_ACCOUNT`] running.
    fn start(&self, account: &str) -> Option<Running> {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let n = running.entry(account.to_string()).or_default();
        if *n >= RUNNING_PER_ACCOUNT {
            return None;
        }
        *n += 1;
        Some(Running {
            running: self.running.clone(),
            account: account.to_string(),
        })
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = running.get_mut(&self.account) {
            *n -= 1;
            if *n == 0 {
                running.remove(&self.account);
            }
        }
    }
}

impl FromRef<ReviewState> for Accounts {
    fn from_ref(state: &ReviewState) -> Accounts {
        state.accounts.clone()
    }
}

/// The review routes, with their state applied: `POST /api/review` (the JSON of the
/// format doc, or a zip of the two project directories, in; the review's JSON with its
/// `review_id` and `url` out), `GET /api/reviews` (the caller's reviews; an admin's:
/// everyone's), `GET /api/reviews/{id}` (one with its report), and the pages `/review`
/// (the form and one's reviews) and `/reviews/{id}`.
pub fn router<S: Clone + Send + Sync + 'static>(
    backend: LocalBackend,
    accounts: Accounts,
) -> Router<S> {
    Router::new()
        .route("/api/review", post(api_review))
        .route("/api/reviews", get(api_list))
        .route("/api/reviews/{id}", get(api_one))
        .route("/review", get(page_form))
        .route("/reviews", get(page_form))
        .route("/reviews/{id}", get(page_one))
        .with_state(ReviewState {
            backend,
            accounts,
            running: Arc::default(),
        })
}

/// Whose reviews `caller` may read.
fn scope(caller: &Caller) -> Option<ReviewScope<'_>> {
    let account = caller.account.as_ref()?;
    Some(if caller.is_admin() {
        ReviewScope::All
    } else {
        ReviewScope::Account(&account.id)
    })
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

fn store_failed(e: proctor_store::StoreError) -> Response {
    error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

fn not_found(id: &str) -> Response {
    error(StatusCode::NOT_FOUND, format!("no review {id:?}"))
}

/// The case in a body: a zip archive of `base/`, `derived/` and `variations.txt` (see
/// [`Case::from_zip`]), or the JSON case.
async fn parse_case(body: axum::body::Bytes) -> Result<Case, String> {
    if body.starts_with(b"PK\x03\x04") {
        return match tokio::task::spawn_blocking(move || Case::from_zip(&body)).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(format!("the zip archive could not be read: {e}")),
        };
    }
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| format!("the body is neither a zip archive nor valid JSON: {e}"))?;
    Case::from_json(&value).map_err(|e| e.to_string())
}

/// The 413 answer: the body is larger than a case may be.
fn too_large() -> Response {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "the request body is larger than {} MiB, the most a review accepts: send the projects' source and config files only (no data sets, checkpoints or results)",
            MAX_CASE_BYTES >> 20
        ),
    )
}

/// The whole body, at most [`MAX_CASE_BYTES`]; `Err` is the answer to give instead (413
/// as soon as the body passes the limit, whatever its `Content-Length` said).
async fn read_body(body: Body) -> Result<axum::body::Bytes, Response> {
    use futures::StreamExt;
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            error(
                StatusCode::BAD_REQUEST,
                format!("the request body could not be read: {e}"),
            )
        })?;
        if bytes.len() + chunk.len() > MAX_CASE_BYTES {
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes.into())
}

/// `POST /api/review`. Who asks is checked before the body is read (an anonymous client,
/// a forged page or an account at its limit is refused without uploading anything); the
/// body is then read up to [`MAX_CASE_BYTES`] (413 beyond, at once when its
/// `Content-Length` says so).
async fn api_review(
    State(state): State<ReviewState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let account = match caller.signed_in() {
        Ok(a) => a,
        Err(unauthorized) => return unauthorized.into_response(),
    };
    let csrf = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
    if !caller.csrf_ok(csrf) {
        return error(
            StatusCode::FORBIDDEN,
            format!("the page's CSRF token is missing or wrong ({CSRF_HEADER}): reload the page and try again"),
        );
    }
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_CASE_BYTES as u64) {
        return too_large();
    }
    let Some(_slot) = state.start(&account.id) else {
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "{RUNNING_PER_ACCOUNT} of your reviews are running already: wait for one to finish"
            ),
        );
    };
    let body = match read_body(body).await {
        Ok(b) => b,
        Err(response) => return response,
    };
    let case = match parse_case(body).await {
        Ok(c) => c,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let started = Instant::now();
    let options = ReviewOptions::for_backend(&state.backend);
    let review = review(&state.backend, &case, &options).await;
    let store = state.accounts.store();
    let id = match store_review(store, &case, &review, Some(&account.id), started.elapsed()).await {
        Ok(id) => id,
        Err(e) => return store_failed(e),
    };
    let mut answer = serde_json::to_value(&review).unwrap_or_default();
    answer["review_id"] = json!(id);
    answer["url"] = json!(format!("/reviews/{id}"));
    Json(answer).into_response()
}

async fn api_list(State(state): State<ReviewState>, caller: Caller) -> Response {
    let Some(scope) = scope(&caller) else {
        return proctor_accounts::http::Unauthorized.into_response();
    };
    match state.accounts.store().reviews(scope, 200).await {
        Ok(rows) => Json(json!({ "reviews": rows })).into_response(),
        Err(e) => store_failed(e),
    }
}

/// The review `id` if `caller` may read it.
async fn readable(
    state: &ReviewState,
    caller: &Caller,
    id: &str,
) -> Result<Option<StoredReview>, Response> {
    let Some(scope) = scope(caller) else {
        return Ok(None);
    };
    state
        .accounts
        .store()
        .review(id, scope)
        .await
        .map_err(store_failed)
}

async fn api_one(
    State(state): State<ReviewState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Response {
    if caller.account.is_none() {
        return proctor_accounts::http::Unauthorized.into_response();
    }
    match readable(&state, &caller, &id).await {
        Ok(Some(r)) => Json(r).into_response(),
        Ok(None) => not_found(&id),
        Err(response) => response,
    }
}

async fn page_form(State(state): State<ReviewState>, caller: Caller) -> Response {
    let (Some(scope), Some(account)) = (scope(&caller), &caller.account) else {
        return Redirect::to("/login?next=/review").into_response();
    };
    match state.accounts.store().reviews(scope, 100).await {
        Ok(rows) => pages::form(account, caller.csrf_token().as_deref(), &rows).into_response(),
        Err(e) => store_failed(e),
    }
}

async fn page_one(
    State(state): State<ReviewState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Response {
    if caller.account.is_none() {
        // Only an id of the form we hand out goes back into the redirect.
        let next = match id.chars().all(|c| c.is_ascii_alphanumeric()) {
            true => format!("/reviews/{id}"),
            false => "/review".to_string(),
        };
        return Redirect::to(&format!("/login?next={next}")).into_response();
    }
    match readable(&state, &caller, &id).await {
        Ok(Some(r)) => pages::review(&r).into_response(),
        Ok(None) => (StatusCode::NOT_FOUND, pages::missing(&id)).into_response(),
        Err(response) => response,
    }
}
