//! `proctor user`: operators create users and tokens; the token printed once
//! authenticates, and after `revoke` it no longer does.

mod util;

use std::io::Write;
use std::process::{Command, Stdio};

use proctor_accounts::Accounts;
use proctor_store::Store;

fn proctor(db: &std::path::Path, args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = Command::new(util::proctor_bin())
        .args(args)
        .arg("--database")
        .arg(db)
        .env_remove("PROCTOR_DATABASE_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "proctor {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[tokio::test]
async fn operators_add_users_issue_list_and_revoke_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("proctor.db");
    let password = "a long web password";
    proctor(
        &db,
        &["user", "add", "alice", "--password-stdin"],
        &format!("{password}\n"),
    );
    proctor(&db, &["user", "add", "root", "--admin"], "");
    let out = proctor(&db, &["user", "token", "alice", "--label", "ci"], "");
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(token.starts_with("pct_"), "{token}");

    let accounts = Accounts::new(Store::open(&db).await.unwrap());
    assert_eq!(
        accounts.authenticate(&token).await.unwrap().unwrap().name,
        "alice"
    );
    accounts
        .login("alice", password, "127.0.0.1")
        .await
        .unwrap();

    let out = proctor(&db, &["user", "list", "--json"], "");
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = list.to_string();
    assert!(
        !text.contains(&token[4..]) && !text.contains(password),
        "{text}"
    );
    let users = list["users"].as_array().unwrap();
    assert_eq!(users.len(), 2);
    let alice = users.iter().find(|u| u["name"] == "alice").unwrap();
    assert_eq!(alice["role"], "participant");
    assert_eq!(alice["tokens"][0]["name"], "ci");
    assert!(alice["tokens"][0]["last_used_ms"].is_i64(), "{alice}");

    proctor(&db, &["user", "revoke", "alice", "--label", "ci"], "");
    assert!(accounts.authenticate(&token).await.unwrap().is_none());
    proctor(&db, &["user", "password", "alice"], "another password\n");
    accounts
        .login("alice", "another password", "127.0.0.1")
        .await
        .unwrap();
}
