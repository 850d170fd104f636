//! `POST /api/review` over real HTTP with inputs built to stall a naive static pass: the
//! answers come within the review's budget and `/health` stays fast meanwhile; an account
//! runs at most `RUNNING_PER_ACCOUNT` reviews at once, and a client that disconnects
//! cancels its review (its sandboxed runs are killed, nothing is kept).

#[path = "support/challenge_http.rs"]
#[allow(dead_code)]
mod challenge_http;
mod util;

use std::time::{Duration, Instant};

use challenge_http::{account_token, http, http_as, serve};
use serde_json::{json, Value};

/// A case whose derived code holds `files` (AIRAS keys) and nothing else: no `main.py`,
/// so the review is the static pass alone.
fn case(files: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "new_method": "x",
        "experiment": { "id": "exp-1", "run_variations": ["a"] },
        "base_code": {},
        "experiment_code": files,
    }))
    .unwrap()
}

/// 200 KB of nested `[` in the smoke config.
fn nested_yaml() -> Vec<u8> {
    case(json!({ "smoke_test_yaml": format!("x: {}", "[".repeat(200_000)) }))
}

/// About 550 KB of Python: `import` lines under 600 nested `if 1:` blocks.
fn nested_imports() -> Vec<u8> {
    let mut text = String::new();
    for depth in 0..600 {
        text.push_str(&" ".repeat(depth));
        text.push_str("if 1:\n");
    }
    let indent = " ".repeat(600);
    while text.len() < 550_000 {
        text.push_str(&indent);
        text.push_str("import os\n");
    }
    case(json!({ "train_py": text }))
}

#[test]
fn hostile_inputs_are_answered_within_budget_while_health_stays_fast() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let db = tempfile::tempdir().unwrap();
    let db_path = db.path().join("db.sqlite");
    let store = [std::ffi::OsStr::new("--database"), db_path.as_os_str()];
    let tokens = [account_token(&store, "alice"), account_token(&store, "bob")];
    let mut server = serve(port, &store);
    // Wait for the first real answer (the runtime may be provisioning).
    let start = Instant::now();
    while http(port, "GET", "/health", "text/plain", b"").0 != 200 {
        assert!(start.elapsed() < Duration::from_secs(300), "no /health");
        std::thread::sleep(Duration::from_millis(100));
    }
    let requests: Vec<_> = [
        nested_yaml(),
        nested_yaml(),
        nested_imports(),
        nested_imports(),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, body)| {
        // Two accounts, each within its share of running reviews.
        let token = tokens[i % tokens.len()].clone();
        std::thread::spawn(move || {
            let sent = Instant::now();
            let (code, text) = http_as(
                port,
                Some(&token),
                "POST",
                "/api/review",
                "application/json",
                &body,
            );
            (code, text, sent.elapsed())
        })
    })
    .collect();
    let mut slowest_health = Duration::ZERO;
    while !requests.iter().all(|r| r.is_finished()) {
        let sent = Instant::now();
        assert_eq!(http(port, "GET", "/health", "text/plain", b"").0, 200);
        slowest_health = slowest_health.max(sent.elapsed());
        std::thread::sleep(Duration::from_millis(50));
    }
    let answers: Vec<_> = requests.into_iter().map(|r| r.join().unwrap()).collect();
    server.kill().unwrap();
    server.wait().unwrap();
    for (i, (code, text, took)) in answers.iter().enumerate() {
        assert_eq!(*code, 200, "{text}");
        assert!(*took < Duration::from_secs(15), "request {i} took {took:?}");
        let review: Value = serde_json::from_str(text).unwrap();
        let ids: Vec<&str> = review["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|f| f["id"].as_str())
            .collect();
        assert!(!ids.contains(&"review-over-budget"), "{ids:?}");
        if i < 2 {
            assert!(ids.contains(&"config-too-deep"), "{ids:?}");
        } else {
            assert!(ids.contains(&"missing-file"), "{ids:?}");
        }
    }
    assert!(
        slowest_health < Duration::from_secs(1),
        "/health took {slowest_health:?} during the reviews"
    );
}

#[test]
fn a_zip_of_the_two_directories_is_reviewed_like_the_json() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let db = tempfile::tempdir().unwrap();
    let db_path = db.path().join("db.sqlite");
    let store = [std::ffi::OsStr::new("--database"), db_path.as_os_str()];
    let token = account_token(&store, "alice");
    let mut server = serve(port, &store);
    let start = Instant::now();
    while http(port, "GET", "/health", "text/plain", b"").0 != 200 {
        assert!(start.elapsed() < Duration::from_secs(300), "no /health");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Inside one top-level folder, as `zip -r case.zip case/` makes it; no main.py, so
    // the review is the static pass.
    let derived = b"def load():\n    name = DATASET_PLACEHOLDER\n    return name\n";
    let zip = proctor_challenge::intake::zip_files(&[
        ("case/variations.txt", b"a,b\n"),
        ("case/base/src/train.py", b"def load():\n    return 1\n"),
        ("case/derived/src/train.py", derived),
        ("case/derived/../../escape.py", b"x = 1\n"),
    ])
    .unwrap();
    let (code, text) = http_as(
        port,
        Some(&token),
        "POST",
        "/api/review",
        "application/zip",
        &zip,
    );
    let (bad_code, bad_text) = http_as(
        port,
        Some(&token),
        "POST",
        "/api/review",
        "application/zip",
        b"PK\x03\x04 not a zip",
    );
    server.kill().unwrap();
    server.wait().unwrap();
    assert_eq!(code, 200, "{text}");
    let review: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(review["is_experiment_code_ready"], false);
    let placeholder = review["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "placeholder")
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(placeholder["file"], "src/train.py");
    assert_eq!(placeholder["line"], 2);
    assert!(!text.contains("escape.py"), "{text}");
    assert_eq!(bad_code, 400, "{bad_text}");
    assert!(bad_text.contains("zip archive"), "{bad_text}");
}

/// The status line and body of the answer to a request that announces `length` bytes of
/// body and sends none of them: the server must answer from the head alone.
fn announce_body(port: u16, token: Option<&str>, length: usize) -> (u16, String) {
    use std::io::{Read, Write};
    let mut client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "POST /api/review HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{auth}Content-Type: application/zip\r\nContent-Length: {length}\r\n\r\n"
    );
    client.write_all(head.as_bytes()).unwrap();
    let mut answer = Vec::new();
    client
        .read_to_end(&mut answer)
        .expect("no answer before the body was sent");
    let text = String::from_utf8_lossy(&answer).into_owned();
    let code = text[9..12].parse().unwrap();
    (
        code,
        text.split_once("\r\n\r\n")
            .unwrap_or(("", ""))
            .1
            .to_string(),
    )
}

/// One limit for the body and the project files it carries: a case past 2 MB (axum's
/// default body limit, which refused zips the archive reader would take) is reviewed; a
/// body announced past 32 MiB is refused with a 413 that says the limit, before any of it
/// is read, and only once the caller is known (an anonymous one gets its 401 first).
#[test]
fn the_body_limit_matches_the_case_limit_and_is_checked_after_the_caller() {
    let port = util::free_port();
    let db = tempfile::tempdir().unwrap();
    let db_path = db.path().join("db.sqlite");
    let store = [std::ffi::OsStr::new("--database"), db_path.as_os_str()];
    let token = account_token(&store, "alice");
    let mut server = serve(port, &store);
    let start = Instant::now();
    while http(port, "GET", "/health", "text/plain", b"").0 != 200 {
        assert!(start.elapsed() < Duration::from_secs(300), "no /health");
        std::thread::sleep(Duration::from_millis(100));
    }
    let big = 40 << 20;
    let anonymous = announce_body(port, None, big);
    let too_large = announce_body(port, Some(&token), big);
    // 3 MB of real source (a long table): static pass only, no main.py.
    let mut train = String::from("TABLE = [\n");
    while train.len() < 3 << 20 {
        train.push_str("    (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0),\n");
    }
    train.push_str("]\n");
    let (code, text) = http_as(
        port,
        Some(&token),
        "POST",
        "/api/review",
        "application/json",
        &case(json!({ "train_py": train })),
    );
    server.kill().unwrap();
    server.wait().unwrap();
    assert_eq!(anonymous.0, 401, "{}", anonymous.1);
    assert_eq!(too_large.0, 413, "{}", too_large.1);
    let error: Value = serde_json::from_str(&too_large.1).unwrap();
    assert!(
        error["error"].as_str().unwrap().contains("32 MiB"),
        "{}",
        too_large.1
    );
    assert_eq!(code, 200, "{}", &text[..text.len().min(2000)]);
    let review: Value = serde_json::from_str(&text).unwrap();
    assert!(review["findings"].is_array(), "{text}");
}

/// A project whose entry point starts a long sleep whose command line carries `marker`
/// (a fresh `exec`, so the host's `/proc` shows it).
fn sleeping_case(marker: &str) -> Vec<u8> {
    let main = format!(
        "import subprocess, sys\nsubprocess.run([sys.executable, '-c', 'import time; time.sleep(600)', '{marker}'])\n"
    );
    serde_json::to_vec(&json!({
        "new_method": "x",
        "experiment": { "id": "exp-cancel", "run_variations": ["a"] },
        "base_code": { "main_py": "print(1)\n" },
        "experiment_code": { "main_py": main },
    }))
    .unwrap()
}

/// Sends a review request on a connection of its own and leaves it open (no answer read).
fn start_review(port: u16, token: &str, body: &[u8]) -> std::net::TcpStream {
    use std::io::Write;
    let mut client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let head = format!(
        "POST /api/review HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    client.write_all(head.as_bytes()).unwrap();
    client.write_all(body).unwrap();
    client
}

#[test]
fn reviews_are_limited_per_account_and_cancelled_when_their_client_leaves() {
    let port = util::free_port();
    let db = tempfile::tempdir().unwrap();
    let db_path = db.path().join("db.sqlite");
    let store = [std::ffi::OsStr::new("--database"), db_path.as_os_str()];
    let token = account_token(&store, "alice");
    let other = account_token(&store, "bob");
    let _server = serve(port, &store);
    let start = Instant::now();
    while http(port, "GET", "/health", "text/plain", b"").0 != 200 {
        assert!(start.elapsed() < Duration::from_secs(300), "no /health");
        std::thread::sleep(Duration::from_millis(100));
    }
    // As many long reviews as one account may run, each reaching its smoke run.
    let markers: Vec<String> = (0..proctor_review::RUNNING_PER_ACCOUNT)
        .map(|i| format!("proctor-cancel-{i}-{}", util::marker()))
        .collect();
    let clients: Vec<_> = markers
        .iter()
        .map(|m| start_review(port, &token, &sleeping_case(m)))
        .collect();
    let start = Instant::now();
    while markers.iter().any(|m| util::pids_with(m).is_empty()) {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the smoke runs never started"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // One more from the same account is refused at once; another account is served.
    let quick = case(json!({ "train_py": "x = 1\n" }));
    let (code, text) = http_as(
        port,
        Some(&token),
        "POST",
        "/api/review",
        "application/json",
        &quick,
    );
    assert_eq!(code, 429, "{text}");
    assert!(text.contains("running already"), "{text}");
    let (code, text) = http_as(
        port,
        Some(&other),
        "POST",
        "/api/review",
        "application/json",
        &quick,
    );
    assert_eq!(code, 200, "{text}");
    // The clients leave: their reviews stop (the sandboxed sleeps are killed), /health
    // stays fast, nothing is kept, and the account may review again.
    drop(clients);
    let gone = Instant::now();
    while markers.iter().any(|m| !util::pids_with(m).is_empty()) {
        assert!(
            gone.elapsed() < Duration::from_secs(20),
            "the reviews went on after their clients left"
        );
        let sent = Instant::now();
        assert_eq!(http(port, "GET", "/health", "text/plain", b"").0, 200);
        assert!(
            sent.elapsed() < Duration::from_secs(1),
            "/health took {:?}",
            sent.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, list) = http_as(port, Some(&token), "GET", "/api/reviews", "text/plain", b"");
    assert_eq!(code, 200, "{list}");
    let reviews: Value = serde_json::from_str(&list).unwrap();
    assert_eq!(reviews["reviews"], json!([]), "{list}");
    let (code, text) = http_as(
        port,
        Some(&token),
        "POST",
        "/api/review",
        "application/json",
        &quick,
    );
    assert_eq!(code, 200, "the slots are given back: {text}");
}
