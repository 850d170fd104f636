//! `POST /api/review` and the review page.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use proctor_engine::LocalBackend;
use serde_json::{json, Value};

use crate::{review, Case, ReviewOptions};

/// The review routes: `POST /api/review` (the JSON of the format doc, or a zip of the two
/// project directories, in; the review's JSON out) and
/// `GET /review` (a page to paste a case into and read the verdict).
pub fn router(backend: LocalBackend) -> Router {
    Router::new()
        .route("/api/review", post(api_review))
        .route("/review", get(page))
        .with_state(backend)
}

/// The body is the JSON case, or a zip archive of `base/`, `derived/` and
/// `variations.txt` (see [`Case::from_zip`]).
async fn api_review(State(backend): State<LocalBackend>, body: axum::body::Bytes) -> Response {
    let case = if body.starts_with(b"PK\x03\x04") {
        let bytes = body.clone();
        match tokio::task::spawn_blocking(move || Case::from_zip(&bytes)).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return bad(e.to_string()),
            Err(e) => return bad(format!("the zip archive could not be read: {e}")),
        }
    } else {
        let value: Value = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                return bad(format!(
                    "the body is neither a zip archive nor valid JSON: {e}"
                ))
            }
        };
        match Case::from_json(&value) {
            Ok(c) => c,
            Err(e) => return bad(e.to_string()),
        }
    };
    let options = ReviewOptions::for_backend(&backend);
    let review = review(&backend, &case, &options).await;
    Json(review).into_response()
}

fn bad(message: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": message }))).into_response()
}

async fn page() -> Html<&'static str> {
    Html(include_str!("review.html"))
}
