//! Credentials on HTTP. A request presents at most one secret, found in this order:
//! - `Authorization: Bearer TOKEN` (the CLI, scripts, MCP clients);
//! - `Authorization: Basic …` whose password (or, with an empty password, user name) is
//!   the token: what a client does with a URL like `http://token:TOKEN@host/`;
//! - the `proctor_session` cookie (the web pages).
//!
//! A cookie is sent by the browser on its own, so state-changing forms must also carry
//! the session's CSRF token ([`Caller::csrf_ok`]); headers are never sent cross-site
//! without the page's script asking, so they need none.

use axum::http::{header, HeaderMap};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use subtle::ConstantTimeEq;

use crate::secret::{self, Kind};
use crate::{Account, SESSION_TTL};

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
/// SameSite=Strict (no cross-site request carries it).
pub fn session_cookie(secret: &str) -> String {
    format!(
        "{COOKIE}={secret}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        SESSION_TTL.as_secs()
    )
}

/// The `Set-Cookie` value that signs a browser out.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
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
