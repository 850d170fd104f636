//! The login and logout pages: `GET/POST /login` signs a browser in with a name and a
//! password (an HttpOnly, SameSite=Strict session cookie), `POST /logout` (with the
//! session's CSRF token) signs it out. Merge them into a server with [`router`].
//!
//! A login form cannot carry a CSRF token (there is no session yet), so a POST whose
//! `Origin` is another site is refused: a foreign page cannot sign a visitor into the
//! attacker's account.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;

use crate::http::{clear_cookie, session_cookie, ClientAddr};
use crate::{AccountError, Accounts, Caller};

/// `/login` and `/logout`, with their state applied.
pub fn router<S: Clone + Send + Sync + 'static>(accounts: Accounts) -> Router<S> {
    Router::new()
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .with_state(accounts)
}

/// Escapes text for HTML.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// Where to go after signing in: a path of this site only (never `//host` or a URL).
fn local_path(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n,
        _ => "/me",
    }
}

fn page(message: &str, next: &str) -> Html<String> {
    let message = if message.is_empty() {
        String::new()
    } else {
        format!("<p class=\"error\" role=\"alert\">{}</p>", escape(message))
    };
    Html(format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Log in · proctor</title>
<style>body{{font-family:system-ui,sans-serif;max-width:420px;margin:3em auto;padding:0 1em}}label{{display:block;margin:.6em 0}}.error{{color:#b00}}</style></head>
<body><h1>Log in</h1>{message}
<form method="post" action="/login">
<input type="hidden" name="next" value="{next}">
<label>Name <input type="text" name="name" autocomplete="username" required></label>
<label>Password <input type="password" name="password" autocomplete="current-password" required></label>
<button type="submit">Log in</button></form>
<p>No account? An operator creates one with <code>proctor user add NAME --password-stdin</code>.</p></body></html>"#,
        next = escape(next)
    ))
}

#[derive(Deserialize)]
struct Next {
    next: Option<String>,
}

async fn login_page(Query(q): Query<Next>) -> Html<String> {
    page("", local_path(q.next.as_deref()))
}

#[derive(Deserialize)]
struct LoginForm {
    name: String,
    password: String,
    next: Option<String>,
}

/// Whether a POST comes from a page of this site (or from no page: curl, scripts).
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let origin_host = origin.split_once("://").map_or("", |(_, h)| h);
    !host.is_empty() && origin_host.eq_ignore_ascii_case(host)
}

async fn login(
    State(accounts): State<Accounts>,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
    Form(form): Form<LoginForm>,
) -> Response {
    let next = local_path(form.next.as_deref()).to_string();
    if !same_origin(&headers) {
        return (
            StatusCode::FORBIDDEN,
            page("cross-site login refused", &next),
        )
            .into_response();
    }
    // The client's address keys the throttle (with the name): the one the connection
    // loop resolved (behind a trusted proxy, the forwarded client), else the peer;
    // unknown when the server was started without either.
    let client = match (
        extensions.get::<ClientAddr>(),
        extensions.get::<ConnectInfo<SocketAddr>>(),
    ) {
        (Some(ClientAddr(ip)), _) => ip.to_string(),
        (None, Some(ConnectInfo(peer))) => peer.ip().to_string(),
        (None, None) => "unknown".to_string(),
    };
    match accounts.login(&form.name, &form.password, &client).await {
        Ok(session) => (
            [(
                header::SET_COOKIE,
                session_cookie(&session.secret, accounts.secure_cookies()),
            )],
            Redirect::to(&next),
        )
            .into_response(),
        Err(e @ (AccountError::BadLogin | AccountError::Throttled(_))) => {
            let status = match e {
                AccountError::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
                _ => StatusCode::UNAUTHORIZED,
            };
            (status, page(&e.to_string(), &next)).into_response()
        }
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            page(&e.to_string(), &next),
        )
            .into_response(),
    }
}

#[derive(Deserialize)]
struct LogoutForm {
    csrf: Option<String>,
}

async fn logout(
    State(accounts): State<Accounts>,
    caller: Caller,
    Form(form): Form<LogoutForm>,
) -> Response {
    let Some(crate::http::Credential::Cookie(session)) = &caller.credential else {
        return Redirect::to("/login").into_response();
    };
    if !caller.csrf_ok(form.csrf.as_deref()) {
        return (
            StatusCode::FORBIDDEN,
            "the form's CSRF token is missing or wrong: reload the page",
        )
            .into_response();
    }
    if let Err(e) = accounts.logout(session).await {
        return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
    }
    (
        [(header::SET_COOKIE, clear_cookie(accounts.secure_cookies()))],
        Redirect::to("/login"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_is_a_local_path_only() {
        assert_eq!(local_path(Some("/challenges/x")), "/challenges/x");
        for bad in ["//evil.example/", "https://evil.example/", "/\\evil", "me"] {
            assert_eq!(local_path(Some(bad)), "/me", "{bad}");
        }
        assert_eq!(local_path(None), "/me");
    }

    #[test]
    fn cross_site_posts_are_told_apart() {
        let h = |pairs: &[(&'static str, &'static str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.insert(*k, v.parse().unwrap());
            }
            m
        };
        assert!(same_origin(&h(&[("host", "127.0.0.1:8080")])));
        assert!(same_origin(&h(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080")
        ])));
        assert!(!same_origin(&h(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "https://evil.example")
        ])));
        assert!(!same_origin(&h(&[("origin", "null")])));
    }
}
