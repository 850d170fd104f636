//! Who may submit and moderate, over real HTTP (axum on a TCP port, raw HTTP/1.1
//! requests), on SQLite and on Postgres: no token or a revoked one → 401; a submission
//! records the token's account whatever the form says; over the challenge's quotas
//! (`[limits]` in its challenge.toml) → 429 with Retry-After and the reset time; the
//! leaderboard shows accounts; an admin hides / disqualifies / restores / rescores and a
//! participant cannot; `/api/me` lists one's submissions with each rejection's reason;
//! the web login sets an HttpOnly SameSite cookie, forms need its CSRF token, logout
//! ends the session. Evaluation is not under test: a backend that runs nothing.

use std::collections::HashMap;

use proctor_accounts::Role;
use proctor_challenge::{Catalog, Platform, PlatformConfig};
use proctor_core::{Job, JobError, RunResult};
use proctor_engine::Backend;
use proctor_store::testing::TestPostgres;
use proctor_store::Finished;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Clone)]
struct NoBackend;

impl Backend for NoBackend {
    async fn run(&self, _job: Job) -> Result<RunResult, JobError> {
        Err(JobError::Engine("no backend in this test".into()))
    }
}

const C: &str = "imagenet-pareto-200k";
const SOLUTION: &str = "import torch\nclass Solution:\n    def solve(self, a, b, m):\n        return torch.nn.Linear(384, 128)\n";

struct Reply {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// One HTTP/1.1 request with extra header lines.
async fn http(port: u16, method: &str, path: &str, headers: &[String], body: &[u8]) -> Reply {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await.unwrap();
    let text = String::from_utf8_lossy(&resp).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_string(),
    }
}

fn bearer(token: &str) -> Vec<String> {
    vec![format!("Authorization: Bearer {token}")]
}

/// A multipart upload of `file`, with `fields` before it.
async fn upload(
    port: u16,
    path: &str,
    mut headers: Vec<String>,
    fields: &[(&str, &str)],
    file_name: &str,
    file: &[u8],
) -> Reply {
    let b = "XaccountsX";
    let mut body = Vec::new();
    for (k, v) in fields {
        body.extend_from_slice(
            format!("--{b}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    body.extend_from_slice(format!("--{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\n\r\n").as_bytes());
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{b}--\r\n").as_bytes());
    headers.push(format!("Content-Type: multipart/form-data; boundary={b}"));
    http(port, "POST", path, &headers, &body).await
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

const DAY_MS: i64 = 24 * 3_600_000;

async fn submit(port: u16, token: &str, official: bool, file_name: &str, file: &[u8]) -> Reply {
    let official = official.to_string();
    upload(
        port,
        &format!("/api/challenges/{C}/submissions"),
        bearer(token),
        &[("official", &official), ("participant", "someone-else")],
        file_name,
        file,
    )
    .await
}

/// The challenges, with the 200k one limited to 2 official submissions a day and 5
/// uploads an hour.
fn catalog(dir: &std::path::Path) -> Catalog {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tasks/challenge");
    let dst = dir.join(C);
    std::fs::create_dir_all(&dst).unwrap();
    let toml = std::fs::read_to_string(src.join(C).join("challenge.toml")).unwrap();
    std::fs::write(
        dst.join("challenge.toml"),
        format!("{toml}\n[limits]\nofficial_per_day = 2\nsubmissions_per_hour = 5\n"),
    )
    .unwrap();
    std::fs::copy(src.join(C).join("statement.md"), dst.join("statement.md")).unwrap();
    Catalog::load_dir(dir).unwrap()
}

async fn serve(home: &std::path::Path, database_url: Option<String>) -> (u16, Platform<NoBackend>) {
    let mut config = PlatformConfig::new(home.to_path_buf());
    config.database_url = database_url;
    config.catalog = catalog(&home.join("tasks"));
    let platform = Platform::open(NoBackend, config).await.unwrap();
    let app: axum::Router = proctor_challenge::web::router(platform.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .unwrap()
    });
    (port, platform)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_on_sqlite() {
    let home = tempfile::tempdir().unwrap();
    who_may_submit_and_moderate(home.path(), None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_on_postgres() {
    let pg = TestPostgres::new().await;
    let home = tempfile::tempdir().unwrap();
    who_may_submit_and_moderate(home.path(), Some(pg.url.clone())).await;
}

async fn who_may_submit_and_moderate(home: &std::path::Path, database_url: Option<String>) {
    let (port, platform) = serve(home, database_url).await;
    let accounts = platform.accounts();
    let alice_id = accounts
        .add_user("alice", Role::Participant, Some("alice-password"))
        .await
        .unwrap()
        .id;
    accounts
        .add_user("mallory", Role::Participant, None)
        .await
        .unwrap();
    accounts.add_user("root", Role::Admin, None).await.unwrap();
    let alice = accounts.create_token("alice", "laptop").await.unwrap();
    let mallory = accounts.create_token("mallory", "t").await.unwrap();
    let admin = accounts.create_token("root", "t").await.unwrap();

    // No token, a forged one, a revoked one: 401, nothing stored.
    let r = upload(
        port,
        &format!("/api/challenges/{C}/submissions"),
        vec![],
        &[],
        "solution.py",
        SOLUTION.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.headers["www-authenticate"].starts_with("Bearer"));
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .contains("Authorization: Bearer"));
    let forged = format!("pct_{}", "A".repeat(43));
    assert_eq!(
        submit(port, &forged, false, "solution.py", SOLUTION.as_bytes())
            .await
            .status,
        401
    );
    let old = accounts.create_token("alice", "old").await.unwrap();
    accounts.revoke("alice", Some("old")).await.unwrap();
    assert_eq!(
        submit(port, &old, false, "solution.py", SOLUTION.as_bytes())
            .await
            .status,
        401
    );
    let none = proctor_store::Filter::default();
    assert!(platform.store().list(&none, 10).await.unwrap().is_empty());

    // A submission is the token's account's, whatever the form claims.
    let r = submit(port, &alice, false, "solution.py", SOLUTION.as_bytes()).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let public_id = r.json()["submission_id"].as_str().unwrap().to_string();
    let row = platform.get(&public_id).await.unwrap();
    assert_eq!(
        (row.participant.as_str(), row.account_id.as_deref()),
        ("alice", Some(alice_id.as_str()))
    );

    // Official: 2 a day here. A rejected upload does not count; the third evaluated → 429.
    let r = submit(port, &alice, true, "bad.zip", b"not a zip").await;
    assert_eq!(r.status, 422, "{}", r.body);
    for _ in 0..2 {
        assert_eq!(
            submit(port, &alice, true, "solution.py", SOLUTION.as_bytes())
                .await
                .status,
            202
        );
    }
    let before = now_ms();
    let r = submit(port, &alice, true, "solution.py", SOLUTION.as_bytes()).await;
    let after = now_ms();
    assert_eq!(r.status, 429, "{}", r.body);
    let v = r.json();
    // The quota resets at the next 00:00 UTC (as Kaggle's does), and says so.
    let resets = v["resets_at_ms"].as_i64().unwrap();
    let next_midnight = |t: i64| (t / DAY_MS + 1) * DAY_MS;
    assert!(
        resets == next_midnight(before) || resets == next_midnight(after),
        "{v}"
    );
    let retry: i64 = r.headers["retry-after"].parse().unwrap();
    assert!(
        (resets - after) / 1000 <= retry && retry <= (resets - before) / 1000 + 1,
        "{retry} {v}"
    );
    assert_eq!(v["retry_after_s"], retry);
    let resets_at = v["resets_at"].as_str().unwrap();
    assert!(resets_at.ends_with(" 00:00:00 GMT"), "{v}");
    let error = v["error"].as_str().unwrap();
    assert!(
        error.contains("2 official submissions per UTC day")
            && error.contains(&format!("retry at {resets_at}")),
        "{v}"
    );
    // Admins are not under the quota (the challenge's `admins_exempt`, on by default).
    for _ in 0..3 {
        let r = submit(port, &admin, true, "solution.py", SOLUTION.as_bytes()).await;
        assert_eq!(r.status, 202, "{}", r.body);
    }
    // The hourly rate: 5 uploads of this challenge, rejected ones included (the refused
    // one is not stored: alice has made 4).
    let r = submit(port, &alice, false, "solution.py", SOLUTION.as_bytes()).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let r = submit(port, &alice, false, "solution.py", SOLUTION.as_bytes()).await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .contains("5 submissions per hour"));
    assert!(r.headers["retry-after"].parse::<u64>().unwrap() <= 3600);
    // Quotas are per account: mallory still submits.
    let r = submit(port, &mallory, false, "solution.py", SOLUTION.as_bytes()).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let mallory_id = r.json()["submission_id"].as_str().unwrap().to_string();

    // The leaderboard shows accounts.
    for id in [&public_id, &mallory_id] {
        platform.store().claim(id).await.unwrap().unwrap();
        let score = if *id == public_id { 90.0 } else { 50.0 };
        let scored = Finished {
            status: "scored".into(),
            score: Some(score),
            accuracy: Some(0.9),
            params: Some(1000),
            ..Finished::default()
        };
        platform.store().finish(id, &scored).await.unwrap();
    }
    let board = || async {
        let r = http(
            port,
            "GET",
            &format!("/api/challenges/{C}/leaderboard"),
            &[],
            b"",
        )
        .await;
        r.json()["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["participant"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(board().await, ["alice", "mallory"]);

    // Moderation: 401 without a token, 403 for a participant (even on their own), then
    // an admin hides alice's: gone from the leaderboard, the list and the API for others.
    let hide = format!("/api/submissions/{public_id}/hide");
    assert_eq!(http(port, "POST", &hide, &[], b"").await.status, 401);
    assert_eq!(
        http(port, "POST", &hide, &bearer(&mallory), b"")
            .await
            .status,
        403
    );
    assert_eq!(
        http(
            port,
            "POST",
            &format!("/api/submissions/{mallory_id}/hide"),
            &bearer(&mallory),
            b""
        )
        .await
        .status,
        403
    );
    let r = http(port, "POST", &hide, &bearer(&admin), b"").await;
    assert_eq!(
        (r.status, r.json()["hidden"].clone()),
        (200, Value::Bool(true)),
        "{}",
        r.body
    );
    assert_eq!(board().await, ["mallory"]);
    let sub = format!("/api/submissions/{public_id}");
    assert_eq!(http(port, "GET", &sub, &[], b"").await.status, 404);
    assert_eq!(
        http(port, "GET", &sub, &bearer(&mallory), b"").await.status,
        404
    );
    assert_eq!(
        http(port, "GET", &format!("/submissions/{public_id}"), &[], b"")
            .await
            .status,
        404
    );
    assert_eq!(
        http(port, "GET", &sub, &bearer(&alice), b"").await.json()["hidden"],
        true
    );
    assert_eq!(
        http(port, "GET", &sub, &bearer(&admin), b"").await.status,
        200
    );
    let listed = |token: Option<String>| {
        let id = public_id.clone();
        async move {
            let h = token.map(|t| bearer(&t)).unwrap_or_default();
            let r = http(
                port,
                "GET",
                &format!("/api/challenges/{C}/submissions"),
                &h,
                b"",
            )
            .await;
            r.json()["submissions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["submission_id"] == id.as_str())
        }
    };
    assert!(!listed(None).await);
    assert!(listed(Some(admin.clone())).await);
    let page = http(port, "GET", &format!("/challenges/{C}"), &[], b"")
        .await
        .body;
    assert!(!page.contains(&public_id) && page.contains(&mallory_id));
    // Disqualified: visible, not ranked; restored: ranked again; rescored: queued again.
    let act = |action: &'static str| {
        let path = format!("/api/submissions/{public_id}/{action}");
        let admin = admin.clone();
        async move { http(port, "POST", &path, &bearer(&admin), b"").await }
    };
    assert_eq!(act("disqualify").await.status, 200);
    assert_eq!(
        http(port, "GET", &sub, &[], b"").await.json()["disqualified"],
        true
    );
    assert_eq!(board().await, ["mallory"]);
    assert_eq!(act("restore").await.status, 200);
    assert_eq!(board().await, ["alice", "mallory"]);
    assert_eq!(act("frobnicate").await.status, 404);
    let r = act("rescore").await;
    assert_eq!(
        (r.status, r.json()["status"].clone()),
        (200, Value::from("queued")),
        "{}",
        r.body
    );
    assert_eq!(r.json()["score"], Value::Null);
    assert_eq!(act("rescore").await.status, 409, "already queued");
    assert_eq!(board().await, ["mallory"]);

    // The participant page's API: alice's uploads, the rejection with its reason.
    let me = http(port, "GET", "/api/me", &bearer(&alice), b"")
        .await
        .json();
    assert_eq!(me["account"]["name"], "alice");
    let mine = me["submissions"].as_array().unwrap();
    assert_eq!(mine.len(), 5, "{me}");
    assert!(mine.iter().any(|s| s["status"] == "rejected"
        && s["error"]
            .as_str()
            .unwrap()
            .starts_with("the upload is not a valid zip archive")));
    assert_eq!(http(port, "GET", "/api/me", &[], b"").await.status, 401);

    web_login_forms_and_logout(port, &platform).await;
}

/// The browser's path without a browser: login (cookie flags, wrong password, a
/// cross-site login), a form upload without and with the CSRF token, logout.
async fn web_login_forms_and_logout(port: u16, platform: &Platform<NoBackend>) {
    let form = |body: &str| {
        (
            vec!["Content-Type: application/x-www-form-urlencoded".to_string()],
            body.to_string(),
        )
    };
    let (h, b) = form("name=alice&password=wrong-password&next=%2Fme");
    let r = http(port, "POST", "/login", &h, b.as_bytes()).await;
    assert_eq!(r.status, 401);
    assert!(r.body.contains("wrong name or password") && !r.headers.contains_key("set-cookie"));
    let (mut h, b) = form("name=alice&password=alice-password&next=%2Fme");
    h.push("Origin: https://evil.example".into());
    assert_eq!(
        http(port, "POST", "/login", &h, b.as_bytes()).await.status,
        403
    );
    let (mut h, b) = form("name=alice&password=alice-password&next=%2F%2Fevil.example%2F");
    h.push(format!("Origin: http://127.0.0.1:{port}"));
    let r = http(port, "POST", "/login", &h, b.as_bytes()).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.headers["location"], "/me", "never to another site");
    let cookie = &r.headers["set-cookie"];
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    let session = cookie.split(';').next().unwrap().to_string();
    let browser = vec![format!("Cookie: {session}")];

    // The page carries the form's CSRF token; a form without it is refused.
    let me = http(port, "GET", "/me", &browser, b"").await;
    assert_eq!(me.status, 200);
    assert!(me.body.contains("Signed in as <b>alice</b>"));
    let csrf = me
        .body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let path = format!("/challenges/{C}/submit");
    let accounts = platform.accounts();
    // (alice is over her hourly rate on this challenge: lift it by a fresh account.)
    accounts
        .add_user("carol", Role::Participant, Some("carol-password"))
        .await
        .unwrap();
    let carol = accounts
        .login("carol", "carol-password", "test")
        .await
        .unwrap();
    let carol_browser = vec![format!("Cookie: proctor_session={}", carol.secret)];
    let r = upload(
        port,
        &path,
        carol_browser.clone(),
        &[],
        "solution.py",
        SOLUTION.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = upload(
        port,
        &path,
        carol_browser.clone(),
        &[("csrf", &csrf)],
        "solution.py",
        SOLUTION.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 403, "another session's token: {}", r.body);
    let r = upload(
        port,
        &path,
        carol_browser.clone(),
        &[("csrf", &carol.csrf)],
        "solution.py",
        SOLUTION.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(r.headers["location"].starts_with("/submissions/"));
    // Signed out, the form sends you to log in.
    let r = upload(port, &path, vec![], &[], "solution.py", SOLUTION.as_bytes()).await;
    assert_eq!(
        (r.status, r.headers["location"].as_str()),
        (303, "/login?next=/challenges/imagenet-pareto-200k")
    );

    // Logout needs the token too, then ends the session for good.
    let (mut h, _) = form("");
    h.extend(browser.clone());
    assert_eq!(
        http(port, "POST", "/logout", &h, b"csrf=nope").await.status,
        403
    );
    let r = http(
        port,
        "POST",
        "/logout",
        &h,
        format!("csrf={csrf}").as_bytes(),
    )
    .await;
    assert_eq!(r.status, 303);
    assert!(r.headers["set-cookie"].contains("Max-Age=0"));
    assert_eq!(
        http(port, "GET", "/api/me", &browser, b"").await.status,
        401
    );
    let r = http(port, "GET", "/me", &browser, b"").await;
    assert_eq!(
        (r.status, r.headers["location"].as_str()),
        (303, "/login?next=/me")
    );
}
