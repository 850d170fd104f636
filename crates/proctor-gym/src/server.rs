//! The gym on the OpenEnv protocol (openenv-core 0.3): `WS /ws` (one episode per
//! connection), HTTP `POST /reset`, `POST /step`, `GET /state` (with an `episode_id`),
//! `GET /health`, `/metadata`, `/schema`, `/openapi.json`, `/tasks`, `/tools`,
//! `POST /grader`, and `POST /mcp` (JSON-RPC 2.0, answered by [`crate::mcp::GymMcp`]).
//!
//! Access: an episode belongs to whoever started it. `/reset` answers its `episode_id`
//! and an `episode_token` (`pce_…`); `/step`, `/state`, the episode page and the MCP
//! tools need that token or the starting account's token, as `Authorization: Bearer …`
//! (or HTTP basic auth whose password is the token, e.g. `http://token:TOKEN@host`).
//! Someone else's episode answers like a missing one. A WebSocket owns the episode it
//! resets; it is closed when idle (see [`crate::episode::EpisodeConfig::socket_idle_timeout`]).
//! With [`crate::episode::Access::require_token`], every route but `/health`
//! needs an account's token (a revoked one also ends open WebSockets).
//! `/grader` always needs an account's token. Gradings, from `/grader` and `submit_fix`,
//! are admitted by [`crate::admission`]: beyond its queue, 503 with `Retry-After`.

use std::sync::Arc;

use axum::extract::ws::{close_code, CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{OriginalUri, Path, Query, Request, State};
use axum::http::header::RETRY_AFTER;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Extension;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use proctor_accounts::http::Credential;
use proctor_accounts::Caller;

use crate::episode::{tool_descriptions, Gym, StepResult, TOOL_NAMES};
use crate::mcp::GymMcp;
use crate::{task, ui, GymError};

pub(crate) const NAME: &str = "proctor-debug-gym";

/// The gym's routes, to serve at a root or nest under `/gym`.
pub fn router(gym: Arc<Gym>) -> Router {
    Router::new()
        .route("/", get(index_page))
        .route("/tasks/{id}", get(task_page))
        .route("/episodes/{id}", get(episode_page))
        .route("/metadata", get(metadata))
        .route("/schema", get(schema))
        .route("/openapi.json", get(openapi))
        .route("/tasks", get(tasks))
        .route("/tools", get(tools))
        .route("/reset", post(reset))
        .route("/step", post(step))
        .route("/state", get(state))
        .route("/grader", post(grader))
        .route("/mcp", post(mcp))
        .route("/ws", get(ws))
        .route_layer(middleware::from_fn_with_state(gym.clone(), identify))
        .route("/health", get(health))
        .layer(middleware::from_fn_with_state(gym.clone(), body_in_time))
        .with_state(gym)
}

/// The largest request body read (axum's default limit for JSON bodies).
const MAX_BODY_BYTES: usize = 2 << 20;

/// Reads a request's body within [`crate::episode::EpisodeConfig::body_timeout`]: the
/// connection's header timeout ends with the headers, and a body that never finishes
/// would hold its connection for good (slow-loris on the body).
async fn body_in_time(State(gym): State<Arc<Gym>>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let limit = gym.config.body_timeout;
    let read = axum::body::to_bytes(body, MAX_BODY_BYTES);
    let bytes = match tokio::time::timeout(limit, read).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) => {
            let error = format!(
                "the request's body could not be read (at most {MAX_BODY_BYTES} bytes): {e}"
            );
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                Json(json!({"error": error, "code": "VALIDATION_ERROR"})),
            )
                .into_response();
        }
        Err(_) => {
            let error = format!(
                "the request's body did not arrive within {} s",
                limit.as_secs_f64()
            );
            return (
                StatusCode::REQUEST_TIMEOUT,
                [(axum::http::header::CONNECTION, "close")],
                Json(json!({"error": error, "code": "REQUEST_TIMEOUT"})),
            )
                .into_response();
        }
    };
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await
}

/// Resolves who is asking (once per request) for the handlers, refusing requests
/// without a token when the gym requires one.
async fn identify(
    State(gym): State<Arc<Gym>>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let caller = gym.caller(request.headers()).await?;
    request.extensions_mut().insert(caller);
    Ok(next.run(request).await)
}

struct ApiError(GymError);

impl From<GymError> for ApiError {
    fn from(e: GymError) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            GymError::BadAction(_) | GymError::UnknownTask { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            GymError::Episode(_) => StatusCode::NOT_FOUND,
            GymError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            GymError::Capacity(_) | GymError::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let body = Json(json!({"error": self.0.to_string(), "code": ws_code(&self.0)}));
        match self.0 {
            GymError::Busy { retry_after_s, .. } => {
                (status, [(RETRY_AFTER, retry_after_s.to_string())], body).into_response()
            }
            _ => (status, body).into_response(),
        }
    }
}

fn ws_code(e: &GymError) -> &'static str {
    match e {
        GymError::BadAction(_) | GymError::UnknownTask { .. } => "VALIDATION_ERROR",
        GymError::Episode(_) => "SESSION_ERROR",
        GymError::Unauthorized(_) => "UNAUTHORIZED",
        GymError::Capacity(_) | GymError::Busy { .. } => "CAPACITY_REACHED",
        _ => "EXECUTION_ERROR",
    }
}

/// Where the gym is mounted: the request's full path minus the route's own part.
fn mount(uri: &OriginalUri, route_part: &str) -> String {
    let path = uri.0.path().trim_end_matches('/');
    path.strip_suffix(route_part.trim_end_matches('/'))
        .unwrap_or(path)
        .trim_end_matches('/')
        .to_string()
}

async fn index_page(
    State(gym): State<Arc<Gym>>,
    Extension(caller): Extension<Caller>,
    uri: OriginalUri,
) -> Result<Html<String>, ApiError> {
    Ok(Html(ui::index(
        &mount(&uri, ""),
        &task::all()?,
        &gym.list(&caller).await,
    )))
}

async fn task_page(Path(id): Path<String>, uri: OriginalUri) -> Result<Html<String>, ApiError> {
    let base = mount(&uri, &format!("/tasks/{id}"));
    Ok(Html(ui::task(&base, &task::find(&id)?)))
}

async fn episode_page(
    State(gym): State<Arc<Gym>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    uri: OriginalUri,
) -> Result<Html<String>, ApiError> {
    let base = mount(&uri, &format!("/episodes/{id}"));
    let (state, history, losses) = gym.history(&id, &caller).await?;
    Ok(Html(ui::episode(&base, &state, &history, &losses)))
}

/// 503 when the warm pool failed to start: no episode could begin.
async fn health(State(gym): State<Arc<Gym>>) -> (StatusCode, Json<Value>) {
    let pool = gym.warm_pool();
    let (code, status) = match pool.healthy() {
        true => (StatusCode::OK, "healthy"),
        false => (StatusCode::SERVICE_UNAVAILABLE, "unhealthy"),
    };
    (
        code,
        Json(
            json!({"status": status, "warm_pool": pool.to_string(), "active_episodes": gym.active().await, "max_episodes": gym.max_episodes, "grading": grading_health(&gym)}),
        ),
    )
}

/// Gradings running and waiting, against the limits.
fn grading_health(gym: &Gym) -> Value {
    let limits = &gym.config.grading;
    let mut v = serde_json::to_value(gym.grading()).expect("status serializes");
    v["max_running"] = json!(limits.max_running);
    v["max_queued"] = json!(limits.max_queued);
    v["memory_budget_mb"] = json!(limits.memory_budget_mb);
    v
}

async fn metadata() -> Json<Value> {
    Json(json!({
        "name": NAME,
        "description": "Debug gym: an agent fixes broken PyTorch training scripts with six tools and earns a continuous 0-1 reward graded by behaviour (instrumentation and held-out data), not by printed metrics. WhipStudio-compatible actions.",
        "version": env!("CARGO_PKG_VERSION"),
        "author": "proctor",
        "tasks": task::all().map(|t| t.iter().map(|t| t.spec.id.clone()).collect::<Vec<_>>()).unwrap_or_default(),
    }))
}

fn action_schema() -> Value {
    json!({
        "title": "Action",
        "type": "object",
        "required": ["action_type"],
        "properties": {
            "action_type": {"type": "string", "enum": TOOL_NAMES},
            "code": {"type": "string"},
            "target_expression": {"type": "string"},
            "setup_code": {"type": "string"},
            "steps": {"type": "integer", "minimum": 1, "maximum": 10},
            "expressions": {"type": "array", "items": {"type": "string"}, "maxItems": 10},
            "proposed_code": {"type": "string"},
            "fixed_code": {"type": "string"},
            "explanation": {"type": "string"},
            "attempt_number": {"type": "integer"},
        },
    })
}

async fn schema() -> Json<Value> {
    Json(json!({
        "action": action_schema(),
        "observation": {
            "title": "Observation",
            "type": "object",
            "required": ["action_type", "turn", "episode_done"],
            "properties": {
                "action_type": {"type": "string"},
                "turn": {"type": "integer"},
                "episode_done": {"type": "boolean"},
            },
            "additionalProperties": true,
        },
        "state": {
            "title": "State",
            "type": "object",
            "properties": {
                "episode_id": {"type": "string"},
                "step_count": {"type": "integer"},
                "task_id": {"type": "string"},
                "done": {"type": "boolean"},
                "reward": {"type": ["number", "null"]},
            },
        },
    }))
}

async fn openapi() -> Json<Value> {
    let op =
        |summary: &str| json!({"summary": summary, "responses": {"200": {"description": "OK"}}});
    Json(json!({
        "openapi": "3.0.3",
        "info": {"title": NAME, "version": env!("CARGO_PKG_VERSION")},
        "paths": {
            "/reset": {"post": op("Start an episode: {task_id?, seed?} -> {observation, reward, done, episode_id}")},
            "/step": {"post": op("Apply an action: {action, episode_id} -> {observation, reward, done}")},
            "/state": {"get": op("Episode state (?episode_id=)")},
            "/health": {"get": op("Health")},
            "/metadata": {"get": op("Name, description, version")},
            "/schema": {"get": op("JSON Schemas of action, observation, state")},
            "/tasks": {"get": op("The tasks")},
            "/tools": {"get": op("The tools")},
            "/grader": {"post": op("Grade a fix with an account's token: {task_id, code} -> score and details; 503 with Retry-After at capacity")},
            "/mcp": {"post": op("MCP over HTTP (JSON-RPC 2.0)")},
            "/ws": {"get": op("WebSocket: one episode per connection")},
        },
    }))
}

async fn tasks() -> Result<Json<Value>, ApiError> {
    let list: Vec<Value> = task::all()?
        .iter()
        .map(|t| {
            json!({
                "id": t.spec.id, "alias": t.spec.alias, "title": t.spec.title,
                "difficulty": t.spec.difficulty, "description": t.spec.description,
                "bugs": t.spec.bugs.len(), "bands": t.spec.bands,
            })
        })
        .collect();
    Ok(Json(json!({"tasks": list})))
}

async fn tools() -> Json<Value> {
    Json(json!({"tools": tool_descriptions(), "action_schema": action_schema()}))
}

#[derive(Deserialize, Default)]
struct ResetRequest {
    #[serde(default)]
    task_id: Option<String>,
    #[serde(default)]
    seed: Option<u64>,
}

pub(crate) fn step_json(id: Option<&str>, r: StepResult) -> Value {
    let mut v = json!({"observation": r.observation, "reward": r.reward, "done": r.done});
    if let Some(id) = id {
        v["episode_id"] = json!(id);
    }
    v
}

async fn reset(
    State(gym): State<Arc<Gym>>,
    Extension(caller): Extension<Caller>,
    body: Option<Json<ResetRequest>>,
) -> Result<Json<Value>, ApiError> {
    let req = body.map(|b| b.0).unwrap_or_default();
    let (id, token, result) = gym.reset(&caller, req.task_id.as_deref(), req.seed).await?;
    let mut reply = step_json(Some(&id), result);
    reply["episode_token"] = json!(token);
    Ok(Json(reply))
}

/// `{"action": {...}, "episode_id"}` (OpenEnv) or a bare WhipStudio action with `episode_id`.
async fn step(
    State(gym): State<Arc<Gym>>,
    Extension(caller): Extension<Caller>,
    Json(mut body): Json<Value>,
) -> Result<Json<Value>, ApiError> {
    let id = body
        .get("episode_id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| GymError::BadAction("missing \"episode_id\" (returned by /reset)".into()))?;
    let action = match body.get_mut("action") {
        Some(a) => a.take(),
        None => {
            if let Some(o) = body.as_object_mut() {
                o.remove("episode_id");
            }
            body
        }
    };
    Ok(Json(step_json(
        None,
        gym.step(&id, &caller, &action).await?,
    )))
}

#[derive(Deserialize)]
struct StateQuery {
    episode_id: Option<String>,
}

async fn state(
    State(gym): State<Arc<Gym>>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<StateQuery>,
) -> Result<Json<Value>, ApiError> {
    match q.episode_id {
        Some(id) => Ok(Json(gym.state(&id, &caller).await?)),
        None => Ok(Json(
            json!({"episode_id": null, "step_count": 0, "active_episodes": gym.active().await}),
        )),
    }
}

#[derive(Deserialize)]
struct GraderRequest {
    task_id: String,
    code: String,
}

/// Grades a fix outside any episode. A grading holds several GiB and a core for a
/// minute, so only an account may ask (episodes grade their fix with `submit_fix`).
async fn grader(
    State(gym): State<Arc<Gym>>,
    Extension(caller): Extension<Caller>,
    Json(req): Json<GraderRequest>,
) -> Result<Json<Value>, ApiError> {
    if caller.account.is_none() {
        return Err(GymError::Unauthorized(
            "/grader needs an account's token: send Authorization: Bearer <token> (create one with `proctor user token NAME`); an episode grades its fix with submit_fix".into(),
        )
        .into());
    }
    let task = task::find(&req.task_id)?;
    let report = gym.grade(&task, &req.code).await?;
    Ok(Json(
        serde_json::to_value(report).expect("report serializes"),
    ))
}

/// Largest WebSocket message accepted.
pub const WS_MAX_MESSAGE_BYTES: usize = 4 << 20;
/// Largest WebSocket frame accepted.
pub const WS_MAX_FRAME_BYTES: usize = 1 << 20;

async fn ws(
    State(gym): State<Arc<Gym>>,
    Extension(caller): Extension<Caller>,
    upgrade: WebSocketUpgrade,
) -> Response {
    // A connection counts against capacity from its upgrade on, not from its first
    // episode: refused (503 CAPACITY_REACHED) before upgrading when the gym is full.
    let Ok(slot) = gym.sockets.clone().try_acquire_owned() else {
        let full = format!(
            "{} connections are open, the most this gym holds",
            gym.max_episodes
        );
        return ApiError(GymError::Capacity(full)).into_response();
    };
    // An episode's messages are small JSON actions: a few MiB is generous, and the
    // default (64 MiB per message) let a handful of clients hold gigabytes.
    upgrade
        .max_message_size(WS_MAX_MESSAGE_BYTES)
        .max_frame_size(WS_MAX_FRAME_BYTES)
        .on_upgrade(move |socket| async move {
            ws_episode(gym, caller, socket).await;
            drop(slot);
        })
}

/// What a WebSocket delivered while the server waited for an action.
enum Incoming {
    Action(String),
    /// Closed by the client or broken.
    Closed,
    /// No message within the idle period.
    Idle,
}

/// The next text message within `idle`. Pings, pongs and binary frames do not restart the
/// clock: a keepalive shows the peer is alive, not that it uses its capacity slot.
async fn next_action(socket: &mut WebSocket, idle: std::time::Duration) -> Incoming {
    let deadline = tokio::time::Instant::now() + idle;
    loop {
        match tokio::time::timeout_at(deadline, socket.recv()).await {
            Err(_) => return Incoming::Idle,
            Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return Incoming::Closed,
            Ok(Some(Ok(Message::Text(t)))) => return Incoming::Action(t.to_string()),
            Ok(Some(Ok(_))) => continue,
        }
    }
}

fn ws_error(message: impl Into<String>, code: &str) -> Value {
    json!({"type": "error", "data": {"message": message.into(), "code": code}})
}

/// One episode per connection, which holds its episode token; the episode is freed
/// when the socket closes, and the socket closes when the account's token is revoked.
async fn ws_episode(gym: Arc<Gym>, caller: Caller, mut socket: WebSocket) {
    let mut episode: Option<String> = None;
    // The connection's own credential for its episode.
    let mut owner = caller.clone();
    loop {
        // Waiting for the next action only: a running call is not idle time.
        let idle = match episode {
            Some(_) => gym.config.idle_timeout,
            None => gym.config.socket_idle_timeout,
        };
        let text = match next_action(&mut socket, idle).await {
            Incoming::Action(text) => text,
            Incoming::Closed => break,
            Incoming::Idle => {
                let reason = format!("idle for {} s without a message", idle.as_secs_f64());
                let _ = socket
                    .send(Message::Close(Some(CloseFrame {
                        code: close_code::AWAY,
                        reason: reason.into(),
                    })))
                    .await;
                break;
            }
        };
        if !gym.still_admitted(&caller).await {
            let e = ws_error("the token of this connection was revoked", "UNAUTHORIZED");
            let _ = socket.send(Message::Text(e.to_string().into())).await;
            break;
        }
        let reply = match serde_json::from_str::<Value>(&text) {
            Err(e) => ws_error(format!("invalid JSON: {e}"), "INVALID_JSON"),
            Ok(m) => match m.get("type").and_then(Value::as_str).unwrap_or("") {
                "reset" => {
                    if let Some(old) = episode.take() {
                        gym.release(&old).await;
                    }
                    let data = m.get("data").cloned().unwrap_or(json!({}));
                    let task_id = data.get("task_id").and_then(Value::as_str);
                    let seed = data.get("seed").and_then(Value::as_u64);
                    match gym.reset(&caller, task_id, seed).await {
                        Ok((id, token, r)) => {
                            episode = Some(id);
                            owner.credential = Some(Credential::Header(token));
                            json!({"type": "observation", "data": step_json(None, r)})
                        }
                        Err(e) => ws_error(e.to_string(), ws_code(&e)),
                    }
                }
                "step" => match &episode {
                    None => ws_error(
                        "no episode yet: send {\"type\": \"reset\"} first",
                        "SESSION_ERROR",
                    ),
                    Some(id) => {
                        let action = m.get("data").cloned().unwrap_or(Value::Null);
                        match gym.step(id, &owner, &action).await {
                            Ok(r) => json!({"type": "observation", "data": step_json(None, r)}),
                            Err(e) => ws_error(e.to_string(), ws_code(&e)),
                        }
                    }
                },
                "state" => match &episode {
                    None => json!({"type": "state", "data": {"episode_id": null, "step_count": 0}}),
                    Some(id) => match gym.state(id, &owner).await {
                        Ok(mut s) => {
                            // The connection's own credential, to open the episode's
                            // page or `/state` from elsewhere.
                            if let Some(c) = &owner.credential {
                                s["episode_token"] = json!(c.secret());
                            }
                            json!({"type": "state", "data": s})
                        }
                        Err(e) => ws_error(e.to_string(), ws_code(&e)),
                    },
                },
                "close" => break,
                other => ws_error(format!("Unknown message type: {other}"), "UNKNOWN_TYPE"),
            },
        };
        if socket
            .send(Message::Text(reply.to_string().into()))
            .await
            .is_err()
        {
            break;
        }
    }
    if let Some(id) = episode {
        gym.release(&id).await;
    }
}

async fn mcp(
    State(gym): State<Arc<Gym>>,
    Extension(caller): Extension<Caller>,
    body: axum::body::Bytes,
) -> Json<Value> {
    Json(GymMcp::for_caller(gym, caller).json_rpc(&body).await)
}
