//! Stored reviews and who may see them, through `proctor serve` over real HTTP, on SQLite
//! and on Postgres: a review runs only for an account and is kept as that account's; a
//! second account can neither list, read nor open its page (404, exactly like a review
//! that does not exist), an admin can, an anonymous caller is asked to sign in; a
//! cookie session needs the page's CSRF token; `proctor review list|show` read the same
//! reviews from the server with a token, and from the database directly.
//!
//! Postgres: `PROCTOR_TEST_POSTGRES_URL` (see `proctor_store::testing`).

#[path = "support/challenge_http.rs"]
#[allow(dead_code)]
mod challenge_http;
mod util;

use std::ffi::OsString;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use challenge_http::{http, http_as, http_with, serve};
use serde_json::{json, Value};

/// Runs `proctor ARGS… STORE…` (feeding `stdin`), asserts success, returns stdout.
fn proctor(store: &[OsString], args: &[&str], stdin: &str) -> String {
    let mut child = Command::new(util::proctor_bin())
        .args(args)
        .args(store)
        .env_remove("PROCTOR_DATABASE_URL")
        .env_remove("PROCTOR_SERVER")
        .env_remove("PROCTOR_TOKEN")
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
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// `proctor review ARGS…` (exit 1 means "not ready"): the exit code and the JSON printed.
fn review_cli(args: &[&str]) -> (Option<i32>, Value) {
    let out = Command::new(util::proctor_bin())
        .arg("review")
        .args(args)
        .arg("--json")
        .env_remove("PROCTOR_DATABASE_URL")
        .env_remove("PROCTOR_SERVER")
        .env_remove("PROCTOR_TOKEN")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code(), value)
}

/// The static-only case as two directories: `(root, base, derived)`.
fn case_dirs() -> (tempfile::TempDir, String, String) {
    let root = tempfile::tempdir().unwrap();
    for (dir, code) in [
        ("base", "def load():\n    return 1\n"),
        (
            "derived",
            "def load():\n    name = DATASET_PLACEHOLDER\n    return name\n",
        ),
    ] {
        std::fs::create_dir_all(root.path().join(dir).join("src")).unwrap();
        std::fs::write(root.path().join(dir).join("src/train.py"), code).unwrap();
    }
    let path = |d: &str| root.path().join(d).to_string_lossy().into_owned();
    let (base, derived) = (path("base"), path("derived"));
    (root, base, derived)
}

/// A user (`extra`: e.g. `--admin`) and an API token for it.
fn user_token(store: &[OsString], name: &str, extra: &[&str]) -> String {
    let mut add = vec!["user", "add", name];
    add.extend(extra);
    proctor(store, &add, "");
    proctor(store, &["user", "token", name], "")
}

/// A static-only case (no `main.py`): a placeholder at derived `src/train.py:2`.
fn case() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "new_method": "x",
        "experiment": { "id": "exp-owned", "run_variations": ["a"] },
        "base_code": { "train_py": "def load():\n    return 1\n" },
        "experiment_code": { "train_py": "def load():\n    name = DATASET_PLACEHOLDER\n    return name\n" },
    }))
    .unwrap()
}

fn get(port: u16, token: Option<&str>, path: &str) -> (u16, String) {
    http_as(port, token, "GET", path, "text/plain", b"")
}

fn ids(list: &str) -> Vec<String> {
    let v: Value = serde_json::from_str(list).unwrap_or_else(|e| panic!("{e}: {list}"));
    v["reviews"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

/// Signs `name` in through `/login`; the session cookie (`proctor_session=…`).
fn login(port: u16, name: &str, password: &str) -> String {
    let form = format!("name={name}&password={password}&next=/review");
    let (code, head, body) = http_with(
        port,
        "POST",
        "/login",
        &[],
        "application/x-www-form-urlencoded",
        form.as_bytes(),
    );
    assert_eq!(code, 303, "{head}\n{body}");
    let cookie = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .starts_with("set-cookie:")
                .then(|| l[11..].trim())
        })
        .unwrap_or_else(|| panic!("no cookie: {head}"));
    cookie.split(';').next().unwrap().to_string()
}

fn reviews_belong_to_their_account(store: Vec<OsString>) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let alice = user_token(&store, "alice", &[]);
    let bob = user_token(&store, "bob", &[]);
    let root = user_token(&store, "root", &["--admin"]);
    proctor(
        &store,
        &["user", "add", "carol", "--password-stdin"],
        "carol-password\n",
    );
    let _server = serve(port, &store);
    let start = Instant::now();
    while http(port, "GET", "/health", "text/plain", b"").0 != 200 {
        assert!(start.elapsed() < Duration::from_secs(300), "no /health");
        std::thread::sleep(Duration::from_millis(100));
    }

    // A review needs an account (it spends sandbox time) and is kept as that account's.
    let (code, text) = http(port, "POST", "/api/review", "application/json", &case());
    assert_eq!(code, 401, "{text}");
    let (code, text) = http_as(
        port,
        Some(&alice),
        "POST",
        "/api/review",
        "application/json",
        &case(),
    );
    assert_eq!(code, 200, "{text}");
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["is_experiment_code_ready"], false);
    let id = answer["review_id"].as_str().unwrap().to_string();
    assert_eq!(answer["url"], format!("/reviews/{id}"));
    // Unguessable: a random UUID (122 random bits) as 32 hex digits; each review its own.
    assert!(
        id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit()),
        "{id}"
    );
    let (_, again) = http_as(
        port,
        Some(&alice),
        "POST",
        "/api/review",
        "application/json",
        &case(),
    );
    let second: Value = serde_json::from_str(&again).unwrap();
    assert_ne!(second["review_id"], answer["review_id"]);

    // The owner lists it and reads the full report, with the code around the finding.
    let (code, list) = get(port, Some(&alice), "/api/reviews");
    assert_eq!(code, 200, "{list}");
    assert!(ids(&list).contains(&id), "{list}");
    let (code, one) = get(port, Some(&alice), &format!("/api/reviews/{id}"));
    assert_eq!(code, 200, "{one}");
    let stored: Value = serde_json::from_str(&one).unwrap();
    let blockers = stored["report"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "blocker")
        .count();
    assert_eq!(stored["ready"], false);
    assert!(
        blockers > 0 && stored["blockers"].as_u64() == Some(blockers as u64),
        "{one}"
    );
    assert_eq!(stored["experiment"], "exp-owned");
    assert_eq!(stored["account_name"], "alice");
    let placeholder = stored["report"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "placeholder")
        .unwrap_or_else(|| panic!("{one}"))
        .clone();
    assert_eq!(
        (placeholder["file"].as_str(), placeholder["line"].as_i64()),
        (Some("src/train.py"), Some(2))
    );
    assert!(
        placeholder["excerpt"]
            .as_str()
            .unwrap()
            .contains(">2 |     name = DATASET_PLACEHOLDER"),
        "{placeholder}"
    );
    let (code, page) = get(port, Some(&alice), &format!("/reviews/{id}"));
    assert_eq!(code, 200, "{page}");
    for shown in [
        "Not ready",
        "<h3><code>src/train.py</code></h3>",
        "DATASET_PLACEHOLDER",
        "exp-owned",
        "alice",
    ] {
        assert!(page.contains(shown), "{shown} missing from {page}");
    }

    // Another account: not in its list, and the review reads exactly like a missing one.
    let (code, list) = get(port, Some(&bob), "/api/reviews");
    assert_eq!(code, 200, "{list}");
    assert!(ids(&list).is_empty(), "{list}");
    let (code, theirs) = get(port, Some(&bob), &format!("/api/reviews/{id}"));
    let (missing_code, missing) = get(
        port,
        Some(&bob),
        "/api/reviews/00000000000000000000000000000000",
    );
    assert_eq!((code, missing_code), (404, 404), "{theirs}");
    assert_eq!(
        theirs.replace(&id, "ID"),
        missing.replace("00000000000000000000000000000000", "ID")
    );
    let (code, page) = get(port, Some(&bob), &format!("/reviews/{id}"));
    assert_eq!(code, 404, "{page}");
    assert!(
        !page.contains("DATASET_PLACEHOLDER") && !page.contains("alice"),
        "{page}"
    );
    let (_, form) = get(port, Some(&bob), "/review");
    assert!(
        !form.contains(&id),
        "bob's review page lists alice's review: {form}"
    );

    // An admin sees every review, with its owner.
    let (code, list) = get(port, Some(&root), "/api/reviews");
    assert_eq!(code, 200, "{list}");
    assert!(ids(&list).contains(&id), "{list}");
    assert_eq!(get(port, Some(&root), &format!("/api/reviews/{id}")).0, 200);
    let (code, page) = get(port, Some(&root), &format!("/reviews/{id}"));
    assert!(
        code == 200 && page.contains("DATASET_PLACEHOLDER"),
        "{page}"
    );

    // Anonymous: asked to sign in, whatever the id.
    assert_eq!(get(port, None, "/api/reviews").0, 401);
    assert_eq!(get(port, None, &format!("/api/reviews/{id}")).0, 401);
    let (code, head, _) = http_with(
        port,
        "GET",
        &format!("/reviews/{id}"),
        &[],
        "text/plain",
        b"",
    );
    assert_eq!(code, 303);
    assert!(
        head.contains(&format!("/login?next=/reviews/{id}")),
        "{head}"
    );

    // A browser session: the form page carries the CSRF token; a POST without it (what a
    // cross-site page would send) is refused, with it the review runs.
    let cookie = login(port, "carol", "carol-password");
    let with_cookie = vec![format!("Cookie: {cookie}")];
    let (code, _, form) = http_with(port, "GET", "/review", &with_cookie, "text/plain", b"");
    assert_eq!(code, 200, "{form}");
    let csrf = form
        .split("<meta name=\"csrf\" content=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_else(|| panic!("no csrf meta in {form}"))
        .to_string();
    assert!(!csrf.is_empty(), "{form}");
    let (code, _, text) = http_with(
        port,
        "POST",
        "/api/review",
        &with_cookie,
        "application/json",
        &case(),
    );
    assert_eq!(code, 403, "{text}");
    let mut with_csrf = with_cookie.clone();
    with_csrf.push(format!("x-csrf-token: {csrf}"));
    let (code, _, text) = http_with(
        port,
        "POST",
        "/api/review",
        &with_csrf,
        "application/json",
        &case(),
    );
    assert_eq!(code, 200, "{text}");
    let carols: Value = serde_json::from_str(&text).unwrap();
    let (_, _, form) = http_with(port, "GET", "/review", &with_cookie, "text/plain", b"");
    assert!(
        form.contains(carols["review_id"].as_str().unwrap()) && !form.contains(&id),
        "carol's page lists her review only: {form}"
    );

    // The CLI: through the server with a token (its owner's view), and the database.
    let server = format!("http://127.0.0.1:{port}");
    let as_bob = ["--server", server.as_str(), "--token", bob.as_str()];
    let listed = proctor(
        &[],
        &[&["review", "list", "--json"][..], &as_bob[..]].concat(),
        "",
    );
    assert!(ids(&listed).is_empty(), "{listed}");
    let as_alice = ["--server", server.as_str(), "--token", alice.as_str()];
    let listed = proctor(
        &[],
        &[&["review", "list", "--json"][..], &as_alice[..]].concat(),
        "",
    );
    assert!(ids(&listed).contains(&id), "{listed}");
    let shown = proctor(
        &[],
        &[&["review", "show", &id][..], &as_alice[..]].concat(),
        "",
    );
    assert!(
        shown.starts_with("NOT READY") && shown.contains("src/train.py:2"),
        "{shown}"
    );
    let refused = Command::new(util::proctor_bin())
        .args(["review", "show", &id])
        .args(as_bob)
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("404"),
        "{refused:?}"
    );
    let local = proctor(&store, &["review", "list", "--json"], "");
    assert!(
        ids(&local).contains(&id),
        "the operator reads the database: {local}"
    );
    // A directory case goes to the server as a zip and is kept as the token's account's.
    let (_dirs, base, derived) = case_dirs();
    let dir_case = ["--base", &base, "--derived", &derived, "--variations", "a"];
    let (code, answer) = review_cli(&[&dir_case[..], &as_alice[..]].concat());
    assert_eq!(code, Some(1), "not ready: {answer}");
    let placeholder = answer["findings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["id"] == "placeholder" && f["file"] == "src/train.py" && f["line"] == 2);
    assert!(placeholder, "{answer}");
    let (_, listed) = get(port, Some(&alice), "/api/reviews");
    assert!(
        ids(&listed).contains(&answer["review_id"].as_str().unwrap().to_string()),
        "{listed}"
    );
}

#[test]
fn a_local_cli_review_is_kept_in_the_local_database() {
    let db = tempfile::tempdir().unwrap();
    let path = db.path().join("proctor.db");
    let database = path.to_string_lossy().into_owned();
    let (_dirs, base, derived) = case_dirs();
    let args = [
        "--base",
        &base,
        "--derived",
        &derived,
        "--variations",
        "a",
        "--static-only",
    ];
    let (code, answer) = review_cli(&[&args[..], &["--database", &database][..]].concat());
    assert_eq!(code, Some(1), "not ready: {answer}");
    let id = answer["review_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{answer}"));
    let store: Vec<OsString> = vec!["--database".into(), path.clone().into()];
    let listed = proctor(&store, &["review", "list", "--json"], "");
    assert_eq!(ids(&listed), [id], "{listed}");
    let shown = proctor(&store, &["review", "show", id, "--json"], "");
    let shown: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(
        shown["account_id"],
        Value::Null,
        "a local review has no account"
    );
    assert_eq!(shown["report"]["findings"], answer["findings"]);
    let missing = Command::new(util::proctor_bin())
        .args(["review", "show", "nope", "--database", &database])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(
        err.contains("no review \"nope\"") && err.contains("proctor review list"),
        "{err}"
    );
}

#[test]
fn reviews_belong_to_their_account_on_sqlite() {
    let db = tempfile::tempdir().unwrap();
    let path = db.path().join("proctor.db");
    reviews_belong_to_their_account(vec!["--database".into(), path.into()]);
}

#[test]
fn reviews_belong_to_their_account_on_postgres() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let pg = rt.block_on(proctor_store::testing::TestPostgres::new());
    reviews_belong_to_their_account(vec!["--database-url".into(), pg.url.clone().into()]);
}
