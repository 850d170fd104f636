//! Secrets: random tokens with a prefix that says what they open, their SHA-256 digests
//! (the only form stored or kept in memory), and constant-time comparison.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What a token opens, by its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `pct_…`: an account's API token.
    Api,
    /// `pcs_…`: a web session (the cookie).
    Session,
    /// `pce_…`: one gym episode.
    Episode,
}

impl Kind {
    /// The prefix of its tokens.
    pub fn prefix(self) -> &'static str {
        match self {
            Kind::Api => "pct_",
            Kind::Session => "pcs_",
            Kind::Episode => "pce_",
        }
    }

    /// The kind a presented token claims by its prefix.
    pub fn of(token: &str) -> Option<Kind> {
        [Kind::Api, Kind::Session, Kind::Episode]
            .into_iter()
            .find(|k| token.starts_with(k.prefix()))
    }

    /// How the store names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Api => "api",
            Kind::Session => "session",
            Kind::Episode => "episode",
        }
    }
}

/// A fresh token of `kind`: its prefix and 256 random bits (URL-safe base64).
pub fn generate(kind: Kind) -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{}{}", kind.prefix(), URL_SAFE_NO_PAD.encode(bytes))
}

/// The SHA-256 digest of a token, in hex: what is stored and compared.
pub fn digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether `token` hashes to `expected` (a [`digest`]), compared in constant time.
pub fn matches(token: &str, expected: &str) -> bool {
    digest(token).as_bytes().ct_eq(expected.as_bytes()).into()
}

/// The CSRF token of a session: derived from the session secret (which only the cookie
/// carries), so a cross-site form cannot know it and the server keeps no extra state.
pub fn csrf(session: &str) -> String {
    digest(&format!("csrf:{session}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_random_and_matched_by_digest() {
        let a = generate(Kind::Api);
        let b = generate(Kind::Api);
        assert_ne!(a, b);
        assert!(a.starts_with("pct_") && a.len() == 4 + 43, "{a}");
        assert_eq!(Kind::of(&a), Some(Kind::Api));
        assert_eq!(Kind::of(&generate(Kind::Episode)), Some(Kind::Episode));
        assert_eq!(Kind::of("Bearer x"), None);
        let d = digest(&a);
        assert!(matches(&a, &d));
        assert!(!matches(&b, &d));
        assert!(!d.contains(&a[4..]));
        assert_ne!(csrf(&a), csrf(&b));
    }
}
