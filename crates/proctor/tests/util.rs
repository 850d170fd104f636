//! Shared helpers of the integration tests: drive the real `proctor` binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The built `proctor` binary.
pub fn proctor_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_proctor"))
}

/// A temp dir holding one script.
pub struct Script {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

pub fn script(code: &str) -> Script {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("main.py");
    std::fs::write(&path, code).expect("write script");
    Script { dir, path }
}

/// Runs `proctor exec FILE --json ARGS...` on `code`; returns the JSON result.
pub fn exec(code: &str, args: &[&str]) -> Value {
    let s = script(code);
    exec_file(&s.path, args)
}

pub fn exec_file(path: &Path, args: &[&str]) -> Value {
    let out = Command::new(proctor_bin())
        .arg("exec")
        .arg(path)
        .arg("--json")
        .args(args)
        .output()
        .expect("run proctor");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.lines().count(),
        1,
        "exactly one JSON line expected, got stdout={stdout} stderr={}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("bad json {e}: {stdout}"))
}

pub fn status(v: &Value) -> &str {
    v["status"].as_str().unwrap_or("<none>")
}

/// Host pids whose command line contains `marker`.
pub fn pids_with(marker: &str) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(marker) {
                found.push(pid);
            }
        }
    }
    found
}

/// A marker unlikely to collide: used as a `sleep` argument to find processes by pid.
pub fn marker() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{}.{:09}", 4000 + std::process::id() % 1000, nanos)
}

/// A local engine whose sandbox helper is the built `proctor` binary.
pub async fn backend() -> proctor_engine::LocalBackend {
    let mut config = tokio::task::spawn_blocking(|| proctor_engine::EngineConfig::detect(false))
        .await
        .unwrap()
        .expect("engine config");
    config.helper = proctor_bin();
    proctor_engine::LocalBackend::start(config)
        .await
        .expect("backend")
}

/// A TCP port free right now on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Serves `gym`'s router on a fresh local port over real HTTP; the port and the server task.
pub async fn serve_gym(
    gym: std::sync::Arc<proctor_gym::episode::Gym>,
) -> (u16, tokio::task::JoinHandle<std::io::Result<()>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(proctor_server::serve_router(
        listener,
        proctor_gym::server::router(gym),
        std::future::pending(),
    ));
    (port, server)
}

/// The attack script `attacks/host_world.py`, aimed at `files` and `sockets`.
pub fn host_world_attack(files: &[&Path], sockets: &[&Path]) -> String {
    let targets = serde_json::json!({"files": files, "sockets": sockets});
    include_str!("attacks/host_world.py").replace("@TARGETS@", &targets.to_string())
}

/// The attack's results from a run's JSON result; fails naming every attempt that worked.
pub fn assert_no_holes(run: &Value, context: &str) -> Value {
    assert_eq!(status(run), "ok", "{context}: {run}");
    let results: Value = serde_json::from_str(run["stdout"].as_str().unwrap().trim())
        .unwrap_or_else(|e| panic!("{context}: {e}: {run}"));
    let holes: Vec<&String> = results
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, outcome)| *outcome == "ok")
        .map(|(attempt, _)| attempt)
        .collect();
    assert!(holes.is_empty(), "{context}: these worked: {holes:?}");
    results
}

/// One HTTP/1.1 request to 127.0.0.1:`port` with an optional bearer token: the status,
/// the response's head (status line and headers) and its body.
pub async fn http_full(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &Value,
) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await.unwrap();
    let text = String::from_utf8_lossy(&resp).into_owned();
    let code = text[9..12].parse().unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (code, head.to_string(), body.to_string())
}

/// [`http_full`] without the head: the status and the body.
pub async fn http(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &Value,
) -> (u16, String) {
    let (code, _, body) = http_full(port, method, path, token, body).await;
    (code, body)
}

/// Python that builds a chain `depth` directories deep (each `d`) under a new directory `top`
/// of its working directory, and prints `built`. Landlock checks every ancestor of a path it
/// mediates, so making each level in place is quadratic in the depth (25,000 levels: ~90 s
/// on an idle machine); this builds short chains at the top and moves each under the
/// previous one's deepest directory (held open: no path is ever longer than one chain).
pub fn deep_chain(top: &str, depth: usize) -> String {
    format!(
        r#"
import os
os.mkdir({top:?})
bottom = os.open({top:?}, os.O_RDONLY)
built = 0
while built < {depth}:
    n = min(250, {depth} - built)
    os.mkdir("part")
    fd = os.open("part", os.O_RDONLY)
    for _ in range(n - 1):
        os.mkdir("d", dir_fd=fd)
        nxt = os.open("d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = nxt
    os.rename("part", "d", dst_dir_fd=bottom)
    os.close(bottom)
    bottom, built = fd, built + n
print("built")
"#
    )
}
