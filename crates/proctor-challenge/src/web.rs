//! HTTP: the JSON API (documented at `/api/openapi.json`) and server-rendered pages
//! (challenge list, challenge page with the Pareto plot and an upload form, submission
//! page). Handlers are thin: extract, call the [`Platform`], render.

use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use proctor_accounts::Caller;
use proctor_engine::Backend;
use proctor_store::{Filter, Submission};
use serde::Deserialize;
use serde_json::json;

use crate::data::Split;
use crate::definition::Challenge;
use crate::evaluate::Outcome;
use crate::pareto::{self, escape};
use crate::participants::{self, visible};
use crate::platform::Platform;
use crate::Error;

/// The routes of the challenge platform, with their state applied: merge them into the
/// server (`Router::new().merge(proctor_challenge::web::router(platform))`).
pub fn router<S, B>(platform: Platform<B>) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    B: Backend + Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/api/openapi.json", get(openapi))
        .route("/api/challenges", get(api_list::<B>))
        .route("/api/challenges/{id}", get(api_challenge::<B>))
        .route(
            "/api/challenges/{id}/submissions",
            get(api_submissions::<B>).post(api_submit::<B>),
        )
        .route(
            "/api/challenges/{id}/leaderboard",
            get(api_leaderboard::<B>),
        )
        .route("/api/submissions/{id}", get(api_submission::<B>))
        .route("/challenges", get(page_list::<B>))
        .route("/challenges/{id}", get(page_challenge::<B>))
        .route("/challenges/{id}/pareto.svg", get(pareto_svg::<B>))
        .route(
            "/challenges/{id}/submit",
            axum::routing::post(form_submit::<B>),
        )
        .route("/submissions/{id}", get(page_submission::<B>))
        .merge(participants::routes::<B>())
        .layer(DefaultBodyLimit::max(11 << 20))
        .merge(proctor_accounts::web::router(platform.accounts().clone()))
        .with_state(platform)
}

/// An error as an HTTP response: a status and a JSON body whose `error` a user can act
/// on (a 429 also says when the quota resets, in `Retry-After` and the body).
#[derive(Debug)]
pub struct WebError {
    status: StatusCode,
    body: serde_json::Value,
    retry_after_s: Option<u64>,
}

impl WebError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> WebError {
        WebError {
            status,
            body: json!({ "error": message.into() }),
            retry_after_s: None,
        }
    }
}

impl From<Error> for WebError {
    fn from(e: Error) -> WebError {
        let status = match &e {
            Error::UnknownChallenge { .. } | Error::UnknownSubmission(_) => StatusCode::NOT_FOUND,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::Quota(q) => {
                let resets = std::time::UNIX_EPOCH
                    + std::time::Duration::from_millis(q.resets_at_ms.max(0) as u64);
                let retry_after_s = q.retry_after.as_secs().max(1);
                return WebError {
                    status: StatusCode::TOO_MANY_REQUESTS,
                    body: json!({
                        "error": q.message,
                        "retry_after_s": retry_after_s,
                        "resets_at_ms": q.resets_at_ms,
                        "resets_at": httpdate::fmt_http_date(resets),
                    }),
                    retry_after_s: Some(retry_after_s),
                };
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        WebError::new(status, e.to_string())
    }
}

impl From<proctor_store::StoreError> for WebError {
    fn from(e: proctor_store::StoreError) -> WebError {
        WebError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

impl From<proctor_accounts::http::Unauthorized> for WebError {
    fn from(_: proctor_accounts::http::Unauthorized) -> WebError {
        WebError::new(
            StatusCode::UNAUTHORIZED,
            proctor_accounts::http::UNAUTHORIZED,
        )
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(self.body)).into_response();
        if let Some(s) = self.retry_after_s {
            r.headers_mut().insert(header::RETRY_AFTER, s.into());
        }
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"proctor\""),
            );
        }
        r
    }
}

pub(crate) type WebResult<T> = Result<T, WebError>;

/// A challenge as the JSON API and `proctor challenge list --json` show it.
pub fn challenge_json(c: &Challenge) -> serde_json::Value {
    json!({
        "id": c.id,
        "title": c.title,
        "summary": c.summary,
        "param_limit": c.param_limit,
        "baseline_accuracy": c.baseline_accuracy,
        "num_classes": c.data.num_classes,
        "input_dim": c.data.input_dim,
        "train_samples": c.data.train_samples(),
        "val_samples": c.data.val_samples(),
        "test_samples": c.data.test_samples(),
        "time_limit_s": c.resources.time_limit_s,
        "resources": c.resources,
        "rank_metric": c.rank_metric,
        "metrics": c.metrics,
    })
}

async fn api_list<B: Backend + Clone + Send + Sync + 'static>(
    State(p): State<Platform<B>>,
) -> Json<serde_json::Value> {
    let list: Vec<_> = p.catalog().list().into_iter().map(challenge_json).collect();
    Json(json!({ "challenges": list }))
}

async fn api_challenge<B: Backend + Clone + Send + Sync + 'static>(
    State(p): State<Platform<B>>,
    Path(id): Path<String>,
) -> WebResult<Json<serde_json::Value>> {
    let c = p.catalog().get(&id)?;
    let mut v = challenge_json(c);
    v["statement_markdown"] = json!(c.statement_markdown);
    Ok(Json(v))
}

#[derive(Deserialize)]
struct BoardQuery {
    #[serde(default)]
    official: bool,
    #[serde(default)]
    limit: Option<i64>,
}

async fn api_leaderboard<B: Backend + Clone + Send + Sync + 'static>(
    State(p): State<Platform<B>>,
    Path(id): Path<String>,
    Query(q): Query<BoardQuery>,
) -> WebResult<Json<serde_json::Value>> {
    let c = p.catalog().get(&id)?;
    let rows = p
        .store()
        .leaderboard(&c.id, q.official, q.limit.unwrap_or(100).clamp(1, 1000))
        .await?;
    let mut ranked = 0;
    let entries: Vec<_> = rows
        .iter()
        .map(|s| {
            let mut v = serde_json::to_value(p.view(s)).unwrap_or_default();
            // Over-budget entries show their accuracy but take no rank.
            v["rank"] = if s.status == Outcome::OverBudget.as_str() {
                serde_json::Value::Null
            } else {
                ranked += 1;
                json!(ranked)
            };
            v.as_object_mut().map(|o| o.remove("logs"));
            v
        })
        .collect();
    Ok(Json(
        json!({ "challenge": c.id, "official": q.official, "entries": entries }),
    ))
}

async fn api_submissions<B: Backend + Clone + Send + Sync + 'static>(
    State(p): State<Platform<B>>,
    caller: Caller,
    Path(id): Path<String>,
) -> WebResult<Json<serde_json::Value>> {
    let c = p.catalog().get(&id)?;
    let filter = Filter {
        challenge: Some(&c.id),
        // Admins also see hidden rows (to restore them) and private ones.
        public_only: !caller.is_admin(),
        ..Filter::default()
    };
    let rows = p.store().list(&filter, 200).await?;
    let list: Vec<_> = rows
        .iter()
        .map(|s| {
            let mut v = serde_json::to_value(p.view(s)).unwrap_or_default();
            v.as_object_mut().map(|o| o.remove("logs"));
            v
        })
        .collect();
    Ok(Json(json!({ "submissions": list })))
}

async fn api_submission<B: Backend + Clone + Send + Sync + 'static>(
    State(p): State<Platform<B>>,
    caller: Caller,
    Path(id): Path<String>,
) -> WebResult<Json<serde_json::Value>> {
    let s = visible(&p, &id, &caller).await?;
    let mut v = serde_json::to_value(p.view(&s)).unwrap_or_default();
    v["created_ms"] = json!(s.created_ms);
    v["finished_ms"] = json!(s.finished_ms);
    v["attempts"] = json!(s.attempts);
    v["name"] = json!(s.name);
    v["result"] = s.result.clone().unwrap_or_default();
    // While it runs: its phase and the last line its training printed.
    v["progress"] = json!(p.progress(&s.id));
    Ok(Json(v))
}

struct Upload {
    file_name: String,
    bytes: Vec<u8>,
    csrf: Option<String>,
    split: Split,
}

async fn read_upload(mut form: Multipart) -> WebResult<Upload> {
    let bad = |m: String| WebError::new(StatusCode::BAD_REQUEST, m);
    let mut up = Upload {
        file_name: String::new(),
        bytes: Vec::new(),
        csrf: None,
        split: Split::Public,
    };
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| bad(format!("malformed multipart form: {e}")))?
    {
        match field.name().unwrap_or("") {
            "file" => {
                up.file_name = field.file_name().unwrap_or("upload.zip").to_string();
                up.bytes = field
                    .bytes()
                    .await
                    .map_err(|e| bad(format!("cannot read the uploaded file: {e}")))?
                    .to_vec();
            }
            "csrf" => up.csrf = field.text().await.ok(),
            "official" => {
                let v = field.text().await.unwrap_or_default();
                if matches!(v.as_str(), "true" | "on" | "1") {
                    up.split = Split::Official;
                }
            }
            _ => {}
        }
    }
    if up.bytes.is_empty() {
        return Err(bad(
            "no file: send a multipart form with a `file` field (a .zip project or a solution.py)"
                .into(),
        ));
    }
    Ok(up)
}

async fn api_submit<B: Backend + Clone + Send + Sync + 'static>(
    State(p): State<Platform<B>>,
    caller: Caller,
    Path(id): Path<String>,
    form: Multipart,
) -> WebResult<Response> {
    p.catalog().get(&id)?;
    let account = caller.signed_in()?;
    let up = read_upload(form).await?;
    if !caller.csrf_ok(up.csrf.as_deref()) {
        return Err(participants::csrf_refused());
    }
    let s = p
        .submit(&id, &up.file_name, &up.bytes, Some(account), up.split)
        .await?;
    let status = if s.status == "rejected" {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, Json(p.view(&s))).into_response())
}

async fn form_submit<B: Backend + Clone + Send + Sync + 'static>(
    State(p): State<Platform<B>>,
    caller: Caller,
    Path(id): Path<String>,
    form: Multipart,
) -> WebResult<Redirect> {
    let c = p.catalog().get(&id)?;
    let Some(account) = &caller.account else {
        return Ok(Redirect::to(&format!("/login?next=/challenges/{}", c.id)));
    };
    let up = read_upload(form).await?;
    if !caller.csrf_ok(up.csrf.as_deref()) {
        return Err(participants::csrf_refused());
    }
    let s = p
        .submit(&id, &up.file_name, &up.bytes, Some(account), up.split)
        .await?;
    Ok(Redirect::to(&format!("/submissions/{}", s.id)))
}

async fn points<B: Backend + Clone + Send + Sync + 'static>(
    p: &Platform<B>,
    c: &Challenge,
    official: bool,
) -> WebResult<Vec<pareto::Point>> {
    let rows = p.store().leaderboard(&c.id, official, 1000).await?;
    Ok(rows
        .iter()
        .filter_map(|s| {
            Some(pareto::Point {
                id: s.id.clone(),
                label: format!(
                    "{}{}",
                    s.participant,
                    s.name
                        .as_deref()
                        .map(|n| format!(" / {n}"))
                        .unwrap_or_default()
                ),
                params: s.params? as f64,
                accuracy: s.accuracy.unwrap_or(0.0),
                over_budget: s.status == "over_budget",
            })
        })
        .collect())
}

#[derive(Deserialize)]
struct PlotQuery {
    #[serde(default)]
    official: bool,
}

async fn pareto_svg<B: Backend + Clone + Send + Sync + 'static>(
    State(p): State<Platform<B>>,
    Path(id): Path<String>,
    Query(q): Query<PlotQuery>,
) -> WebResult<Response> {
    let c = p.catalog().get(&id)?.clone();
    let pts = points(&p, &c, q.official).await?;
    let svg = pareto::svg(&pts, c.param_limit, c.baseline_accuracy, Some(1.0));
    Ok(([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response())
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#222}table{border-collapse:collapse;margin:.5em 0}td,th{border-bottom:1px solid #ddd;padding:.3em .6em;text-align:left}pre{background:#f6f6f6;padding:.6em;overflow:auto}.status-scored{color:#070}.status-rejected,.status-error,.status-timeout,.status-oom,.status-over_budget{color:#b00}form{border:1px solid #ddd;padding:1em;margin:1em 0}nav a{margin-right:1em}";

pub(crate) fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{} · proctor</title><style>{STYLE}</style></head><body><nav><a href=\"/challenges\">challenges</a><a href=\"/me\">my submissions</a><a href=\"/api/openapi.json\">API</a></nav>{body}</body></html>",
        escape(title)
    ))
}

pub(crate) fn num(v: Option<f64>, digits: usize) -> String {
    v.map_or("–".into(), |x| format!("{x:.digits$}"))
}

pub(crate) fn int(v: Option<i64>) -> String {
    v.map_or("–".into(), |x| x.to_string())
}

/// Why a row's two counts can differ, in one line (shown beside the rankings).
const PARAMS_EXPLAINED: &str = "params: every tensor element the saved model stores (parameters, frozen weights, buffers, closed-form heads), except normalization running statistics and per-feature 1-D statistics up to 2 × input_dim, plus values kept outside tensors (bytes, strings, numbers, list items) past per-model allowances for names and settings (4,096 bytes, 2,048 numbers and items, 16 KiB of code of classes defined in solve()); trainable: the original rule, parameters with requires_grad only. The budget applies to params.";

fn submission_rows(rows: &[Submission], rank: bool) -> String {
    let mut s = String::from("<table><tr>");
    if rank {
        s.push_str("<th>#</th>");
    }
    s.push_str("<th>participant</th><th>name</th><th>status</th><th>score</th><th>accuracy</th><th>params</th><th>trainable</th><th>data</th></tr>");
    let mut ranked = 0;
    for r in rows {
        s.push_str("<tr>");
        // Over-budget rows show their accuracy but take no rank.
        if rank && r.status == Outcome::OverBudget.as_str() {
            s.push_str("<td title=\"over the parameter limit: not ranked\">-</td>");
        } else if rank {
            ranked += 1;
            s.push_str(&format!("<td>{ranked}</td>"));
        }
        s.push_str(&format!(
            "<td><a href=\"/submissions/{id}\">{}</a></td><td>{}</td><td class=\"status-{st}\">{st}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&r.participant),
            escape(r.name.as_deref().unwrap_or("")),
            num(r.score, 2),
            num(r.accuracy, 4),
            int(r.params),
            int(r.params_trainable),
            if r.official { "official" } else { "public" },
            id = escape(&r.id),
            st = escape(&r.status),
        ));
    }
    if rows.is_empty() {
        s.push_str("<tr><td colspan=\"9\">Nothing here yet</td></tr>");
    }
    s.push_str("</table>");
    s
}

async fn page_list<B: Backend + Clone + Send + Sync + 'static>(
    State(p): State<Platform<B>>,
) -> Html<String> {
    let mut body = String::from("<h1>Challenges</h1><table><tr><th>challenge</th><th>parameter limit</th><th>baseline</th><th>summary</th></tr>");
    for c in p.catalog().list() {
        body.push_str(&format!(
            "<tr><td><a href=\"/challenges/{id}\">{}</a></td><td>{}</td><td>{:.2}</td><td>{}</td></tr>",
            escape(&c.title),
            c.param_limit,
            c.baseline_accuracy,
            escape(&c.summary),
            id = escape(&c.id)
        ));
    }
    body.push_str("</table>");
    page("Challenges", &body)
}

fn markdown(text: &str) -> String {
    // Raw HTML in a statement is shown as text, not rendered.
    let parser =
        pulldown_cmark::Parser::new_ext(text, pulldown_cmark::Options::ENABLE_TABLES).map(|ev| {
            match ev {
                pulldown_cmark::Event::Html(h) | pulldown_cmark::Event::InlineHtml(h) => {
                    pulldown_cmark::Event::Text(h)
                }
                e => e,
            }
        });
    let mut out = String::new();
    pulldown_cmark::html::push_html(&mut out, parser);
    out
}

async fn page_challenge<B: Backend + Clone + Send + Sync + 'static>(
    State(p): State<Platform<B>>,
    caller: Caller,
    Path(id): Path<String>,
) -> WebResult<Html<String>> {
    let c = p.catalog().get(&id)?.clone();
    let public = Filter {
        challenge: Some(&c.id),
        public_only: true,
        ..Filter::default()
    };
    let latest = p.store().list(&public, 20).await?;
    let top = p.store().leaderboard(&c.id, false, 20).await?;
    let top_official = p.store().leaderboard(&c.id, true, 20).await?;
    let pts = points(&p, &c, false).await?;
    let svg = pareto::svg(&pts, c.param_limit, c.baseline_accuracy, Some(1.0));
    let metrics: String = c
        .metrics
        .iter()
        .map(|m| {
            format!(
                "<tr><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
                escape(&m.label),
                escape(&m.name),
                if m.higher_is_better {
                    "higher is better"
                } else {
                    "lower is better"
                }
            )
        })
        .collect();
    let body = format!(
        r#"<h1>{title}</h1><p>{summary}</p>
<p>Parameter limit <b>{limit}</b> · baseline accuracy {base:.2} · {classes} classes, input dim {dim} · time limit {tl} s · rank metric <code>{rank}</code></p>
<h2>Submit</h2>
{form}
<h2>Accuracy vs parameters (public)</h2><div class="pareto">{svg}</div>
<p class="note">{counts}</p>
<h2>Top rankings (public)</h2>{top}
<h2>Top rankings (official)</h2>{top_official}
<h2>Latest submissions</h2>{latest}
<h2>Metrics</h2><table>{metrics}</table>
<h2>Statement</h2><div class="statement">{statement}</div>"#,
        title = escape(&c.title),
        summary = escape(&c.summary),
        limit = c.param_limit,
        base = c.baseline_accuracy,
        classes = c.data.num_classes,
        dim = c.data.input_dim,
        tl = c.resources.time_limit_s,
        rank = escape(&c.rank_metric),
        counts = PARAMS_EXPLAINED,
        form = participants::upload_form(&c, &caller),
        top = submission_rows(&top, true),
        top_official = submission_rows(&top_official, true),
        latest = submission_rows(&latest, false),
        statement = markdown(&c.statement_markdown),
    );
    Ok(page(&c.title, &body))
}

async fn page_submission<B: Backend + Clone + Send + Sync + 'static>(
    State(p): State<Platform<B>>,
    caller: Caller,
    Path(id): Path<String>,
) -> WebResult<Html<String>> {
    let s = visible(&p, &id, &caller).await?;
    let v = p.view(&s);
    let refresh = if matches!(s.status.as_str(), "queued" | "running") {
        "<meta http-equiv=\"refresh\" content=\"2\"><p>Evaluating… this page refreshes itself.</p>"
    } else {
        ""
    };
    let body = format!(
        r#"{refresh}<h1>Submission <code>{id}</code></h1>
<p>Challenge <a href="/challenges/{cid}">{cid}</a> · participant {who} · {data} data · file {file}{flags}</p>
<table>
<tr><th>status</th><td class="status-{st}">{st}</td></tr>
<tr><th>score</th><td>{score}</td></tr>
<tr><th>accuracy</th><td>{acc} (baseline {base:.2}, oracle {oracle})</td></tr>
<tr><th>params (counted)</th><td>{params} of {limit}</td></tr>
<tr><th>params (trainable, original rule)</th><td>{trainable}</td></tr>
<tr><th>why they differ</th><td>{note}</td></tr>
<tr><th>solve() time</th><td>{solve} s</td></tr>
</table>
{error}{moderation}
<h2>Logs</h2><pre>{logs}</pre>"#,
        id = escape(&s.id),
        cid = escape(&s.challenge),
        who = escape(&s.participant),
        flags = participants::flags(&s),
        data = if s.official { "official" } else { "public" },
        file = escape(&s.file_name),
        st = escape(&s.status),
        score = num(v.score, 2),
        acc = num(v.accuracy, 4),
        base = v.baseline_accuracy,
        oracle = num(v.oracle_accuracy, 3),
        params = int(v.params),
        limit = v.param_limit,
        trainable = int(v.params_trainable),
        note = escape(v.params_note.as_deref().unwrap_or("–")),
        solve = num(v.solve_s, 2),
        error = v
            .error
            .as_deref()
            .map(|e| format!("<h2>Error</h2><pre>{}</pre>", escape(e)))
            .unwrap_or_default(),
        logs = escape(&s.logs),
        moderation = participants::moderation_forms(&s, &caller),
    );
    Ok(page(&format!("Submission {}", s.id), &body))
}

async fn openapi() -> Json<serde_json::Value> {
    let id = json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string"}});
    let view = json!({"$ref": "#/components/schemas/Submission"});
    Json(json!({
        "openapi": "3.0.3",
        "info": {"title": "proctor challenge platform", "version": env!("CARGO_PKG_VERSION")},
        "paths": {
            "/api/challenges": {"get": {"summary": "List challenges", "responses": {"200": {"description": "{challenges: [...]}"}}}},
            "/api/challenges/{id}": {"get": {"summary": "Challenge detail with its statement", "parameters": [id], "responses": {"200": {"description": "the challenge"}, "404": {"description": "unknown challenge"}}}},
            "/api/challenges/{id}/submissions": {
                "get": {"summary": "Latest submissions of a challenge", "parameters": [id], "responses": {"200": {"description": "{submissions: [...]}"}}},
                "post": {"summary": "Submit a zip project or a bare solution.py", "parameters": [id],
                    "requestBody": {"required": true, "content": {"multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
                        "file": {"type": "string", "format": "binary", "description": ".zip project with agentics.solution.json, or solution.py (≤ 10 MiB)"},
                        "official": {"type": "boolean", "description": "evaluate on the official (secret) data"}}}}}},
                    "security": [{"bearer": []}],
                    "responses": {"202": {"description": "queued", "content": {"application/json": {"schema": view}}}, "401": {"description": "no live token"}, "422": {"description": "rejected, with the reason in `error`", "content": {"application/json": {"schema": view}}}, "429": {"description": "over the challenge's quota (`[limits]`): `Retry-After`, and `retry_after_s`, `resets_at_ms`, `resets_at` in the body"}}}
            },
            "/api/me": {"get": {"summary": "The caller's account and submissions, with each rejection's reason", "security": [{"bearer": []}], "responses": {"200": {"description": "{account, submissions: [...]}"}, "401": {"description": "no live token"}}}},
            "/api/submissions/{id}/{action}": {"post": {"summary": "Admins: hide, disqualify, restore or rescore a submission", "parameters": [id, {"name": "action", "in": "path", "required": true, "schema": {"type": "string", "enum": ["hide", "disqualify", "restore", "rescore"]}}], "security": [{"bearer": []}], "responses": {"200": {"description": "the submission", "content": {"application/json": {"schema": view}}}, "401": {"description": "no live token"}, "403": {"description": "not an admin"}, "404": {"description": "unknown submission or action"}, "409": {"description": "queued or running, or without files (rescore)"}}}},
            "/api/challenges/{id}/leaderboard": {"get": {"summary": "Scored submissions, best first", "parameters": [id, {"name": "official", "in": "query", "schema": {"type": "boolean"}}, {"name": "limit", "in": "query", "schema": {"type": "integer"}}], "responses": {"200": {"description": "{entries: [...]}"}}}},
            "/api/submissions/{id}": {"get": {"summary": "Submission status, metrics and logs", "parameters": [id], "responses": {"200": {"description": "the submission", "content": {"application/json": {"schema": view}}}, "404": {"description": "unknown submission"}}}},
            "/challenges/{id}/pareto.svg": {"get": {"summary": "Accuracy-vs-params Pareto plot", "parameters": [id], "responses": {"200": {"description": "image/svg+xml"}}}}
        },
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "an API token from `proctor user token NAME` (or the web session cookie with the form's CSRF token)"}},
            "schemas": {"Submission": {"type": "object", "properties": {
            "submission_id": {"type": "string"},
            "status": {"type": "string", "enum": ["queued", "running", "scored", "over_budget", "rejected", "error", "timeout", "oom"]},
            "score": {"type": "number", "nullable": true},
            "accuracy": {"type": "number", "nullable": true},
            "params": {"type": "integer", "nullable": true, "description": "every stored tensor element (normalization running statistics excepted)"},
            "params_trainable": {"type": "integer", "nullable": true, "description": "the original rule: parameters with requires_grad"},
            "param_limit": {"type": "integer"},
            "baseline_accuracy": {"type": "number"},
            "oracle_accuracy": {"type": "number", "nullable": true},
            "error": {"type": "string", "nullable": true},
            "params_note": {"type": "string", "nullable": true},
            "participant": {"type": "string", "description": "the submitting account"},
            "hidden": {"type": "boolean"},
            "disqualified": {"type": "boolean"},
            "logs": {"type": "string"}}}}}
    }))
}
