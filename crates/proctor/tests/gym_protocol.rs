//! The gym on the OpenEnv protocol, checked with the ecosystem's real clients:
//! openenv-core's validator and GenericEnvClient (installed from PyPI into a test-only
//! venv, never into the sandbox runtime), plain HTTP in WhipStudio's format, MCP.

mod util;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A venv with openenv-core 0.3.0, made once and reused.
fn openenv_venv() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("openenv-venv");
    let python = dir.join("bin/python");
    let ready = dir.join(".ready");
    // Tests run in parallel: one creates the venv, the others wait on the lock.
    let lock =
        std::fs::File::create(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("openenv-venv.lock"))
            .unwrap();
    lock.lock().unwrap();
    if !ready.exists() {
        let _ = std::fs::remove_dir_all(&dir);
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "python3 -m venv failed");
        let ok = Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "openenv-core==0.3.0",
                "requests",
            ])
            .status()
            .unwrap()
            .success();
        assert!(ok, "pip install openenv-core failed");
        std::fs::write(&ready, "").unwrap();
    }
    dir
}

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(args: &[&str], port: u16, prefix: &str) -> Server {
    let child = Command::new(util::proctor_bin())
        .args(args)
        .args(["--port", &port.to_string()])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}{prefix}");
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "server did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Server { child, base }
}

fn validate(venv: &std::path::Path, base: &str) {
    let out = Command::new(venv.join("bin/openenv"))
        .args(["validate", "--url", base, "--json"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let failed: Vec<_> = report["criteria"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["passed"] != true)
        .collect();
    assert!(
        failed.is_empty(),
        "openenv validate {base}: failed {failed:#?}"
    );
    assert_eq!(report["passed"], true, "{report}");
}

fn client_episodes(venv: &std::path::Path, base: &str) -> serde_json::Value {
    let fixed = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tasks/debug/broken-training-loop/fixed.py"
    );
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/support/openenv_protocol.py"
    );
    let out = Command::new(venv.join("bin/python"))
        .args([script, base, fixed])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "protocol client against {base} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(
        out.stdout
            .split(|b| *b == b'\n')
            .rfind(|l| !l.is_empty())
            .unwrap(),
    )
    .unwrap()
}

#[test]
fn gym_serve_passes_openenv_validate_and_real_clients() {
    let venv = openenv_venv();
    let server = start(&["gym", "serve"], util::free_port(), "");
    validate(&venv, &server.base);
    let summary = client_episodes(&venv, &server.base);
    assert!(
        summary["ws_episode_reward"].as_f64().unwrap() >= 0.85,
        "{summary}"
    );
    assert_eq!(summary["concurrent_ws_episodes"], 8);
}

#[test]
fn a_gym_that_requires_a_token_serves_the_real_client_given_one_in_its_url() {
    let venv = openenv_venv();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("proctor.db");
    let operator = |args: &[&str]| {
        let out = Command::new(util::proctor_bin())
            .args(args)
            .arg("--database")
            .arg(&db)
            .env_remove("PROCTOR_DATABASE_URL")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    operator(&["user", "add", "trainer"]);
    let token = operator(&["user", "token", "trainer", "--label", "fleet"]);
    let port = util::free_port();
    let db_arg = db.to_str().unwrap();
    let _server = start(
        &["gym", "serve", "--require-token", "--database", db_arg],
        port,
        "",
    );
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/support/openenv_token.py"
    );
    let out = Command::new(venv.join("bin/python"))
        .args([script, &format!("127.0.0.1:{port}"), &token])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the real client against a --require-token gym:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(
        summary,
        serde_json::json!({"no_token": "refused 401", "forged_token": "refused 401", "with_token": "42"})
    );
}

#[test]
fn platform_serves_the_gym_under_slash_gym() {
    let venv = openenv_venv();
    let server = start(&["serve"], util::free_port(), "/gym");
    validate(&venv, &server.base);
    let summary = client_episodes(&venv, &server.base);
    assert!(summary["mcp_tools"].as_u64().unwrap() >= 7, "{summary}");
}

#[test]
fn mcp_over_stdio_lists_and_calls_tools() {
    let mut child = Command::new(util::proctor_bin())
        .arg("mcp")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut call = |msg: serde_json::Value| -> serde_json::Value {
        writeln!(stdin, "{msg}").unwrap();
        stdin.flush().unwrap();
        serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap()
    };
    let init = call(
        serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-03-26", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}),
    );
    assert_eq!(init["result"]["serverInfo"]["name"], "proctor-debug-gym");
    let tools = call(serde_json::json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}));
    assert_eq!(tools["result"]["tools"].as_array().unwrap().len(), 7);
    let reset = call(
        serde_json::json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "reset", "arguments": {"task_id": "task4"}}}),
    );
    let eid = reset["result"]["structuredContent"]["episode_id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = call(
        serde_json::json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "inspect_diff", "arguments": {"episode_id": eid, "proposed_code": "x = ("}}}),
    );
    assert_eq!(
        r["result"]["structuredContent"]["observation"]["syntax_ok"], false,
        "{r}"
    );
    let bad = call(serde_json::json!({"jsonrpc": "2.0", "id": 5, "method": "nope"}));
    assert_eq!(bad["error"]["code"], -32601);
    drop(stdin);
    let _ = child.wait();
}
