//! Who may act in the gym: on a gym that requires tokens, a second account cannot step,
//! read, grade or view the first account's episode over HTTP, MCP or the pages; a
//! WebSocket signs in with basic auth (what OpenEnv clients send for
//! `http://token:TOKEN@host`) and is closed when its token is revoked; the episode
//! tokens handed out under a revoked token stop working with it.

mod util;

use std::sync::Arc;

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use proctor_accounts::{Accounts, Role};
use proctor_gym::episode::{Access, EpisodeConfig, Gym};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

async fn mcp_call(port: u16, token: Option<&str>, tool: &str, args: Value) -> Value {
    let req = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": args}});
    let (code, body) = util::http(port, "POST", "/mcp", token, &req).await;
    assert_eq!(code, 200, "{body}");
    json_of(&body)["result"].clone()
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn call(ws: &mut Ws, msg: Value) -> Value {
    ws.send(Message::Text(msg.to_string().into()))
        .await
        .unwrap();
    match ws.next().await {
        Some(Ok(Message::Text(t))) => json_of(&t),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_account_cannot_touch_the_first_accounts_episode() {
    let dir = tempfile::tempdir().unwrap();
    let store = proctor_store::Store::open(&dir.path().join("proctor.db"))
        .await
        .unwrap();
    let accounts = Accounts::new(store);
    accounts
        .add_user("alice", Role::Participant, None)
        .await
        .unwrap();
    accounts
        .add_user("bob", Role::Participant, None)
        .await
        .unwrap();
    let alice = accounts.create_token("alice", "trainer").await.unwrap();
    let bob = accounts.create_token("bob", "laptop").await.unwrap();
    let access = Access {
        accounts: Some(accounts.clone()),
        require_token: true,
    };
    let gym: Arc<Gym> =
        Gym::with_access(util::backend().await, 4, EpisodeConfig::default(), access);
    let (port, server) = util::serve_gym(gym).await;

    // A private gym: nothing without a token but /health.
    assert_eq!(
        util::http(port, "GET", "/health", None, &Value::Null)
            .await
            .0,
        200
    );
    for (method, path) in [
        ("POST", "/reset"),
        ("GET", "/tasks"),
        ("GET", "/"),
        ("POST", "/mcp"),
    ] {
        let (code, body) = util::http(port, method, path, None, &json!({})).await;
        assert_eq!(code, 401, "{method} {path}: {body}");
    }
    assert_eq!(
        util::http(port, "GET", "/tasks", Some("pct_forged"), &Value::Null)
            .await
            .0,
        401
    );

    let (code, body) = util::http(
        port,
        "POST",
        "/reset",
        Some(&alice),
        &json!({"task_id": "task1"}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let reset = json_of(&body);
    let eid = reset["episode_id"].as_str().unwrap().to_string();
    let episode_token = reset["episode_token"].as_str().unwrap().to_string();
    assert!(episode_token.starts_with("pce_"));

    // Bob: step, state, page, listing, MCP — all as if the episode did not exist.
    let snippet = json!({"episode_id": eid, "action_type": "execute_snippet", "code": "1 + 1"});
    let (code, body) = util::http(port, "POST", "/step", Some(&bob), &snippet).await;
    assert_eq!(code, 404, "{body}");
    assert!(!body.contains("1 + 1"));
    let state = format!("/state?episode_id={eid}");
    assert_eq!(
        util::http(port, "GET", &state, Some(&bob), &Value::Null)
            .await
            .0,
        404
    );
    let page = format!("/episodes/{eid}");
    assert_eq!(
        util::http(port, "GET", &page, Some(&bob), &Value::Null)
            .await
            .0,
        404
    );
    let (code, index) = util::http(port, "GET", "/", Some(&bob), &Value::Null).await;
    assert_eq!(code, 200);
    assert!(!index.contains(&eid), "another account's episode is listed");
    let grade = mcp_call(
        port,
        Some(&bob),
        "submit_fix",
        json!({"episode_id": eid, "fixed_code": "pass"}),
    )
    .await;
    assert_eq!(grade["isError"], true, "{grade}");

    // Alice, by her account token or by the episode token.
    let (code, body) = util::http(port, "POST", "/step", Some(&alice), &snippet).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(json_of(&body)["observation"]["value"], "2");
    let (code, body) = util::http(port, "GET", &state, Some(&episode_token), &Value::Null).await;
    assert_eq!(
        (code, json_of(&body)["step_count"].as_u64()),
        (200, Some(1)),
        "{body}"
    );
    assert_eq!(
        util::http(port, "GET", &page, Some(&alice), &Value::Null)
            .await
            .0,
        200
    );
    assert!(util::http(port, "GET", "/", Some(&alice), &Value::Null)
        .await
        .1
        .contains(&eid));
    let r = mcp_call(
        port,
        Some(&alice),
        "execute_snippet",
        json!({"episode_id": eid, "code": "6 * 7"}),
    )
    .await;
    assert_eq!(r["structuredContent"]["observation"]["value"], "42", "{r}");
    // Bob's episode was never touched: still at Alice's two steps.
    let (_, body) = util::http(port, "GET", &state, Some(&alice), &Value::Null).await;
    assert_eq!(json_of(&body)["step_count"], 2, "{body}");

    // A WebSocket signs in with basic auth, as OpenEnv's client does for a base URL
    // `http://token:TOKEN@host`; revoking the token ends the connection.
    let mut request = format!("ws://127.0.0.1:{port}/ws")
        .into_client_request()
        .unwrap();
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("token:{alice}"));
    request
        .headers_mut()
        .insert("authorization", format!("Basic {basic}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let r = call(
        &mut ws,
        json!({"type": "reset", "data": {"task_id": "task2"}}),
    )
    .await;
    assert_eq!(r["type"], "observation", "{r}");
    let step = json!({"type": "step", "data": {"action_type": "execute_snippet", "code": "3 * 3"}});
    assert_eq!(
        call(&mut ws, step.clone()).await["data"]["observation"]["value"],
        "9"
    );
    accounts.revoke("alice", Some("trainer")).await.unwrap();
    let r = call(&mut ws, step).await;
    assert_eq!(r["data"]["code"], "UNAUTHORIZED", "{r}");
    assert!(matches!(
        ws.next().await,
        None | Some(Ok(Message::Close(_))) | Some(Err(_))
    ));
    assert_eq!(
        util::http(port, "POST", "/step", Some(&alice), &snippet)
            .await
            .0,
        401
    );
    // Its episode token dies with it: it was issued under the revoked token.
    let (code, body) = util::http(port, "GET", &state, Some(&episode_token), &Value::Null).await;
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("no episode"), "{body}");
    let r = mcp_call(
        port,
        Some(&episode_token),
        "execute_snippet",
        json!({"episode_id": eid, "code": "1"}),
    )
    .await;
    assert_eq!(r["isError"], true, "{r}");
    let unauthenticated = format!("ws://127.0.0.1:{port}/ws");
    assert!(tokio_tungstenite::connect_async(unauthenticated)
        .await
        .is_err());
    server.abort();
}
