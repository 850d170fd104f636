//! Credentials on HTTP. A request presents at most one secret, found in this order:
//! - `Authorization: Bearer TOKEN` (the CLI, scripts, MCP clients);
//! - `Authorization: Basic …` whose password (or, with an empty password, user name) is
//!   the token: what a client does with a URL like `http://token:TOKEN@host/`;
//! - the `proctor_session` cookie (the web pages).
//!
//! A cookie is sent by the browser on its own, so state-changing forms must also carry
//! the session's CSRF token ([`Caller::csrf_ok`]); headers are never sent cross-site
//! without the page's script asking, so they need none.
//!
//! In a handler, take a [`Caller`] as an extractor (the router's state must give the
//! [`Accounts`](crate::Accounts) through `FromRef`), and [`Caller::signed_in`] when only
//! an account may act:
//!
//! ```no_run
//! use axum::response::IntoResponse;
//! use proctor_accounts::{Accounts, Caller};
//!
//! async fn mine(caller: Caller) -> axum::response::Response {
//!     match caller.signed_in() {
//!         Ok(account) => format!("hello {}", account.name).into_response(),
//!         Err(unauthorized) => unauthorized.into_response(), // 401
//!     }
//! }
//! let app: axum::Router = axum::Router::new()
//!     .route("/mine", axum::routing::get(mine))
//!     .with_state(Accounts::new(todo!("a proctor_store::Store")));
//! ```

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use subtle::ConstantTimeEq;

use crate::secret::{self, Kind};
use crate::{Account, Accounts, SESSION_TTL};

/// The address of the client a request came from, as a request extension: the TCP peer,
/// or, when the peer is a proxy the operator trusts (`--trusted-proxy`), the client that
/// proxy names in `X-Forwarded-For`. Set by the server's connection loop; login
/// throttling keys on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub std::net::IpAddr);

/// The session cookie's name.
pub const COOKIE: &str = "proctor_session";

/// A secret presented by a request, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// From the `Authorization` header (Bearer or Basic).
    Header(String),
    /// From the session cookie.
    Cookie(String),
}

impl Credential {
    /// The secret.
    pub fn secret(&self) -> &str {
        match self {
            Credential::Header(s) | Credential::Cookie(s) => s,
        }
    }
}

/// Who is asking: the account (when the secret is a live API or session token) and the
/// secret itself (e.g. an episode token, which only the gym can judge).
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// The signed-in account.
    pub account: Option<Account>,
    /// What was presented.
    pub credential: Option<Credential>,
}

impl Caller {
    /// An episode token presented by the request (`pce_…`).
    pub fn episode_token(&self) -> Option<&str> {
        self.credential
            .as_ref()
            .map(Credential::secret)
            .filter(|s| Kind::of(s) == Some(Kind::Episode))
    }

    /// Whether a form's CSRF token matches this caller's session. Requests authenticated
    /// by a header pass (a cross-site page cannot set one); a session needs its token.
    pub fn csrf_ok(&self, form_token: Option<&str>) -> bool {
        match &self.credential {
            Some(Credential::Header(_)) => true,
            Some(Credential::Cookie(session)) => form_token
                .is_some_and(|t| secret::csrf(session).as_bytes().ct_eq(t.as_bytes()).into()),
            None => false,
        }
    }

    /// The CSRF token to embed in this caller's forms (sessions only).
    pub fn csrf_token(&self) -> Option<String> {
        match &self.credential {
            Some(Credential::Cookie(session)) if self.account.is_some() => {
                Some(secret::csrf(session))
            }
            _ => None,
        }
    }

    /// Whether the caller is an admin.
    pub fn is_admin(&self) -> bool {
        self.account.as_ref().is_some_and(Account::is_admin)
    }

    /// The signed-in account, or a 401 to answer with.
    pub fn signed_in(&self) -> Result<&Account, Unauthorized> {
        self.account.as_ref().ok_or(Unauthorized)
    }
}

/// A 401 answer: `WWW-Authenticate: Bearer` and a JSON error saying what to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unauthorized;

/// What [`Unauthorized`] says.
pub const UNAUTHORIZED: &str =
    "sign in: send `Authorization: Bearer TOKEN` (a token from `proctor user token NAME`) or log in at /login";

impl IntoResponse for Unauthorized {
    fn into_response(self) -> Response {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer realm=\"proctor\"")],
            axum::Json(serde_json::json!({ "error": UNAUTHORIZED })),
        )
            .into_response()
    }
}

/// Extracts who is asking (never rejects a request without credentials: that is the
/// handler's decision; a database failure is a 500).
impl<S> FromRequestParts<S> for Caller
where
    S: Send + Sync,
    Accounts: FromRef<S>,
{
    type Rejection = (StatusCode, String);

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Caller, Self::Rejection> {
        Accounts::from_ref(state)
            .caller(&parts.headers)
            .await
            .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
    }
}

/// The secret a request presents, if any (see the module documentation for the order).
pub fn credential(headers: &HeaderMap) -> Option<Credential> {
    if let Some(auth) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, value) = auth.trim().split_once(' ').unwrap_or((auth, ""));
        let value = value.trim();
        if scheme.eq_ignore_ascii_case("bearer") && !value.is_empty() {
            return Some(Credential::Header(value.to_string()));
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = STANDARD.decode(value).ok()?;
            let decoded = String::from_utf8(decoded).ok()?;
            let (user, password) = decoded.split_once(':').unwrap_or((&decoded, ""));
            let token = if password.is_empty() { user } else { password };
            return (!token.is_empty()).then(|| Credential::Header(token.to_string()));
        }
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| Credential::Cookie(v.to_string()))
}

/// The `Set-Cookie` value that signs a browser in: HttpOnly (no script reads it),
/// SameSite=Strict (no cross-site request carries it), and `Secure` (sent over HTTPS
/// only) when the server is behind TLS.
pub fn session_cookie(secret: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={secret}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{}",
        SESSION_TTL.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that signs a browser out.
pub fn clear_cookie(secure: bool) -> String {
    format!(
        "{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{}",
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn bearer_basic_and_cookie_are_read_in_order() {
        let t = "pct_abc";
        assert_eq!(
            credential(&headers(&[("authorization", "Bearer pct_abc")])),
            Some(Credential::Header(t.into()))
        );
        let basic = format!("Basic {}", STANDARD.encode("token:pct_abc"));
        assert_eq!(
            credential(&headers(&[("authorization", &basic)])),
            Some(Credential::Header(t.into()))
        );
        let user_only = format!("Basic {}", STANDARD.encode("pct_abc:"));
        assert_eq!(
            credential(&headers(&[("authorization", &user_only)])),
            Some(Credential::Header(t.into()))
        );
        let cookie = headers(&[("cookie", "a=b; proctor_session=pcs_x; c=d")]);
        assert_eq!(
            credential(&cookie),
            Some(Credential::Cookie("pcs_x".into()))
        );
        assert_eq!(credential(&headers(&[("cookie", "a=b")])), None);
    }

    #[test]
    fn cookies_are_secure_only_behind_tls() {
        for (cookie, secure) in [
            (session_cookie("pcs_s", false), false),
            (session_cookie("pcs_s", true), true),
            (clear_cookie(true), true),
        ] {
            assert!(
                cookie.contains("HttpOnly; SameSite=Strict; Path=/"),
                "{cookie}"
            );
            assert_eq!(cookie.ends_with("; Secure"), secure, "{cookie}");
        }
    }

    #[test]
    fn csrf_is_required_for_cookie_sessions_only() {
        let session = Caller {
            account: None,
            credential: Some(Credential::Cookie("pcs_s".into())),
        };
        assert!(!session.csrf_ok(None));
        assert!(!session.csrf_ok(Some("guess")));
        assert!(session.csrf_ok(Some(&secret::csrf("pcs_s"))));
        let header = Caller {
            account: None,
            credential: Some(Credential::Header("pct_t".into())),
        };
        assert!(header.csrf_ok(None));
        assert!(!Caller::default().csrf_ok(None));
    }
}
