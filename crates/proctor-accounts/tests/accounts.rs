//! Accounts on a real store, SQLite and Postgres: passwords, tokens, sessions,
//! revocation, and that no secret can be read back from the database.

use proctor_accounts::{AccountError, Accounts, Role};
use proctor_store::testing::TestPostgres;
use proctor_store::Store;

async fn sqlite() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("proctor.db")).await.unwrap();
    (store, dir)
}

async fn lifecycle(store: Store) {
    let accounts = Accounts::new(store.clone());
    let alice = accounts
        .add_user("alice", Role::Participant, Some("correct horse battery"))
        .await
        .unwrap();
    accounts.add_user("root", Role::Admin, None).await.unwrap();
    assert!(matches!(
        accounts
            .add_user("alice", Role::Admin, Some("another password"))
            .await,
        Err(AccountError::Exists(_))
    ));
    assert!(matches!(
        accounts.add_user("a b", Role::Admin, None).await,
        Err(AccountError::Invalid(_))
    ));
    assert!(matches!(
        accounts
            .add_user("bob", Role::Participant, Some("short"))
            .await,
        Err(AccountError::Invalid(_))
    ));

    let laptop = accounts.create_token("alice", "laptop").await.unwrap();
    let ci = accounts.create_token("alice", "ci").await.unwrap();
    let who = accounts.authenticate(&laptop).await.unwrap().unwrap();
    assert_eq!(who, alice);
    assert!(!who.is_admin());
    assert!(accounts.authenticate("pct_forged").await.unwrap().is_none());
    assert!(accounts
        .authenticate("not-a-token")
        .await
        .unwrap()
        .is_none());

    // Sessions: a wrong password says nothing about which part was wrong.
    assert!(matches!(
        accounts.login("alice", "wrong password", "10.0.0.1").await,
        Err(AccountError::BadLogin)
    ));
    assert!(matches!(
        accounts.login("nobody", "whatever1", "10.0.0.1").await,
        Err(AccountError::BadLogin)
    ));
    assert!(matches!(
        accounts.login("root", "", "10.0.0.1").await,
        Err(AccountError::BadLogin)
    ));
    let session = accounts
        .login("alice", "correct horse battery", "10.0.0.1")
        .await
        .unwrap();
    assert!(session.secret.starts_with("pcs_"));
    assert_eq!(
        accounts.authenticate(&session.secret).await.unwrap(),
        Some(alice.clone())
    );

    // Secrets are not recoverable from the database: no password, no token, not even
    // a token's random part, appears in any row.
    let rows = format!(
        "{}{}",
        store.dump_table("users").await.unwrap(),
        store.dump_table("tokens").await.unwrap()
    );
    assert!(rows.contains("$argon2id$"), "passwords are argon2id hashes");
    for secret in [
        "correct horse battery",
        &laptop,
        &laptop[4..],
        &ci[4..],
        &session.secret[4..],
    ] {
        assert!(
            !rows.contains(secret),
            "{secret} is readable in the database"
        );
    }

    // Revocation: one token by name, then everything (sessions included).
    assert_eq!(accounts.revoke("alice", Some("laptop")).await.unwrap(), 1);
    assert!(accounts.authenticate(&laptop).await.unwrap().is_none());
    assert!(accounts.authenticate(&ci).await.unwrap().is_some());
    let listed = accounts.list().await.unwrap();
    let (user, tokens) = listed.iter().find(|(u, _)| u.name == "alice").unwrap();
    assert_eq!(user.role, "participant");
    assert_eq!(tokens.len(), 2);
    assert!(tokens
        .iter()
        .any(|t| t.name == "ci" && t.last_used_ms.is_some()));
    assert!(tokens
        .iter()
        .any(|t| t.name == "laptop" && t.revoked_ms.is_some()));
    let json = serde_json::to_string(&tokens).unwrap();
    assert!(!json.contains("hash"), "{json}");
    accounts.revoke("alice", None).await.unwrap();
    assert!(accounts.authenticate(&ci).await.unwrap().is_none());
    assert!(accounts
        .authenticate(&session.secret)
        .await
        .unwrap()
        .is_none());

    // A new password replaces the old one; logout ends a session.
    accounts
        .set_password("alice", "new password!")
        .await
        .unwrap();
    assert!(accounts
        .login("alice", "correct horse battery", "10.0.0.2")
        .await
        .is_err());
    let s = accounts
        .login("alice", "new password!", "10.0.0.2")
        .await
        .unwrap();
    accounts.logout(&s.secret).await.unwrap();
    assert!(accounts.authenticate(&s.secret).await.unwrap().is_none());
    assert!(matches!(
        accounts.create_token("nobody", "x").await,
        Err(AccountError::UnknownUser(_))
    ));
}

#[tokio::test]
async fn sqlite_lifecycle() {
    let (store, _dir) = sqlite().await;
    lifecycle(store).await;
}

#[tokio::test]
async fn postgres_lifecycle() {
    let pg = TestPostgres::new().await;
    lifecycle(Store::open_url(&pg.url).await.unwrap()).await;
}

#[tokio::test]
async fn guessing_a_password_is_throttled_but_the_owner_can_still_sign_in() {
    let (store, _dir) = sqlite().await;
    let accounts = Accounts::new(store);
    accounts
        .add_user("carol", Role::Participant, Some("carol's password"))
        .await
        .unwrap();
    let mut throttled = false;
    for i in 0..8 {
        match accounts
            .login("carol", &format!("guess {i:04}"), "203.0.113.7")
            .await
        {
            Err(AccountError::BadLogin) => {}
            Err(AccountError::Throttled(wait)) => {
                assert!(!wait.is_zero());
                throttled = true;
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(throttled, "repeated guesses from one address slow down");
    // Even the right password waits from the attacker's address...
    assert!(matches!(
        accounts
            .login("carol", "carol's password", "203.0.113.7")
            .await,
        Err(AccountError::Throttled(_))
    ));
    // ...but the owner, elsewhere, is not locked out.
    accounts
        .login("carol", "carol's password", "198.51.100.4")
        .await
        .unwrap();
}
