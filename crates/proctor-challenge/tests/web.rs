//! The HTTP layer over a real store, with a backend that runs nothing: uploads,
//! rejections, pages and the Pareto plot.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use proctor_accounts::{Role, Session};
use proctor_challenge::{Platform, PlatformConfig};
use proctor_core::{Job, JobError, RunResult};
use proctor_engine::Backend;
use proctor_store::Finished;
use tower::ServiceExt;

#[derive(Clone)]
struct NoBackend;

impl Backend for NoBackend {
    async fn run(&self, _job: Job) -> Result<RunResult, JobError> {
        Err(JobError::Engine("no backend in this test".into()))
    }
}

const SOLUTION: &str = "import torch\nclass Solution:\n    def solve(self, a, b, m):\n        return torch.nn.Linear(384, 128)\n";

fn multipart(file_name: &str, bytes: &[u8], csrf: Option<&str>) -> (String, Vec<u8>) {
    let boundary = "XproctorBoundaryX";
    let mut body = Vec::new();
    if let Some(csrf) = csrf {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{csrf}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
    );
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn call(app: &axum::Router, req: Request<Body>) -> (StatusCode, Option<String>, String) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let location = resp
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        location,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

/// Who sends a request: an API token, or a browser's session cookie and its CSRF token.
enum Who<'a> {
    Token(&'a str),
    Browser(&'a Session),
}

fn post(uri: &str, file_name: &str, bytes: &[u8], who: Who) -> Request<Body> {
    let (header, csrf) = match who {
        Who::Token(t) => (("authorization", format!("Bearer {t}")), None),
        Who::Browser(s) => (
            ("cookie", format!("proctor_session={}", s.secret)),
            Some(s.csrf.as_str()),
        ),
    };
    let (ct, body) = multipart(file_name, bytes, csrf);
    Request::post(uri)
        .header("content-type", ct)
        .header(header.0, header.1)
        .body(Body::from(body))
        .unwrap()
}

fn get_as(uri: &str, session: &Session) -> Request<Body> {
    Request::get(uri)
        .header("cookie", format!("proctor_session={}", session.secret))
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn upload_list_pages_and_pareto_plot() {
    let home = tempfile::tempdir().unwrap();
    let platform = Platform::open(NoBackend, PlatformConfig::new(home.path().to_path_buf()))
        .await
        .unwrap();
    let app: axum::Router = proctor_challenge::web::router(platform.clone());
    let accounts = platform.accounts();
    for name in ["alice", "mallory", "bob"] {
        accounts
            .add_user(name, Role::Participant, Some("password-1"))
            .await
            .unwrap();
    }
    let alice = accounts.create_token("alice", "t").await.unwrap();
    let mallory = accounts.create_token("mallory", "t").await.unwrap();
    let bob = accounts.login("bob", "password-1", "test").await.unwrap();

    let (st, _, body) = call(&app, get("/api/challenges")).await;
    assert_eq!(st, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["challenges"].as_array().unwrap().len(), 5);
    let (st, _, body) = call(&app, get("/api/challenges/imagenet-pareto-9k")).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert!(body.contains("unknown challenge"));

    // API upload of a bare solution.py: queued.
    let (st, _, body) = call(
        &app,
        post(
            "/api/challenges/imagenet-pareto-500k/submissions",
            "solution.py",
            SOLUTION.as_bytes(),
            Who::Token(&alice),
        ),
    )
    .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "queued");
    let id = v["submission_id"].as_str().unwrap().to_string();

    // A path-traversal zip: rejected, stored, with the reason.
    let evil = proctor_challenge::intake::zip_files(&[("../evil.py", b"x")]).unwrap();
    let (st, _, body) = call(
        &app,
        post(
            "/api/challenges/imagenet-pareto-500k/submissions",
            "evil.zip",
            &evil,
            Who::Token(&mallory),
        ),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body.contains("unsafe path"), "{body}");

    // The upload form redirects to the submission page.
    let (st, location, _) = call(
        &app,
        post(
            "/challenges/imagenet-pareto-500k/submit",
            "solution.py",
            SOLUTION.as_bytes(),
            Who::Browser(&bob),
        ),
    )
    .await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    let location = location.unwrap();
    assert!(location.starts_with("/submissions/"));
    let (st, _, page) = call(&app, get(&location)).await;
    assert_eq!(st, StatusCode::OK);
    assert!(page.contains("queued") && page.contains("bob"), "{page}");

    // Alice's submission is scored (as a worker would record it).
    platform.store().claim(&id).await.unwrap().unwrap();
    platform
        .store()
        .finish(
            &id,
            &Finished {
                status: "scored".into(),
                score: Some(96.5),
                accuracy: Some(0.9902),
                params: Some(49_280),
                params_trainable: Some(49_280),
                ..Finished::default()
            },
        )
        .await
        .unwrap();
    let (_, _, body) = call(&app, get(&format!("/api/submissions/{id}"))).await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "scored");
    assert_eq!(v["params"], 49_280);
    let (_, _, body) = call(
        &app,
        get("/api/challenges/imagenet-pareto-500k/leaderboard"),
    )
    .await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["entries"][0]["participant"], "alice");
    assert_eq!(v["entries"][0]["rank"], 1);

    let csrf_field = format!("name=\"csrf\" value=\"{}\"", bob.csrf);
    let (st, _, page) = call(&app, get_as("/challenges/imagenet-pareto-500k", &bob)).await;
    assert_eq!(st, StatusCode::OK);
    for needle in [
        "ImageNet Pareto 500K",
        "alice",
        "mallory",
        "rejected",
        "<svg",
        "frontier-point",
        "enctype=\"multipart/form-data\"",
        csrf_field.as_str(),
        "<h2>Statement</h2>",
        "trainable: the original rule, parameters with requires_grad only",
        "8 CPUs",
        "2 × input_dim (768)",
    ] {
        assert!(page.contains(needle), "missing {needle}");
    }
    let (st, _, svg) = call(&app, get("/challenges/imagenet-pareto-500k/pareto.svg")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(svg.matches("frontier-point").count(), 1);
    let (_, _, list) = call(&app, get("/challenges")).await;
    assert!(list.contains("/challenges/imagenet-pareto-2.5m"));
    let (_, _, api) = call(&app, get("/api/openapi.json")).await;
    let v: serde_json::Value = serde_json::from_str(&api).unwrap();
    assert!(v["paths"]["/api/challenges/{id}/submissions"]["post"].is_object());
}
