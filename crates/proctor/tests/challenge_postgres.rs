//! The challenge platform on Postgres through the real binary: `--database-url
//! postgres://…` for `proctor challenge submit` and `proctor serve` (upload over HTTP,
//! kill -9 mid-evaluation, restart, a real status), with the rows checked in Postgres.
//!
//! The server: `PROCTOR_TEST_POSTGRES_URL` (`.ci/run` installs and starts Postgres and
//! exports it); without it, a throwaway cluster when Postgres is installed, and a failure
//! saying so when it is not (see `proctor_store::testing`).

mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use proctor_store::testing::TestPostgres;
use proctor_store::{Backend, Store};
use serde_json::Value;

fn example(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/challenge")
        .join(path)
}

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
            .args(["--participant", "pg", "--json", "--database-url", &pg.url])
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
    assert_eq!(r.participant, "pg");
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

fn http(port: u16, method: &str, path: &str, content_type: &str, body: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let text = String::from_utf8_lossy(&resp).into_owned();
    let code = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|x| x.1)
        .unwrap_or("")
        .to_string();
    (code, body)
}

fn serve(port: u16, url: &str) -> Child {
    let child = Command::new(util::proctor_bin())
        .args(["serve", "--workers", "1", "--port"])
        .arg(port.to_string())
        .args(["--database-url", url])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
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

fn submission(port: u16, id: &str) -> Value {
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

#[test]
fn serve_on_postgres_survives_kill_9_mid_evaluation() {
    let pg = rt().block_on(TestPostgres::new());
    let port = util::free_port();
    let mut server = serve(port, &pg.url);
    // Slow enough to be killed mid-training, then the strong reference.
    let code = std::fs::read_to_string(example("strong/solution.py"))
        .unwrap()
        .replace(
            "    def solve(self, train_loader, val_loader, metadata: dict = None):\n",
            "    def solve(self, train_loader, val_loader, metadata: dict = None):\n        import time\n        time.sleep(4)\n",
        );
    let boundary = "XproctorX";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"participant\"\r\n\r\npg-crash\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"solution.py\"\r\n\r\n{code}\r\n--{boundary}--\r\n"
    );
    let (status, resp) = http(
        port,
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
    // Killed mid-evaluation: Postgres still says running, owned by a dead process.
    let r = row(&pg.url, &id);
    assert_eq!((r.status.as_str(), r.attempts), ("running", 1));

    let mut server = serve(port, &pg.url);
    let start = Instant::now();
    let done = loop {
        let s = submission(port, &id);
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
    let r = row(&pg.url, &id);
    assert_eq!((r.status.as_str(), r.attempts), ("scored", 2));
    let (code, page) = http(
        port,
        "GET",
        "/challenges/imagenet-pareto-500k",
        "text/plain",
        b"",
    );
    assert_eq!(code, 200);
    assert!(page.contains("pg-crash") && page.contains("frontier-point"));
    server.kill().unwrap();
    server.wait().unwrap();
}
