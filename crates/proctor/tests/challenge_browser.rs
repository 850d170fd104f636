//! The challenge platform in a real browser: headless Chromium, driven over the Chrome
//! DevTools Protocol (a WebSocket), logs in (an account made with `proctor user add`),
//! uploads a zip project through the challenge page's form, follows the redirect to the
//! submission page until the worker has scored it, checks the submission on the
//! challenge page, as a point of the Pareto plot and on the participant's own page
//! (`/me`), then logs out. A PNG screenshot of the challenge page is kept as a CI
//! artifact in `target/ci-artifacts/challenge-page.png`.
//!
//! Needs Debian's `chromium` (`.ci/run` installs it); fails, not skips, without it.

mod util;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHALLENGE: &str = "imagenet-pareto-200k";
const PARTICIPANT: &str = "browser-test";
const PASSWORD: &str = "a browser's password";
const SOLUTION_NAME: &str = "nearest-mean-zip";

/// A child process killed (with its whole process group) when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let pid = self.0.id();
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .stderr(Stdio::null())
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_grouped(cmd: &mut Command) -> Guard {
    use std::os::unix::process::CommandExt;
    Guard(cmd.process_group(0).spawn().unwrap())
}

fn wait_port(port: u16, what: &str) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{what} did not start listening on port {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A zip project (manifest + entrypoint) around the strong reference solution.
fn zip_project(dir: &Path) -> PathBuf {
    let project = dir.join("project");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/challenge/strong/solution.py"),
        project.join("solution.py"),
    )
    .unwrap();
    let manifest = json!({
        "challenge": CHALLENGE,
        "entrypoint": "solution.py",
        "class": "Solution",
        "name": SOLUTION_NAME,
    });
    std::fs::write(project.join("agentics.solution.json"), manifest.to_string()).unwrap();
    let zip = dir.join("nearest-mean.zip");
    let out = Command::new("python3")
        .args(["-m", "zipfile", "-c"])
        .arg(&zip)
        .args(["agentics.solution.json", "solution.py"])
        .current_dir(&project)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python3 -m zipfile failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    zip
}

/// GET over plain HTTP/1.1; the body (by Content-Length: Chromium's DevTools server
/// keeps the connection open).
fn http_get(port: u16, path: &str) -> String {
    use std::io::{BufRead, BufReader, Read, Write};
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut r = BufReader::new(s);
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap();
            }
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).unwrap();
    String::from_utf8(body).unwrap()
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("bad base64 byte {c}"),
        }
    };
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= val(c) << (18 - 6 * i);
        }
        out.extend_from_slice(&acc.to_be_bytes()[1..chunk.len()]);
    }
    out
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A minimal, sequential CDP client on one page target.
struct Cdp {
    ws: Ws,
    next_id: u64,
}

impl Cdp {
    /// Sends a command and waits for its reply (events in between are dropped); the
    /// `result`, or the protocol error as `Err`.
    async fn try_call(&mut self, method: &str, params: Value) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let msg = json!({ "id": id, "method": method, "params": params });
        self.ws
            .send(Message::Text(msg.to_string().into()))
            .await
            .map_err(|e| format!("send {method}: {e}"))?;
        let reply = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(m) = self.ws.next().await {
                let m = m.map_err(|e| format!("{method}: websocket: {e}"))?;
                let Message::Text(t) = m else { continue };
                let v: Value = serde_json::from_str(&t).map_err(|e| e.to_string())?;
                if v["id"] == id {
                    return Ok(v);
                }
            }
            Err(format!("{method}: the browser closed the connection"))
        })
        .await
        .map_err(|_| format!("{method}: no reply within 30 s"))??;
        if let Some(e) = reply.get("error") {
            return Err(format!("{method}: {e}"));
        }
        Ok(reply["result"].clone())
    }

    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.try_call(method, params)
            .await
            .unwrap_or_else(|e| panic!("CDP {e}"))
    }

    /// Evaluates a JS expression in the page; its value (by value), or `Err` when the
    /// page is navigating or the expression threw.
    async fn eval(&mut self, expr: &str) -> Result<Value, String> {
        let r = self
            .try_call(
                "Runtime.evaluate",
                json!({ "expression": expr, "returnByValue": true }),
            )
            .await?;
        if let Some(e) = r.get("exceptionDetails") {
            return Err(format!("{expr}: {e}"));
        }
        Ok(r["result"]["value"].clone())
    }

    /// Polls `expr` until it yields a non-null, non-false value.
    async fn wait_for(&mut self, expr: &str, limit: Duration, what: &str) -> Value {
        let start = Instant::now();
        loop {
            let last = match self.eval(expr).await {
                Ok(v) if !v.is_null() && v != Value::Bool(false) => return v,
                Ok(v) => v.to_string(),
                Err(e) => e,
            };
            assert!(
                start.elapsed() < limit,
                "timed out after {limit:?} waiting for {what}; last: {last}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Navigates and waits until the document at `url` has loaded.
    async fn open(&mut self, url: &str) {
        self.call("Page.navigate", json!({ "url": url })).await;
        let expr = format!(
            "document.readyState === 'complete' && location.href === {}",
            json!(url)
        );
        self.wait_for(&expr, Duration::from_secs(30), &format!("{url} to load"))
            .await;
    }
}

fn artifact_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../target/ci-artifacts"
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_through_the_form_shows_on_the_page_and_in_the_pareto_plot() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: this browser test needs Debian's headless Chromium, which \
         `.ci/run` installs (`apt-get install -y chromium`); install it the same way to run \
         the test locally"
    );
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let zip = zip_project(dir.path());

    // The platform, isolated on its own database, with one participant.
    let db = dir.path().join("proctor.db");
    add_user(&db);
    let port = util::free_port();
    let server_log = dir.path().join("server.log");
    let _server = spawn_grouped(
        Command::new(util::proctor_bin())
            .args(["serve", "--workers", "1", "--port"])
            .arg(port.to_string())
            .arg("--database")
            .arg(&db)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&server_log).unwrap()),
    );
    wait_port(port, "proctor serve");

    // Headless Chromium; port 0 lets it pick one and write it to DevToolsActivePort.
    let profile = dir.path().join("chromium-profile");
    let chromium_log = dir.path().join("chromium.log");
    let _chromium = spawn_grouped(
        Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-quic",
                "--remote-debugging-port=0",
                "--remote-debugging-address=127.0.0.1",
                "--window-size=1280,1700",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&chromium_log).unwrap()),
    );
    let active = profile.join("DevToolsActivePort");
    let start = Instant::now();
    let devtools_port: u16 = loop {
        if let Some(p) = std::fs::read_to_string(&active)
            .ok()
            .and_then(|s| s.lines().next().and_then(|l| l.trim().parse().ok()))
        {
            break p;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "chromium did not open its DevTools port; its log:\n{}",
            std::fs::read_to_string(&chromium_log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    wait_port(devtools_port, "chromium DevTools");
    let targets: Value = serde_json::from_str(&http_get(devtools_port, "/json/list")).unwrap();
    let ws_url = targets
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["type"] == "page")
        .and_then(|t| t["webSocketDebuggerUrl"].as_str())
        .unwrap_or_else(|| panic!("no page target: {targets}"))
        .to_string();
    let (ws, _) = tokio_tungstenite::connect_async(ws_url.as_str())
        .await
        .unwrap();
    let mut cdp = Cdp { ws, next_id: 0 };
    cdp.call("Page.enable", json!({})).await;
    cdp.call("Runtime.enable", json!({})).await;

    // Signed out, the challenge page has no upload form: log in through the form.
    let base = format!("http://127.0.0.1:{port}");
    let page_url = format!("{base}/challenges/{CHALLENGE}");
    cdp.open(&page_url).await;
    let form = cdp
        .eval("document.querySelectorAll('input[type=file]').length")
        .await
        .unwrap();
    assert_eq!(form, 0, "an upload form for a signed-out visitor");
    log_in(&mut cdp, &base).await;
    cdp.open(&page_url).await;
    let doc = cdp.call("DOM.getDocument", json!({})).await;
    let input = cdp
        .call(
            "DOM.querySelector",
            json!({
                "nodeId": doc["root"]["nodeId"],
                "selector": format!("form[action='/challenges/{CHALLENGE}/submit'] input[type=file][name=file]"),
            }),
        )
        .await;
    assert_ne!(input["nodeId"], 0, "no file input in the upload form");
    cdp.call(
        "DOM.setFileInputFiles",
        json!({ "nodeId": input["nodeId"], "files": [zip.to_str().unwrap()] }),
    )
    .await;
    let picked = cdp
        .eval("document.querySelector('input[name=file]').files[0].name")
        .await
        .unwrap();
    assert_eq!(picked, "nearest-mean.zip");
    cdp.eval("document.querySelector('form[enctype] button[type=submit]').click(); true")
        .await
        .unwrap();

    // The form redirects to the submission page, which refreshes itself until scored.
    let id = cdp
        .wait_for(
            "document.readyState === 'complete' && location.pathname.startsWith('/submissions/') \
             && location.pathname.slice('/submissions/'.length)",
            Duration::from_secs(30),
            "the redirect to the submission page",
        )
        .await
        .as_str()
        .unwrap()
        .to_string();
    let status = cdp
        .wait_for(
            "(() => { const td = document.querySelector('td[class^=status-]'); \
             const s = td && td.textContent; \
             return (s && s !== 'queued' && s !== 'running') ? s : null; })()",
            Duration::from_secs(120),
            "the worker to finish the submission",
        )
        .await;
    let submission_text = cdp.eval("document.body.innerText").await.unwrap();
    assert_eq!(
        status,
        "scored",
        "submission {id}: {submission_text}\nserver log:\n{}",
        std::fs::read_to_string(&server_log).unwrap_or_default()
    );
    let submission_text = submission_text.as_str().unwrap();
    assert!(
        submission_text.contains(PARTICIPANT) && submission_text.contains("nearest-mean.zip"),
        "{submission_text}"
    );
    assert!(
        submission_text.contains("49280 of 200000"),
        "{submission_text}"
    );

    // Back on the challenge page: keep a screenshot, then check the table and the plot.
    cdp.open(&page_url).await;
    let shot = cdp
        .call(
            "Page.captureScreenshot",
            json!({ "format": "png", "captureBeyondViewport": false }),
        )
        .await;
    let png = base64_decode(shot["data"].as_str().unwrap());
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let artifacts = artifact_dir();
    std::fs::create_dir_all(&artifacts).unwrap();
    let png_path = artifacts.join("challenge-page.png");
    std::fs::write(&png_path, &png).unwrap();
    eprintln!("screenshot: {}", png_path.display());

    let check = cdp
        .eval(&format!(
            "(() => {{ \
               const href = '/submissions/' + {id}; \
               const row = [...document.querySelectorAll('table tr')] \
                 .find(tr => tr.querySelector(`a[href='${{href}}']`)); \
               const circle = document.querySelector(`.pareto svg a[href='${{href}}'] circle`); \
               const box = circle && circle.getBoundingClientRect(); \
               return {{ \
                 row: row ? row.innerText : null, \
                 point_class: circle ? circle.getAttribute('class') : null, \
                 point_title: circle ? circle.querySelector('title').textContent : null, \
                 point_visible: !!box && box.width > 0 && box.height > 0, \
                 points: document.querySelectorAll('.pareto svg circle').length, \
               }}; }})()",
            id = json!(id)
        ))
        .await
        .unwrap();
    let row = check["row"]
        .as_str()
        .unwrap_or_else(|| panic!("submission {id} is not listed on the challenge page: {check}"));
    assert!(
        row.contains(PARTICIPANT) && row.contains(SOLUTION_NAME) && row.contains("scored"),
        "{check}"
    );
    assert_eq!(check["points"], 1, "{check}");
    assert_eq!(check["point_class"], "point frontier-point", "{check}");
    assert_eq!(check["point_visible"], true, "{check}");
    let title = check["point_title"].as_str().unwrap();
    assert!(
        title.starts_with(&format!("{PARTICIPANT} / {SOLUTION_NAME}: 49280 params")),
        "{check}"
    );

    my_page_then_log_out(&mut cdp, &base, &id).await;
    let _ = cdp.try_call("Browser.close", json!({})).await;
    eprintln!("browser test took {:.1} s", started.elapsed().as_secs_f64());
}

/// `proctor user add PARTICIPANT --password-stdin` on the test's database.
fn add_user(db: &Path) {
    use std::io::Write;
    let mut child = Command::new(util::proctor_bin())
        .args(["user", "add", PARTICIPANT, "--password-stdin", "--database"])
        .arg(db)
        .env_remove("PROCTOR_DATABASE_URL")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{PASSWORD}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Logs in through `/login`'s form; lands on `/me`.
async fn log_in(cdp: &mut Cdp, base: &str) {
    cdp.open(&format!("{base}/login")).await;
    cdp.eval(&format!(
        "document.querySelector('input[name=name]').value = {}; \
         document.querySelector('input[name=password]').value = {}; \
         document.querySelector('form button[type=submit]').click(); true",
        json!(PARTICIPANT),
        json!(PASSWORD)
    ))
    .await
    .unwrap();
    let me = cdp
        .wait_for(
            "document.readyState === 'complete' && location.pathname === '/me' \
             && document.body.innerText",
            Duration::from_secs(30),
            "the login to land on /me",
        )
        .await;
    assert!(
        me.as_str()
            .unwrap()
            .contains(&format!("Signed in as {PARTICIPANT}")),
        "{me}"
    );
    // The session cookie is out of the page's reach (HttpOnly).
    let cookies = cdp.eval("document.cookie").await.unwrap();
    assert_eq!(cookies, "", "a script can read the session cookie");
}

/// `/me` lists the submission with its status; logging out ends the session.
async fn my_page_then_log_out(cdp: &mut Cdp, base: &str, id: &str) {
    cdp.open(&format!("{base}/me")).await;
    let row = cdp
        .eval(&format!(
            "(() => {{ const a = document.querySelector(`#my-submissions a[href='/submissions/${{{}}}']`); \
               return a ? a.closest('tr').innerText : null; }})()",
            json!(id)
        ))
        .await
        .unwrap();
    let row = row
        .as_str()
        .unwrap_or_else(|| panic!("submission {id} is not on /me"));
    assert!(
        row.contains(SOLUTION_NAME) && row.contains(CHALLENGE) && row.contains("scored"),
        "{row}"
    );
    cdp.eval("document.querySelector('form[action=\"/logout\"] button').click(); true")
        .await
        .unwrap();
    cdp.wait_for(
        "document.readyState === 'complete' && location.pathname === '/login'",
        Duration::from_secs(30),
        "the logout to land on /login",
    )
    .await;
    // Signed out for good: /me sends the browser back to log in.
    cdp.call("Page.navigate", json!({ "url": format!("{base}/me") }))
        .await;
    cdp.wait_for(
        "document.readyState === 'complete' && location.pathname === '/login' \
         && location.search === '?next=/me'",
        Duration::from_secs(30),
        "/me to redirect to the login page",
    )
    .await;
}
