//! The challenge platform through the real binary: `proctor challenge list/submit` and
//! `proctor serve` (upload over HTTP, kill -9 mid-evaluation, restart, a real status).

#[path = "support/challenge_http.rs"]
mod challenge_http;
mod util;

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

use challenge_http::{
    account_token, assert_scored_after_restart, example, serve, upload_slow_and_kill_mid_evaluation,
};

use serde_json::Value;

#[test]
fn cli_lists_and_submits_with_the_json_contract() {
    let out = Command::new(util::proctor_bin())
        .args(["challenge", "list", "--json"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<&str> = v["challenges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "imagenet-pareto-200k",
            "imagenet-pareto-500k",
            "imagenet-pareto-1m",
            "imagenet-pareto-2.5m",
            "imagenet-pareto-5m"
        ]
    );
    let db = tempfile::tempdir().unwrap();
    let db_path = db.path().join("proctor.db");
    let submit = |file: &Path| {
        let out = Command::new(util::proctor_bin())
            .args(["challenge", "submit", "imagenet-pareto-200k"])
            .arg(file)
            .args(["--json", "--database"])
            .arg(&db_path)
            .env_remove("PROCTOR_SERVER")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(stdout.lines().count(), 1, "{stdout}");
        (
            out.status.code(),
            serde_json::from_str::<Value>(&stdout).unwrap(),
        )
    };
    let (code, v) = submit(&example("strong/solution.py"));
    assert_eq!(code, Some(0), "{v}");
    for key in [
        "submission_id",
        "status",
        "score",
        "accuracy",
        "params",
        "params_trainable",
        "param_limit",
        "baseline_accuracy",
        "oracle_accuracy",
        "error",
    ] {
        assert!(v.get(key).is_some(), "missing {key} in {v}");
    }
    assert_eq!(v["status"], "scored");
    assert_eq!(v["param_limit"], 200_000);
    assert_eq!(v["baseline_accuracy"], 0.65);
    assert_eq!(v["oracle_accuracy"], 1.0);
    assert_eq!(v["params"], 49_280);
    assert!(v["accuracy"].as_f64().unwrap() >= 0.98);
    assert!(v["total_s"].as_f64().unwrap() > 0.0, "{v}");
    // One exit code per outcome: over budget is 3 (with its accuracy, unranked) ...
    let over = db.path().join("over.py");
    std::fs::write(
        &over,
        "import torch.nn as nn\nclass Solution:\n    def solve(self, a, b, m):\n        return nn.Linear(384, 1024)\n",
    )
    .unwrap();
    let (code, v) = submit(&over);
    assert_eq!(code, Some(3), "{v}");
    assert_eq!(v["status"], "over_budget");
    assert!(v["accuracy"].is_number(), "{v}");
    // ... a rejected upload 7.
    let bad = db.path().join("bad.zip");
    std::fs::write(&bad, b"not a zip").unwrap();
    // Local runs are private: no account, on no leaderboard.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = proctor_store::Store::open(&db_path).await.unwrap();
        let row = store
            .get(v["submission_id"].as_str().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!((row.participant.as_str(), row.account_id), ("local", None));
        let board = store.leaderboard("imagenet-pareto-200k", false, 10);
        assert!(board.await.unwrap().is_empty());
    });
    let (code, v) = submit(&bad);
    assert_eq!(code, Some(7));
    assert_eq!(v["status"], "rejected");
    assert!(v["error"]
        .as_str()
        .unwrap()
        .starts_with("the upload is not a valid zip archive"));
}

/// Trains for about 7 s, printing a line per epoch; its forward() prints a marker.
const CHATTY: &str = r#"
import time
import torch.nn as nn
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(384, 128)
    def forward(self, x):
        print("INFERENCE-MARK", flush=True)
        return self.fc(x)
class Solution:
    def solve(self, train_loader, val_loader, metadata):
        for epoch in range(5):
            print(f"epoch {epoch} loss 0.{9 - epoch}", flush=True)
            time.sleep(1.5)
        return Net()
"#;

#[test]
fn cli_progress_shows_the_training_s_last_line_and_never_inference_output() {
    let dir = tempfile::tempdir().unwrap();
    let solution = dir.path().join("solution.py");
    std::fs::write(&solution, CHATTY).unwrap();
    let submit = |split: &[&str]| {
        let out = Command::new(util::proctor_bin())
            .args(["challenge", "submit", "imagenet-pareto-200k"])
            .args(split)
            .arg(&solution)
            .arg("--database")
            .arg(dir.path().join("proctor.db"))
            .env_remove("PROCTOR_SERVER")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
        assert!(!stderr.contains("INFERENCE-MARK"), "{stderr}");
        assert!(!stdout.contains("INFERENCE-MARK"), "{stdout}");
        (stdout, stderr)
    };
    let training_line = |stderr: &str| {
        stderr
            .lines()
            .any(|l| l.starts_with("[proctor] training, ") && l.contains(" loss 0."))
    };
    // The public split shows training's last line as it runs.
    let (_, stderr) = submit(&[]);
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("[proctor] training, ") && l.contains(" s elapsed | epoch ")),
        "no training progress with its last line:\n{stderr}"
    );
    assert!(training_line(&stderr), "{stderr}");
    // The official split, where training reads the official data, shows none of it.
    let (stdout, stderr) = submit(&["--official"]);
    assert!(stderr.contains("[proctor] training, "), "{stderr}");
    assert!(
        !training_line(&stderr) && !stderr.contains("epoch "),
        "{stderr}"
    );
    assert!(!stdout.contains("epoch "), "{stdout}");
}

#[test]
fn kill_9_mid_evaluation_then_restart_ends_with_a_real_status() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("proctor.db");
    let store = [OsStr::new("--database"), db.as_os_str()];
    let port = util::free_port();
    let token = account_token(&store, "crash");
    let mut server = serve(port, &store);
    let id = upload_slow_and_kill_mid_evaluation(port, &mut server, &token);
    let mut server = serve(port, &store);
    assert_scored_after_restart(port, &id, "crash");

    // `proctor challenge submit --server`: the same JSON contract, under the account.
    let server_url = format!("http://127.0.0.1:{port}");
    let remote = |token: Option<&str>| {
        let mut cmd = Command::new(util::proctor_bin());
        cmd.args(["challenge", "submit", "imagenet-pareto-200k"])
            .arg(example("strong/solution.py"))
            .args(["--json", "--server", &server_url])
            .env_remove("PROCTOR_TOKEN");
        if let Some(t) = token {
            cmd.env("PROCTOR_TOKEN", t);
        }
        cmd.output().unwrap()
    };
    // (With --json, an error is the one JSON object on stdout.)
    let out = remote(None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stdout);
    assert!(err.contains("--server needs an account token"), "{err}");
    let out = remote(Some("pct_forged"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stdout);
    assert!(err.contains("401 Unauthorized"), "{err}");
    let out = remote(Some(&token));
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(
        (out.status.code(), v["status"].as_str()),
        (Some(0), Some("scored")),
        "{v}"
    );
    assert_eq!(v["params"], 49_280);
    let (_, me) = challenge_http::http_as(port, Some(&token), "GET", "/api/me", "text/plain", b"");
    assert!(me.contains(v["submission_id"].as_str().unwrap()), "{me}");
    server.kill().unwrap();
    server.wait().unwrap();
}
