//! `proctor user add|token|list|revoke|password`: accounts, for operators. Passwords are
//! read from stdin (never from the command line, where `ps` shows them).

use std::io::BufRead;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use proctor_accounts::{Accounts, Role};
use proctor_store::Store;
use serde_json::json;

use crate::cli::{DatabaseArgs, UserCommand};

/// The accounts of the platform's database.
pub(super) async fn open(db: &DatabaseArgs) -> Result<Accounts> {
    let store = match (&db.database_url, &db.database) {
        (Some(url), _) => Store::open_url(url).await?,
        (None, Some(path)) => Store::open(path).await?,
        (None, None) => {
            let home = proctor_runtime::proctor_home();
            Store::open(&home.join("challenge").join("proctor.db")).await?
        }
    };
    Ok(Accounts::new(store))
}

fn read_password() -> Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    let password = line.trim_end_matches(['\n', '\r']).to_string();
    if password.is_empty() {
        bail!(
            "no password on stdin: pipe one in, e.g. `read -rs P; echo \"$P\" | proctor user ...`"
        );
    }
    Ok(password)
}

pub fn run(command: UserCommand) -> Result<ExitCode> {
    super::tokio()?.block_on(async {
        match command {
            UserCommand::Add {
                name,
                admin,
                password_stdin,
                db,
            } => {
                let password = password_stdin.then(read_password).transpose()?;
                let role = if admin {
                    Role::Admin
                } else {
                    Role::Participant
                };
                let account = open(&db)
                    .await?
                    .add_user(&name, role, password.as_deref())
                    .await?;
                eprintln!("created {} ({})", account.name, role.as_str());
            }
            UserCommand::Token { name, label, db } => {
                let token = open(&db).await?.create_token(&name, &label).await?;
                eprintln!(
                    "token {label:?} for {name} (shown once; pass it as --token or PROCTOR_TOKEN):"
                );
                println!("{token}");
            }
            UserCommand::List { json, db } => list(&open(&db).await?, json).await?,
            UserCommand::Revoke { name, label, db } => {
                let n = open(&db).await?.revoke(&name, label.as_deref()).await?;
                eprintln!("revoked {n} token(s) of {name}");
            }
            UserCommand::Password { name, db } => {
                let password = read_password()?;
                open(&db).await?.set_password(&name, &password).await?;
                eprintln!("password of {name} changed");
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

async fn list(accounts: &Accounts, json: bool) -> Result<()> {
    let users = accounts.list().await?;
    if json {
        let users: Vec<_> = users
            .iter()
            .map(|(u, tokens)| json!({"name": u.name, "role": u.role, "created_ms": u.created_ms, "tokens": tokens}))
            .collect();
        return super::print_json(&json!({ "users": users }));
    }
    for (user, tokens) in users {
        println!("{} ({})", user.name, user.role);
        for t in tokens {
            let state = if t.revoked_ms.is_some() {
                "revoked"
            } else {
                "live"
            };
            let used = t.last_used_ms.map_or("never used".to_string(), |ms| {
                format!("last used at {ms} ms")
            });
            println!("  token {:?}: {state}, {used}", t.name);
        }
    }
    Ok(())
}
