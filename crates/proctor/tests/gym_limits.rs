//! The gym's WebSocket refuses messages over its cap over real HTTP, and a normal
//! message on a fresh connection still works; connections count against capacity from
//! the upgrade; a silent connection is closed and gives its slot back, but a call that
//! runs longer than the idle period is not cut. Resets sent at once start no more
//! episodes than the gym holds, by count and by the memory their sessions may use. A socket
//! dropped by an episode that built a very deep directory chain leaves the server serving.
//! A request body that stalls is answered 408 and its connection closed. Finished
//! episodes over HTTP are forgotten beyond the kept number.

mod util;

use futures_util::{SinkExt, StreamExt};
use proctor_gym::admission::GradingLimits;
use proctor_gym::episode::{EpisodeConfig, Gym};
use proctor_gym::server::WS_MAX_MESSAGE_BYTES;
use serde_json::{json, Value};
use std::time::Duration;

use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects, retrying while the gym's only slot is still being given back.
async fn connect(url: &str) -> Ws {
    connect_within(url, Duration::from_secs(5)).await
}

/// [`connect`], retrying for up to `within`.
async fn connect_within(url: &str, within: Duration) -> Ws {
    let start = std::time::Instant::now();
    while start.elapsed() < within {
        if let Ok((ws, _)) = tokio_tungstenite::connect_async(url).await {
            return ws;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{url}: no slot came back");
}

/// The reason of the close frame the server sends next (within `within`).
async fn closed_for(ws: &mut Ws, within: Duration) -> String {
    loop {
        let next = tokio::time::timeout(within, ws.next())
            .await
            .expect("the server must close a silent connection");
        match next {
            Some(Ok(Message::Close(Some(frame)))) => {
                assert_eq!(frame.code, CloseCode::Away, "{frame:?}");
                return frame.reason.to_string();
            }
            Some(Ok(Message::Pong(_))) => continue,
            other => panic!("expected a close frame with its reason, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_websocket_message_closes_the_connection() {
    let gym = Gym::new(util::backend().await, 2, EpisodeConfig::default());
    let (port, server) = util::serve_gym(gym).await;
    let url = format!("ws://127.0.0.1:{port}/ws");

    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let big = "x".repeat(WS_MAX_MESSAGE_BYTES + 1);
    let _ = ws.send(Message::text(big)).await;
    let next = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
        .await
        .expect("the server must answer an oversized message by closing");
    assert!(
        matches!(next, None | Some(Err(_)) | Some(Ok(Message::Close(_)))),
        "{next:?}"
    );

    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    ws.send(Message::text(r#"{"type": "state"}"#))
        .await
        .unwrap();
    let reply = ws.next().await.unwrap().unwrap();
    assert!(matches!(reply, Message::Text(_)), "{reply:?}");
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_connections_count_against_capacity_at_upgrade() {
    let gym = Gym::new(util::backend().await, 1, EpisodeConfig::default());
    let (port, server) = util::serve_gym(gym).await;
    let url = format!("ws://127.0.0.1:{port}/ws");
    // One idle connection (no episode yet) fills a gym of one.
    let (mut first, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    match tokio_tungstenite::connect_async(&url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 503);
            let body = String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default());
            assert!(body.contains("CAPACITY_REACHED"), "{body}");
        }
        other => panic!("a second connection must be refused before upgrading: {other:?}"),
    }
    // Closing it gives the slot back.
    first.close(None).await.unwrap();
    while first.next().await.is_some() {}
    let mut again = None;
    for _ in 0..50 {
        if let Ok((ws, _)) = tokio_tungstenite::connect_async(&url).await {
            again = Some(ws);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let mut again = again.expect("the slot comes back once the first socket closed");
    again
        .send(Message::text(r#"{"type": "state"}"#))
        .await
        .unwrap();
    assert!(matches!(again.next().await, Some(Ok(Message::Text(_)))));
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_websocket_is_closed_and_gives_its_slot_back() {
    let config = EpisodeConfig {
        socket_idle_timeout: Duration::from_secs(1),
        ..EpisodeConfig::default()
    };
    let gym = Gym::new(util::backend().await, 1, config);
    let (port, server) = util::serve_gym(gym).await;
    let url = format!("ws://127.0.0.1:{port}/ws");

    let mut ws = connect(&url).await;
    // A keepalive is not a message: it does not hold the slot open.
    ws.send(Message::Ping(b"alive".to_vec().into()))
        .await
        .unwrap();
    let reason = closed_for(&mut ws, Duration::from_secs(20)).await;
    assert!(reason.contains("idle for 1 s"), "{reason}");

    // The gym of one takes a new connection, which works.
    let mut again = connect(&url).await;
    again
        .send(Message::text(r#"{"type": "state"}"#))
        .await
        .unwrap();
    let reply = again.next().await.unwrap().unwrap();
    assert!(reply.to_text().unwrap().contains("\"state\""), "{reply:?}");
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_longer_than_the_idle_period_is_not_cut() {
    let config = EpisodeConfig {
        socket_idle_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(2),
        ..EpisodeConfig::default()
    };
    let gym = Gym::new(util::backend().await, 1, config);
    let (port, server) = util::serve_gym(gym).await;
    let mut ws = connect(&format!("ws://127.0.0.1:{port}/ws")).await;
    ws.send(Message::text(
        r#"{"type": "reset", "data": {"task_id": "task1"}}"#,
    ))
    .await
    .unwrap();
    let reset = ws.next().await.unwrap().unwrap();
    assert!(
        reset.to_text().unwrap().contains("observation"),
        "{reset:?}"
    );

    // The snippet runs for 4 s, twice the episode's idle period: it completes.
    let step = r#"{"type": "step", "data": {"action_type": "execute_snippet", "code": "import time; time.sleep(4); print('slept')"}}"#;
    ws.send(Message::text(step)).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(60), ws.next())
        .await
        .expect("the call returns")
        .unwrap()
        .unwrap();
    let text = reply.to_text().unwrap().to_string();
    assert!(
        text.contains("observation") && text.contains("slept"),
        "{text}"
    );

    // Then silence: the socket with its episode closes after the episode's idle period.
    let reason = closed_for(&mut ws, Duration::from_secs(20)).await;
    assert!(reason.contains("idle for 2 s"), "{reason}");
    server.abort();
}

/// `n` `/reset`s sent at once to the gym on `port`: their statuses and bodies, sorted.
async fn resets_at_once(port: u16, n: usize) -> Vec<(u16, String)> {
    let resets: Vec<_> = (0..n)
        .map(|_| {
            tokio::spawn(async move {
                util::http(port, "POST", "/reset", None, &json!({"task_id": "task1"})).await
            })
        })
        .collect();
    let mut answers = Vec::new();
    for r in resets {
        let (code, body) = r.await.unwrap();
        assert!(code == 200 || body.contains("CAPACITY_REACHED"), "{body}");
        answers.push((code, body));
    }
    answers.sort();
    answers
}

fn codes(answers: &[(u16, String)]) -> Vec<u16> {
    answers.iter().map(|a| a.0).collect()
}

async fn health(port: u16) -> Value {
    let (code, body) = util::http(port, "GET", "/health", None, &Value::Null).await;
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resets_at_once_start_no_more_episodes_than_the_gym_holds() {
    let gym = Gym::new(util::backend().await, 2, EpisodeConfig::default());
    let (port, server) = util::serve_gym(gym).await;
    let answers = resets_at_once(port, 5).await;
    let health = health(port).await;
    assert_eq!(codes(&answers), [200, 200, 503, 503, 503], "{health}");
    assert_eq!(health["active_episodes"], 2, "{health}");
    assert_eq!(health["grading"]["sessions"], 2, "{health}");
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn episodes_are_bounded_by_the_memory_their_sessions_may_use() {
    // Room for two sessions' memory limits; eight episodes by count.
    let mut config = EpisodeConfig {
        max_turns: 1,
        ..EpisodeConfig::default()
    };
    let session_mb = config.session_limits.memory_mb;
    config.grading = GradingLimits {
        memory_budget_mb: 2 * session_mb + session_mb / 2,
        max_running: 2,
        max_queued: 8,
    };
    let (port, server) = util::serve_gym(Gym::new(util::backend().await, 8, config)).await;
    let answers = resets_at_once(port, 4).await;
    assert_eq!(codes(&answers), [200, 200, 503, 503]);
    assert!(answers[3].1.contains("MiB of memory"), "{}", answers[3].1);
    assert_eq!(
        health(port).await["grading"]["sessions_memory_mb"],
        2 * session_mb
    );

    // An episode that ends (here at its one turn) gives its session's memory back.
    let reset: Value = serde_json::from_str(&answers[0].1).unwrap();
    let step =
        json!({"episode_id": reset["episode_id"], "action_type": "execute_snippet", "code": "1"});
    let token = reset["episode_token"].as_str().unwrap();
    let (code, body) = util::http(port, "POST", "/step", Some(token), &step).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["done"], true);
    assert_eq!(codes(&resets_at_once(port, 1).await), [200]);
    server.abort();
}

/// Sends one action and returns the text of the reply, within `within`.
async fn call(ws: &mut Ws, action: serde_json::Value, within: Duration) -> String {
    ws.send(Message::text(action.to_string())).await.unwrap();
    loop {
        let reply = tokio::time::timeout(within, ws.next())
            .await
            .expect("the call returns")
            .unwrap()
            .unwrap();
        match reply {
            Message::Text(text) => return text.to_string(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a text reply, got {other:?}"),
        }
    }
}

fn snippet(code: &str) -> serde_json::Value {
    serde_json::json!({"type": "step", "data": {"action_type": "execute_snippet", "code": code}})
}

/// The issue's crash: an episode builds a 25,000-deep chain in its scratch and its socket
/// goes away without a close frame. The server must stay up and healthy, give the slot
/// back, and run a new episode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_dropped_after_a_25000_deep_chain_leaves_the_server_serving() {
    // Building the chain takes seconds; a loaded machine is much slower.
    let config = EpisodeConfig {
        call_timeout: Duration::from_secs(600),
        ..EpisodeConfig::default()
    };
    let gym = Gym::new(util::backend().await, 1, config);
    let (port, server) = util::serve_gym(gym).await;
    let url = format!("ws://127.0.0.1:{port}/ws");

    let mut ws = connect(&url).await;
    let reset = serde_json::json!({"type": "reset", "data": {"task_id": "task1"}});
    let r = call(&mut ws, reset.clone(), Duration::from_secs(300)).await;
    assert!(r.contains("observation"), "{r}");
    let top = format!("deep-{}", util::marker());
    let chain = format!(
        "{}print(os.path.isdir(os.path.join({top:?}, *['d'] * 20)))\n",
        util::deep_chain(&top, 25_000)
    );
    let r = call(&mut ws, snippet(&chain), Duration::from_secs(660)).await;
    assert!(r.contains("built\\nTrue"), "{r}");
    drop(ws);

    // The episode is freed (the gym of one takes a new connection) and a new one works.
    let mut again = connect_within(&url, Duration::from_secs(120)).await;
    let r = call(&mut again, reset, Duration::from_secs(300)).await;
    assert!(r.contains("observation"), "{r}");
    let r = call(
        &mut again,
        snippet("print('new episode')"),
        Duration::from_secs(60),
    )
    .await;
    assert!(r.contains("new episode"), "{r}");
    let health = health(port).await;
    assert!(health.to_string().contains("\"healthy\""), "{health}");
    assert_eq!(health["active_episodes"], 1, "{health}");
    assert!(!server.is_finished(), "the server stopped");
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_never_finishes_does_not_hold_its_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config = EpisodeConfig {
        body_timeout: Duration::from_secs(1),
        ..EpisodeConfig::default()
    };
    let (port, server) = util::serve_gym(Gym::new(util::backend().await, 2, config)).await;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let head = "POST /reset HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"task";
    s.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut answer))
        .await
        .expect("the server answers and closes a body that stalls")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("did not arrive within 1 s"), "{answer}");
    // A whole request is still served.
    let (code, body) = util::http(port, "POST", "/reset", None, &json!({"task_id": "task1"})).await;
    assert_eq!(code, 200, "{body}");
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_episodes_over_http_are_not_kept_for_good() {
    let config = EpisodeConfig {
        max_turns: 1,
        kept_finished: 2,
        ..EpisodeConfig::default()
    };
    let (port, server) = util::serve_gym(Gym::new(util::backend().await, 2, config)).await;
    for i in 0..5 {
        let (code, body) =
            util::http(port, "POST", "/reset", None, &json!({"task_id": "task1"})).await;
        assert_eq!(code, 200, "{body}");
        let reset: Value = serde_json::from_str(&body).unwrap();
        let step = json!({"episode_id": reset["episode_id"], "action_type": "execute_snippet", "code": "1"});
        let token = reset["episode_token"].as_str().unwrap();
        let (code, body) = util::http(port, "POST", "/step", Some(token), &step).await;
        assert_eq!(code, 200, "episode {i}: {body}");
    }
    // The two latest finished ones and nothing else (the last reset came before its end).
    let health = health(port).await;
    assert_eq!(health["active_episodes"], 3, "{health}");
    server.abort();
}
