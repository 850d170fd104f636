//! The gym's WebSocket refuses messages over its cap over real HTTP, and a normal
//! message on a fresh connection still works.

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
