//! The challenge platform on Postgres through the real binary: `--database-url
//! postgres://…` for `proctor challenge submit` and `proctor serve` (upload over HTTP,
//! kill -9 mid-evaluation, restart, a real status), with the rows checked in Postgres.
//!
//! The server: `PROCTOR_TEST_POSTGRES_URL` (`.ci/run` installs and starts Postgres and
//! exports it); without it, a throwaway cluster when Postgres is installed, and a failure
//! saying so when it is not (see `proctor_store::testing`).

#[path = "support/challenge_http.rs"]
mod challenge_http;
mod util;

use std::path::Path;
use std::process::Command;

use challenge_http::{
    account_token, assert_scored_after_restart, example, serve, upload_slow_and_kill_mid_evaluation,
};

use proctor_store::testing::TestPostgres;
use proctor_store::{Backend, Store};
use serde_json::Value;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The row of a submission, read from Postgres directly.
fn row(url: &str, id: &str) -> proctor_store::Submission {
    rt().block_on(async {
        let store = Store::open_url(url).await.unwrap();
        assert_eq!(store.backend(), Backend::Postgres);
        store
            .get(id)
            .await
            .unwrap()
            .expect("the row is in Postgres")
    })
}

#[test]
fn cli_submits_into_postgres() {
    let pg = rt().block_on(TestPostgres::new());
    let submit = |file: &Path| {
        let out = Command::new(util::proctor_bin())
            .args(["challenge", "submit", "imagenet-pareto-200k"])
            .arg(file)
            .args(["--json", "--database-url", &pg.url])
            .env_remove("PROCTOR_SERVER")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            stdout.lines().count(),
            1,
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            out.status.code(),
            serde_json::from_str::<Value>(&stdout).unwrap(),
        )
    };
    let (code, v) = submit(&example("strong/solution.py"));
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["status"], "scored", "{v}");
    let id = v["submission_id"].as_str().unwrap();
    let r = row(&pg.url, id);
    assert_eq!(r.status, "scored");
    assert_eq!((r.participant.as_str(), r.account_id), ("local", None));
    assert_eq!(r.attempts, 1);
    // (serde_json's default float parsing may differ from the stored f64 in the last ulp.)
    assert!((r.score.unwrap() - v["score"].as_f64().unwrap()).abs() < 1e-9);
    assert_eq!(r.params, v["params"].as_i64());
    assert!(r.result.is_some() && r.finished_ms.is_some());

    // A rejected upload is stored too, with its reason.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.zip");
    std::fs::write(&bad, b"not a zip").unwrap();
    let (code, v) = submit(&bad);
    assert_ne!(code, Some(0), "{v}");
    assert_eq!(v["status"], "rejected", "{v}");
    let r = row(&pg.url, v["submission_id"].as_str().unwrap());
    assert_eq!(r.status, "rejected");
    assert!(r.error.is_some());
}

#[test]
fn unreachable_database_url_fails_clearly_without_the_password() {
    let out = Command::new(util::proctor_bin())
        .args(["challenge", "submit", "imagenet-pareto-200k"])
        .arg(example("strong/solution.py"))
        .args([
            "--json",
            "--database-url",
            "mysql://user:hunter2@127.0.0.1/db",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("unsupported database URL"), "{all}");
    assert!(!all.contains("hunter2"), "{all}");
}

#[test]
fn serve_on_postgres_survives_kill_9_mid_evaluation() {
    let pg = rt().block_on(TestPostgres::new());
    let store = ["--database-url", pg.url.as_str()];
    let port = util::free_port();
    let token = account_token(&store, "pg-crash");
    let mut server = serve(port, &store);
    let id = upload_slow_and_kill_mid_evaluation(port, &mut server, &token);
    // Killed mid-evaluation: Postgres still says running, owned by a dead process.
    let r = row(&pg.url, &id);
    assert_eq!((r.status.as_str(), r.attempts), ("running", 1));
    let mut server = serve(port, &store);
    assert_scored_after_restart(port, &id, "pg-crash");
    let r = row(&pg.url, &id);
    assert_eq!((r.status.as_str(), r.attempts), ("scored", 2));
    server.kill().unwrap();
    server.wait().unwrap();
}
