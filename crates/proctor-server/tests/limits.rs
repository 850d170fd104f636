//! The connection limits over real TCP: slowloris and idle clients are dropped after the
//! header-read timeout, a client cannot hold more than its share of connections, and the
//! server keeps answering everyone else; `X-Forwarded-For` names the client only when it
//! comes from a trusted proxy.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::Router;
use proctor_server::limits::{parse_trusted_proxy, ClientAddr};
use proctor_server::{serve_with_limits, ServerLimits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn start(limits: ServerLimits) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = Router::new()
        .route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.ip().to_string() }),
        )
        .route(
            "/client",
            get(
                |axum::Extension(ClientAddr(ip)): axum::Extension<ClientAddr>| async move {
                    ip.to_string()
                },
            ),
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

/// The client address the server resolved for a request with these headers.
async fn client_seen(addr: SocketAddr, headers: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET /client HTTP/1.1\r\nHost: t\r\n{headers}Connection: close\r\n\r\n");
    s.write_all(request.as_bytes()).await.unwrap();
    let answer = String::from_utf8_lossy(&read_to_close(&mut s).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    answer.rsplit("\r\n\r\n").next().unwrap().to_string()
}

#[tokio::test]
async fn forwarded_for_names_the_client_only_from_a_trusted_proxy() {
    // By default the header is anyone's to forge: ignored.
    let (addr, _stop) = start(ServerLimits::default()).await;
    assert_eq!(
        client_seen(addr, "X-Forwarded-For: 203.0.113.9\r\n").await,
        "127.0.0.1"
    );
    // Trusting another proxy does not make this peer's header believable either.
    let (addr, _stop) = start(ServerLimits {
        trusted_proxies: vec![parse_trusted_proxy("10.0.0.0/8").unwrap()],
        ..ServerLimits::default()
    })
    .await;
    assert_eq!(
        client_seen(addr, "X-Forwarded-For: 203.0.113.9\r\n").await,
        "127.0.0.1"
    );

    // Behind trusted proxies (this peer, and 127.0.0.0/8 as a second hop): the client is
    // the rightmost untrusted hop; what the client itself wrote further left is not.
    let (addr, _stop) = start(ServerLimits {
        trusted_proxies: vec![parse_trusted_proxy("127.0.0.0/8").unwrap()],
        ..ServerLimits::default()
    })
    .await;
    for (header, client) in [
        ("X-Forwarded-For: 203.0.113.9\r\n", "203.0.113.9"),
        ("X-Forwarded-For: 6.6.6.6, 203.0.113.9\r\n", "203.0.113.9"),
        (
            "X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-For: 203.0.113.9, 127.0.0.5\r\n",
            "203.0.113.9",
        ),
        ("X-Forwarded-For: [2001:db8::7]:4711\r\n", "2001:db8::7"),
        // Garbage at the first hop: the last trusted hop stands for the client.
        ("X-Forwarded-For: 203.0.113.9, not-an-ip\r\n", "127.0.0.1"),
        ("", "127.0.0.1"),
    ] {
        assert_eq!(client_seen(addr, header).await, client, "{header}");
    }
}

#[tokio::test]
async fn a_trusted_proxy_is_not_held_to_one_client_s_connections() {
    let (addr, _stop) = start(ServerLimits {
        max_per_client: 1,
        trusted_proxies: vec![parse_trusted_proxy("127.0.0.1").unwrap()],
        ..ServerLimits::default()
    })
    .await;
    // Three open connections from the proxy, then a fourth is still answered.
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    assert_eq!(client_seen(addr, "").await, "127.0.0.1");
}

#[test]
fn trusted_proxies_are_addresses_or_networks() {
    assert_eq!(
        parse_trusted_proxy("10.1.2.3").unwrap().to_string(),
        "10.1.2.3/32"
    );
    assert_eq!(parse_trusted_proxy("::1").unwrap().to_string(), "::1/128");
    assert_eq!(
        parse_trusted_proxy("10.0.0.0/8").unwrap().to_string(),
        "10.0.0.0/8"
    );
    let e = parse_trusted_proxy("proxy.local").unwrap_err();
    assert!(e.contains("not an IP address or network"), "{e}");
}
