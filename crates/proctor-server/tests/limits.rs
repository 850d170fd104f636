//! The connection limits over real TCP: slowloris and idle clients are dropped after the
//! header-read timeout, a client cannot hold more than its share of connections, and the
//! server keeps answering everyone else.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::Router;
use proctor_server::{serve_with_limits, ServerLimits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn start(limits: ServerLimits) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = Router::new().route(
        "/peer",
        get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.ip().to_string() }),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve_with_limits(
        listener,
        router,
        async {
            let _ = stopped.await;
        },
        limits,
    ));
    (addr, stop)
}

/// Reads until the server closes the connection (or 10 s pass); the bytes read.
async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut got)).await;
    got
}

async fn get_peer(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /peer HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    String::from_utf8_lossy(&read_to_close(&mut s).await).into_owned()
}

#[tokio::test]
async fn slow_or_idle_clients_are_dropped_after_the_header_timeout() {
    let (addr, _stop) = start(ServerLimits {
        header_read_timeout: Duration::from_secs(1),
        ..ServerLimits::default()
    })
    .await;
    // Slowloris: headers begun, never finished.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /peer HTTP/1.1\r\nHost: t\r\n")
        .await
        .unwrap();
    // Idle: a kept-alive connection after one full request.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /peer HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let start = Instant::now();
    let (slow_got, idle_got) = tokio::join!(read_to_close(&mut slow), read_to_close(&mut idle));
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    // The slow client never got an answer; the idle one got its answer, then was closed.
    assert!(!String::from_utf8_lossy(&slow_got).contains("200 OK"));
    let idle_got = String::from_utf8_lossy(&idle_got);
    assert!(idle_got.starts_with("HTTP/1.1 200 OK"), "{idle_got}");
    assert!(idle_got.ends_with("127.0.0.1"), "{idle_got}");
    assert!(get_peer(addr).await.contains("200 OK"));
}

#[tokio::test]
async fn one_client_cannot_hold_more_than_its_connections() {
    let (addr, _stop) = start(ServerLimits {
        max_per_client: 3,
        ..ServerLimits::default()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    // The next one is closed at once, without an answer.
    let mut extra = TcpStream::connect(addr).await.unwrap();
    let _ = extra
        .write_all(b"GET /peer HTTP/1.1\r\nHost: t\r\n\r\n")
        .await;
    let start = Instant::now();
    let got = read_to_close(&mut extra).await;
    assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
    assert!(start.elapsed() < Duration::from_secs(5));
    // Once one is given back, the client is served again.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let answer = get_peer(addr).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
}
