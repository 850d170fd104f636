//! The accounts' side of the challenge web: who may see a submission, the participant
//! page (`/me`, `/api/me`: one's own submissions with status and each rejection's
//! reason), the upload form of a signed-in participant, and admins' moderation
//! (`POST /api/submissions/{id}/{hide|disqualify|restore|rescore}`, and the same as
//! forms on the submission page).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use proctor_accounts::Caller;
use proctor_engine::Backend;
use proctor_store::{Filter, Moderation, Submission};
use serde::Deserialize;
use serde_json::json;

use crate::definition::Challenge;
use crate::pareto::escape;
use crate::platform::Platform;
use crate::web::{int, num, page, WebError, WebResult};

/// The routes of this module (state: the platform).
pub(crate) fn routes<B: Backend + Clone + Send + Sync + 'static>() -> Router<Platform<B>> {
    Router::new()
        .route("/me", get(me_page::<B>))
        .route("/api/me", get(me_api::<B>))
        .route("/api/submissions/{id}/{action}", post(moderate_api::<B>))
        .route("/submissions/{id}/{action}", post(moderate_form::<B>))
}

/// Whether `caller` may see `s`: its owner and admins always; others an account's
/// submission that is not hidden (a private local run is nobody else's business).
pub(crate) fn may_see(s: &Submission, caller: &Caller) -> bool {
    let owner = caller
        .account
        .as_ref()
        .is_some_and(|a| s.account_id.as_deref() == Some(a.id.as_str()));
    owner || caller.is_admin() || (s.account_id.is_some() && !s.hidden)
}

/// The submission `id` if `caller` may see it; the same 404 as a missing one otherwise.
pub(crate) async fn visible<B: Backend + Clone + Send + Sync + 'static>(
    p: &Platform<B>,
    id: &str,
    caller: &Caller,
) -> WebResult<Submission> {
    let s = p.get(id).await?;
    if may_see(&s, caller) {
        Ok(s)
    } else {
        Err(crate::Error::UnknownSubmission(id.to_string()).into())
    }
}

pub(crate) fn csrf_refused() -> WebError {
    WebError::new(
        StatusCode::FORBIDDEN,
        "the form's CSRF token is missing or wrong: reload the page and submit again",
    )
}

/// The upload form of the challenge page: for a signed-in participant (with the
/// session's CSRF token), a link to log in otherwise.
pub(crate) fn upload_form(c: &Challenge, caller: &Caller) -> String {
    let (Some(account), Some(csrf)) = (&caller.account, caller.csrf_token()) else {
        return format!(
            "<p><a href=\"/login?next=/challenges/{id}\">Log in</a> to submit through this page, or send the file with a token: <code>curl -H 'Authorization: Bearer TOKEN' -F file=@solution.py …/api/challenges/{id}/submissions</code>.</p>",
            id = escape(&c.id)
        );
    };
    format!(
        r#"<form method="post" action="/challenges/{id}/submit" enctype="multipart/form-data">
<input type="hidden" name="csrf" value="{csrf}">
<p>Submitting as <b>{who}</b> · up to {per_day} official submissions a day (the day resets at 00:00 UTC), {per_hour} uploads an hour</p>
<label>File (.zip project or solution.py) <input type="file" name="file" required></label><br>
<label><input type="checkbox" name="official" value="true"> official data</label>
<button type="submit">Submit</button></form>"#,
        id = escape(&c.id),
        csrf = escape(&csrf),
        who = escape(&account.name),
        per_day = c.limits.official_per_day,
        per_hour = c.limits.submissions_per_hour,
    )
}

/// ` · hidden`, ` · disqualified`: what an admin decided.
pub(crate) fn flags(s: &Submission) -> &'static str {
    match (s.hidden, s.disqualified) {
        (true, _) => " · <b class=\"flag\">hidden by an admin</b>",
        (_, true) => " · <b class=\"flag\">disqualified by an admin</b>",
        _ => "",
    }
}

/// An admin's buttons on the submission page.
pub(crate) fn moderation_forms(s: &Submission, caller: &Caller) -> String {
    let (true, Some(csrf)) = (caller.is_admin(), caller.csrf_token()) else {
        return String::new();
    };
    let buttons: String = ["hide", "disqualify", "restore", "rescore"]
        .iter()
        .map(|action| {
            format!(
                "<form method=\"post\" action=\"/submissions/{id}/{action}\" style=\"display:inline;border:0;padding:0\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button type=\"submit\">{action}</button></form> ",
                id = escape(&s.id),
                csrf = escape(&csrf),
            )
        })
        .collect();
    format!("<h2>Moderation</h2><p>{buttons}</p>")
}

async fn me_page<B: Backend + Clone + Send + Sync + 'static>(
    State(p): State<Platform<B>>,
    caller: Caller,
) -> WebResult<Response> {
    let Some(account) = &caller.account else {
        return Ok(Redirect::to("/login?next=/me").into_response());
    };
    let rows = mine(&p, &account.id).await?;
    let mut table = String::from("<table id=\"my-submissions\"><tr><th>submission</th><th>challenge</th><th>data</th><th>status</th><th>score</th><th>accuracy</th><th>params</th><th>reason</th></tr>");
    for s in &rows {
        table.push_str(&format!(
            "<tr><td><a href=\"/submissions/{id}\">{name}</a>{flags}</td><td>{c}</td><td>{data}</td><td class=\"status-{st}\">{st}</td><td>{score}</td><td>{acc}</td><td>{params}</td><td class=\"reason\">{reason}</td></tr>",
            id = escape(&s.id),
            name = escape(s.name.as_deref().unwrap_or(&s.file_name)),
            flags = flags(s),
            c = escape(&s.challenge),
            data = if s.official { "official" } else { "public" },
            st = escape(&s.status),
            score = num(s.score, 2),
            acc = num(s.accuracy, 4),
            params = int(s.params),
            reason = escape(s.error.as_deref().unwrap_or("")),
        ));
    }
    if rows.is_empty() {
        table.push_str("<tr><td colspan=\"8\">No submissions yet: pick a <a href=\"/challenges\">challenge</a></td></tr>");
    }
    table.push_str("</table>");
    let body = format!(
        r#"<h1>{who}</h1><p>Signed in as <b>{who}</b> ({role}).</p>
<form method="post" action="/logout"><input type="hidden" name="csrf" value="{csrf}"><button type="submit">Log out</button></form>
<h2>My submissions</h2>{table}"#,
        who = escape(&account.name),
        role = account.role.as_str(),
        csrf = escape(&caller.csrf_token().unwrap_or_default()),
    );
    Ok(page(&account.name, &body).into_response())
}

async fn mine<B: Backend + Clone + Send + Sync + 'static>(
    p: &Platform<B>,
    account_id: &str,
) -> WebResult<Vec<Submission>> {
    let filter = Filter {
        account_id: Some(account_id),
        ..Filter::default()
    };
    Ok(p.store().list(&filter, 500).await?)
}

async fn me_api<B: Backend + Clone + Send + Sync + 'static>(
    State(p): State<Platform<B>>,
    caller: Caller,
) -> WebResult<Json<serde_json::Value>> {
    let account = caller.signed_in()?;
    let list: Vec<_> = mine(&p, &account.id)
        .await?
        .iter()
        .map(|s| {
            let mut v = serde_json::to_value(p.view(s)).unwrap_or_default();
            v.as_object_mut().map(|o| o.remove("logs"));
            v["created_ms"] = json!(s.created_ms);
            v
        })
        .collect();
    Ok(Json(json!({ "account": account, "submissions": list })))
}

/// Applies `action` to submission `id` for an admin (401 without an account, 403 for a
/// participant, 404 for an unknown id or action, 409 when it cannot be rescored).
async fn moderate<B: Backend + Clone + Send + Sync + 'static>(
    p: &Platform<B>,
    caller: &Caller,
    id: &str,
    action: &str,
    csrf: Option<&str>,
) -> WebResult<Submission> {
    caller.signed_in()?;
    if !caller.is_admin() {
        return Err(WebError::new(
            StatusCode::FORBIDDEN,
            "only an admin may hide, disqualify, restore or rescore a submission",
        ));
    }
    if !caller.csrf_ok(csrf) {
        return Err(csrf_refused());
    }
    let s = match (action, Moderation::parse(action)) {
        ("rescore", _) => p.rescore(id).await?,
        (_, Some(decision)) => p.moderate(id, decision).await?,
        _ => {
            return Err(WebError::new(
                StatusCode::NOT_FOUND,
                format!("unknown action {action:?}: use hide, disqualify, restore or rescore"),
            ))
        }
    };
    tracing::info!(
        "{} {action} submission {id}",
        caller.account.as_ref().map_or("", |a| a.name.as_str())
    );
    Ok(s)
}

async fn moderate_api<B: Backend + Clone + Send + Sync + 'static>(
    State(p): State<Platform<B>>,
    caller: Caller,
    Path((id, action)): Path<(String, String)>,
) -> WebResult<Json<crate::SubmissionView>> {
    let s = moderate(&p, &caller, &id, &action, None).await?;
    Ok(Json(p.view(&s)))
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: Option<String>,
}

async fn moderate_form<B: Backend + Clone + Send + Sync + 'static>(
    State(p): State<Platform<B>>,
    caller: Caller,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> WebResult<Redirect> {
    moderate(&p, &caller, &id, &action, form.csrf.as_deref()).await?;
    Ok(Redirect::to(&format!("/submissions/{id}")))
}
