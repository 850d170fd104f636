/*!
The HTTP server of the proctor platform: health and status today; the gym, challenges
and review nest their routers here.

```no_run
# async fn demo(backend: proctor_engine::LocalBackend) -> std::io::Result<()> {
let app = proctor_server::router(proctor_server::AppState::new(backend));
let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
axum::serve(listener, app).await
# }
```
*/
#![deny(missing_docs)]

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use proctor_engine::LocalBackend;
use proctor_gym::episode::Access;
use serde_json::json;

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    backend: LocalBackend,
    started: Arc<Instant>,
    access: Access,
}

impl AppState {
    /// State around a started backend.
    pub fn new(backend: LocalBackend) -> AppState {
        AppState {
            backend,
            started: Arc::new(Instant::now()),
            access: Access::default(),
        }
    }

    /// Who may use the gym (accounts, `--require-token`).
    pub fn with_access(mut self, access: Access) -> AppState {
        self.access = access;
        self
    }
}

/// The one error type of handlers: a status and a message a user can act on.
#[derive(Debug)]
pub struct AppError {
    status: StatusCode,
    message: String,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

impl From<proctor_core::JobError> for AppError {
    fn from(e: proctor_core::JobError) -> AppError {
        AppError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: e.to_string(),
        }
    }
}

pub use axum::Router;

pub mod limits;
pub use limits::{serve_with_limits, ServerLimits};

/// All routes of the platform; the debug gym is nested under `/gym`; experiment-code
/// review (`/review`, `/api/review`, stored reviews) when the state has accounts.
pub fn router(state: AppState) -> Router {
    let gym = proctor_gym::episode::Gym::with_access(
        state.backend.clone(),
        32,
        proctor_gym::episode::EpisodeConfig::default(),
        state.access.clone(),
    );
    // Reviews are stored and belong to accounts: served where there are accounts.
    let review = state
        .access
        .accounts
        .clone()
        .map(|accounts| proctor_review::router(state.backend.clone(), accounts));
    let router = Router::new()
        .route("/", get(index))
        .route("/health", get(health))
        .route("/api/status", get(status))
        .with_state(state)
        .nest("/gym", proctor_gym::server::router(gym));
    match review {
        Some(review) => router.merge(review),
        None => router,
    }
}

/// 200 while everything can be served (the warm pool ready or starting), 503 when the
/// warm pool failed to start (sessions cannot open; runs fall back to cold).
async fn health(State(state): State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    let pool = state.backend.warm_pool();
    let (code, status) = match pool.healthy() {
        true => (StatusCode::OK, "ok"),
        false => (StatusCode::SERVICE_UNAVAILABLE, "degraded"),
    };
    (
        code,
        Json(json!({ "status": status, "warm_pool": pool.to_string() })),
    )
}

async fn status(State(state): State<AppState>) -> Result<Json<serde_json::Value>, AppError> {
    let config = state.backend.config().clone();
    let sandbox = tokio::task::spawn_blocking(proctor_sandbox::doctor)
        .await
        .map_err(|e| AppError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: e.to_string(),
        })?;
    Ok(Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": state.started.elapsed().as_secs_f64(),
        "sandboxed": state.backend.sandboxed(),
        "sandbox": sandbox,
        "runtime": config.runtime,
        "home": config.home,
    })))
}

async fn index() -> Html<&'static str> {
    Html(include_str!("index.html"))
}

/// Serves any router (e.g. the gym alone) on `listener` until `shutdown` resolves.
/// Handlers can read the peer's address (`ConnectInfo<SocketAddr>`: the login throttle
/// keys on it).
/// Connections are limited as [`ServerLimits::default`] says (header-read timeout,
/// total and per-client caps).
pub async fn serve_router(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    limits::serve_with_limits(listener, router, shutdown, ServerLimits::default()).await
}
