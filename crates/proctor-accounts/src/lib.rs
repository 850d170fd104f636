/*!
Who may act on proctor. Users have a role (`participant` or `admin`), a password stored
only as an argon2id hash, and API tokens (`pct_…`, shown once, stored as SHA-256 digests,
named, revocable, with a last-used time). The web signs in with a session token (`pcs_…`)
in an HttpOnly, SameSite=Strict cookie; forms carry a CSRF token derived from it. The
gym hands out episode tokens (`pce_…`, see [`secret`]) that open one episode only.

Front doors take a [`Caller`] as an axum extractor (or call [`Accounts::caller`] with a
request's headers, see [`http`]) and decide from it what it may do; [`web`] has the
login and logout pages.

```no_run
# async fn demo(store: proctor_store::Store) -> Result<(), proctor_accounts::AccountError> {
use proctor_accounts::{Accounts, Role};
let accounts = Accounts::new(store);
accounts.add_user("alice", Role::Participant, Some("correct horse")).await?;
let token = accounts.create_token("alice", "laptop").await?; // shown once
assert_eq!(accounts.authenticate(&token).await?.unwrap().name, "alice");
# Ok(()) }
```
*/
#![deny(missing_docs)]

pub mod http;
pub mod secret;
mod throttle;
pub mod web;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use proctor_store::{Store, StoreError, Token, User};
use serde::Serialize;

pub use http::Caller;
use secret::Kind;

/// How long a web session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Minimum password length.
pub const MIN_PASSWORD: usize = 8;
/// Skip writing `last_used_ms` when it is more recent than this (a write per request
/// would cost every authenticated call a database write).
const TOUCH_EVERY_MS: i64 = 60_000;

/// Errors of accounts.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No such user.
    #[error("no user named {0:?}")]
    UnknownUser(String),
    /// The name is taken.
    #[error("a user named {0:?} already exists")]
    Exists(String),
    /// A name or password that cannot be used.
    #[error("{0}")]
    Invalid(String),
    /// Wrong name or password (which one is not said).
    #[error("wrong name or password")]
    BadLogin,
    /// Too many failed logins from this address for this name.
    #[error("too many failed logins: retry in {} s", .0.as_secs().max(1))]
    Throttled(Duration),
    /// Hashing failed.
    #[error("password hashing failed: {0}")]
    Hash(String),
}

/// A role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Submits, owns episodes and reviews.
    Participant,
    /// Also hides, disqualifies and rescores submissions, sees every review.
    Admin,
}

impl Role {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Participant => "participant",
            Role::Admin => "admin",
        }
    }

    /// Parses `participant` or `admin`.
    pub fn parse(s: &str) -> Result<Role, AccountError> {
        match s {
            "participant" => Ok(Role::Participant),
            "admin" => Ok(Role::Admin),
            _ => Err(AccountError::Invalid(format!(
                "unknown role {s:?}: use participant or admin"
            ))),
        }
    }
}

/// An authenticated account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Account {
    /// User id.
    pub id: String,
    /// Login name.
    pub name: String,
    /// Role.
    pub role: Role,
}

impl Account {
    fn of(u: &User) -> Account {
        Account {
            id: u.id.clone(),
            name: u.name.clone(),
            // An unknown stored role grants nothing beyond a participant's.
            role: Role::parse(&u.role).unwrap_or(Role::Participant),
        }
    }

    /// Whether this account is an admin.
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

/// A signed-in web session: the cookie's secret and the CSRF token of its forms.
#[derive(Debug, Clone)]
pub struct Session {
    /// The `pcs_…` secret (the cookie value).
    pub secret: String,
    /// The form token.
    pub csrf: String,
    /// Who.
    pub account: Account,
}

/// The accounts of a store (cheap to clone).
#[derive(Clone)]
pub struct Accounts {
    store: Store,
    throttle: Arc<throttle::Throttle>,
    secure_cookies: bool,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn hash_password(password: &str) -> Result<String, AccountError> {
    if password.chars().count() < MIN_PASSWORD {
        return Err(AccountError::Invalid(format!(
            "a password needs at least {MIN_PASSWORD} characters"
        )));
    }
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AccountError::Hash(e.to_string()))
}

fn valid_name(name: &str) -> Result<(), AccountError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(AccountError::Invalid(format!(
            "invalid name {name:?}: 1-64 letters, digits, '-', '_' or '.'"
        )))
    }
}

impl Accounts {
    /// The accounts kept in `store`.
    pub fn new(store: Store) -> Accounts {
        Accounts {
            store,
            throttle: Arc::default(),
            secure_cookies: false,
        }
    }

    /// Marks session cookies `Secure` (for a server behind TLS: browsers then send them
    /// over HTTPS only).
    pub fn with_secure_cookies(mut self, secure: bool) -> Accounts {
        self.secure_cookies = secure;
        self
    }

    /// Whether session cookies are `Secure`.
    pub fn secure_cookies(&self) -> bool {
        self.secure_cookies
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Creates a user (with a password to sign in on the web, or none: tokens only).
    pub async fn add_user(
        &self,
        name: &str,
        role: Role,
        password: Option<&str>,
    ) -> Result<Account, AccountError> {
        valid_name(name)?;
        let hash = password.map(hash_password).transpose()?;
        let user = User {
            id: uuid::Uuid::new_v4().to_string(),
            name: name.to_string(),
            role: role.as_str().to_string(),
            created_ms: now_ms(),
        };
        if !self.store.insert_user(&user, hash.as_deref()).await? {
            return Err(AccountError::Exists(name.to_string()));
        }
        Ok(Account::of(&user))
    }

    async fn user(&self, name: &str) -> Result<(User, Option<String>), AccountError> {
        self.store
            .user_by_name(name)
            .await?
            .ok_or_else(|| AccountError::UnknownUser(name.to_string()))
    }

    /// Sets a user's password.
    pub async fn set_password(&self, name: &str, password: &str) -> Result<(), AccountError> {
        let (user, _) = self.user(name).await?;
        self.store
            .set_password_hash(&user.id, &hash_password(password)?)
            .await?;
        Ok(())
    }

    /// A new API token for `name`, labelled `label`: the only time it is seen in clear.
    pub async fn create_token(&self, name: &str, label: &str) -> Result<String, AccountError> {
        let (user, _) = self.user(name).await?;
        self.issue(&user, Kind::Api, label, None).await
    }

    async fn issue(
        &self,
        user: &User,
        kind: Kind,
        label: &str,
        expires_ms: Option<i64>,
    ) -> Result<String, AccountError> {
        let token = secret::generate(kind);
        self.store
            .insert_token(&Token {
                id: uuid::Uuid::new_v4().to_string(),
                user_id: user.id.clone(),
                kind: kind.as_str().to_string(),
                name: label.to_string(),
                token_hash: secret::digest(&token),
                created_ms: now_ms(),
                last_used_ms: None,
                expires_ms,
                revoked_ms: None,
            })
            .await?;
        Ok(token)
    }

    /// Revokes `name`'s API tokens labelled `label` (all of them when `None`) and, with
    /// all of them, its web sessions; returns how many tokens were revoked.
    pub async fn revoke(&self, name: &str, label: Option<&str>) -> Result<u64, AccountError> {
        let (user, _) = self.user(name).await?;
        let n = self.store.revoke_tokens(&user.id, "api", label).await?;
        if label.is_none() {
            self.store.revoke_tokens(&user.id, "session", None).await?;
        }
        Ok(n)
    }

    /// Every user with their API tokens (digests are never serialized).
    pub async fn list(&self) -> Result<Vec<(User, Vec<Token>)>, AccountError> {
        let mut out = Vec::new();
        for user in self.store.users().await? {
            let tokens = self.store.tokens(&user.id, "api").await?;
            out.push((user, tokens));
        }
        Ok(out)
    }

    /// The account a presented API or session token belongs to, if it is live.
    pub async fn authenticate(&self, token: &str) -> Result<Option<Account>, AccountError> {
        if !matches!(Kind::of(token), Some(Kind::Api | Kind::Session)) {
            return Ok(None);
        }
        let Some((t, user)) = self.store.live_token(&secret::digest(token)).await? else {
            return Ok(None);
        };
        if t.last_used_ms
            .is_none_or(|last| now_ms() - last > TOUCH_EVERY_MS)
        {
            self.store.touch_token(&t.id).await?;
        }
        Ok(Some(Account::of(&user)))
    }

    /// Whether the API token or session whose digest is `token_hash` is still live (not
    /// revoked, not expired): what a credential issued under it (an episode token)
    /// depends on.
    pub async fn digest_live(&self, token_hash: &str) -> Result<bool, AccountError> {
        Ok(self.store.live_token(token_hash).await?.is_some())
    }

    /// Signs in with a password from `client` (an address): a new session, or
    /// [`AccountError::BadLogin`] / [`AccountError::Throttled`].
    pub async fn login(
        &self,
        name: &str,
        password: &str,
        client: &str,
    ) -> Result<Session, AccountError> {
        if let Some(wait) = self.throttle.wait(name, client) {
            return Err(AccountError::Throttled(wait));
        }
        let found = self.store.user_by_name(name).await?;
        // An unknown name (or one without a password) still costs one verification, so
        // the answer's timing does not tell which names exist.
        let hash = match &found {
            Some((_, Some(hash))) => hash.as_str(),
            _ => dummy_hash(),
        };
        let verified = verify(password, hash);
        let user = match &found {
            Some((user, Some(_))) if verified => user,
            _ => {
                self.throttle.failed(name, client);
                return Err(AccountError::BadLogin);
            }
        };
        self.throttle.succeeded(name, client);
        let expires = now_ms() + SESSION_TTL.as_millis() as i64;
        let secret = self
            .issue(user, Kind::Session, "web", Some(expires))
            .await?;
        Ok(Session {
            csrf: secret::csrf(&secret),
            secret,
            account: Account::of(user),
        })
    }

    /// Ends a web session.
    pub async fn logout(&self, session: &str) -> Result<(), AccountError> {
        self.store
            .revoke_token_hash(&secret::digest(session))
            .await?;
        Ok(())
    }

    /// Who is asking, from a request's headers: see [`http::credential`].
    pub async fn caller(&self, headers: &axum::http::HeaderMap) -> Result<Caller, AccountError> {
        let credential = http::credential(headers);
        let account = match &credential {
            Some(c) => self.authenticate(c.secret()).await?,
            None => None,
        };
        Ok(Caller {
            account,
            credential,
        })
    }
}

/// A hash no password is checked against for real (see [`Accounts::login`]).
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| hash_password(&secret::generate(Kind::Session)).unwrap_or_default())
}

fn verify(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}
