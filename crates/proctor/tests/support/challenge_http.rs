//! Shared by the challenge tests that drive `proctor serve` over HTTP: starting the server
//! on a given store, an account's token, raw HTTP calls, and the kill -9 scenario's
//! upload and wait.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A file under `examples/challenge/`.
pub fn example(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/challenge")
        .join(path)
}

/// One HTTP/1.1 request; returns the status code and the body.
pub fn http(port: u16, method: &str, path: &str, content_type: &str, body: &[u8]) -> (u16, String) {
    http_as(port, None, method, path, content_type, body)
}

/// [`http`] with an account's token (`Authorization: Bearer`).
pub fn http_as(
    port: u16,
    token: Option<&str>,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, String) {
    let auth: Vec<String> = token
        .map(|t| format!("Authorization: Bearer {t}"))
        .into_iter()
        .collect();
    let (code, _, body) = http_with(port, method, path, &auth, content_type, body);
    (code, body)
}

/// One HTTP/1.1 request with extra header lines (`Name: value`); returns the status
/// code, the response's head and its body.
pub fn http_with(
    port: u16,
    method: &str,
    path: &str,
    headers: &[String],
    content_type: &str,
    body: &[u8],
) -> (u16, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{extra}Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let text = String::from_utf8_lossy(&resp).into_owned();
    let code = text[9..12].parse().unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (code, head.to_string(), body.to_string())
}

/// A participant `name` in the store (`--database PATH` or `--database-url URL`), created
/// with `proctor user add`, and an API token for it (`proctor user token`).
pub fn account_token<S: AsRef<OsStr>>(store: &[S], name: &str) -> String {
    let run = |args: &[&str]| {
        let out = Command::new(crate::util::proctor_bin())
            .args(args)
            .args(store)
            .env_remove("PROCTOR_DATABASE_URL")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "proctor {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    run(&["user", "add", name]);
    run(&["user", "token", name])
}

/// A running `proctor serve`, killed when dropped, so that a failing test cannot leave
/// its server behind.
pub struct Server(Child);

impl std::ops::Deref for Server {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Server {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `proctor serve` with one worker on `port`; `store` chooses the database
/// (`--database PATH` or `--database-url URL`).
pub fn serve<S: AsRef<OsStr>>(port: u16, store: &[S]) -> Server {
    let child = Command::new(crate::util::proctor_bin())
        .args(["serve", "--workers", "1", "--port"])
        .arg(port.to_string())
        .args(store)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let child = Server(child);
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "server did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    child
}

/// A submission as the API reports it.
pub fn submission(port: u16, id: &str) -> Value {
    let (code, body) = http(
        port,
        "GET",
        &format!("/api/submissions/{id}"),
        "text/plain",
        b"",
    );
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Uploads the strong reference slowed down by 4 s with an account's `token`, waits
/// until it trains, then kills the server with SIGKILL. Returns the submission id.
pub fn upload_slow_and_kill_mid_evaluation(port: u16, server: &mut Child, token: &str) -> String {
    let code = std::fs::read_to_string(example("strong/solution.py")).unwrap().replace(
        "    def solve(self, train_loader, val_loader, metadata: dict = None):\n",
        "    def solve(self, train_loader, val_loader, metadata: dict = None):\n        import time\n        time.sleep(4)\n",
    );
    let boundary = "XproctorX";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"solution.py\"\r\n\r\n{code}\r\n--{boundary}--\r\n"
    );
    let (status, resp) = http_as(
        port,
        Some(token),
        "POST",
        "/api/challenges/imagenet-pareto-500k/submissions",
        &format!("multipart/form-data; boundary={boundary}"),
        body.as_bytes(),
    );
    assert_eq!(status, 202, "{resp}");
    let id = serde_json::from_str::<Value>(&resp).unwrap()["submission_id"]
        .as_str()
        .unwrap()
        .to_string();
    let start = Instant::now();
    while submission(port, &id)["status"] != "running" {
        assert!(start.elapsed() < Duration::from_secs(60), "never started");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1000));
    server.kill().unwrap(); // SIGKILL
    server.wait().unwrap();
    id
}

/// Waits until the submission leaves `queued`/`running`; asserts it was scored on its
/// second attempt, and that the challenge page shows the account `participant` on the
/// frontier.
pub fn assert_scored_after_restart(port: u16, id: &str, participant: &str) -> Value {
    let start = Instant::now();
    let done = loop {
        let s = submission(port, id);
        if !matches!(s["status"].as_str(), Some("queued" | "running")) {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "never finished: {s}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(done["status"], "scored", "{done}");
    assert_eq!(done["attempts"], 2, "resumed after the restart: {done}");
    assert!(done["accuracy"].as_f64().unwrap() >= 0.98);
    let (code, page) = http(
        port,
        "GET",
        "/challenges/imagenet-pareto-500k",
        "text/plain",
        b"",
    );
    assert_eq!(code, 200);
    assert!(page.contains(participant) && page.contains("frontier-point"));
    done
}
