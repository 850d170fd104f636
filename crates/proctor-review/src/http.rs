//! `POST /api/review` and the review page.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use proctor_engine::LocalBackend;
use serde_json::{json, Value};

use crate::{review, Case, ReviewOptions};

/// The review routes: `POST /api/review` (the JSON of the format doc in and out) and
/// `GET /review` (a page to paste a case into and read the verdict).
pub fn router(backend: LocalBackend) -> Router {
    Router::new()
        .route("/api/review", post(api_review))
        .route("/review", get(page))
        .with_state(backend)
}

async fn api_review(State(backend): State<LocalBackend>, body: axum::body::Bytes) -> Response {
    let value: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return bad(format!("the body is not valid JSON: {e}")),
    };
    let case = match Case::from_json(&value) {
        Ok(c) => c,
        Err(e) => return bad(e.to_string()),
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
