//! The gym's WebSocket refuses messages over its cap over real HTTP, and a normal
//! message on a fresh connection still works; connections count against capacity from
//! the upgrade.

mod util;

use futures_util::{SinkExt, StreamExt};
use proctor_gym::episode::{EpisodeConfig, Gym};
use proctor_gym::server::WS_MAX_MESSAGE_BYTES;
use tokio_tungstenite::tungstenite::Message;

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
