//! The connection loop with limits a public server needs: a header-read timeout (a
//! client that trickles its headers, "slowloris", or idles between requests is dropped),
//! a cap on open connections in total and per client address. Built on hyper-util's
//! connection builder (HTTP/1 and 2, upgrades for WebSockets) and its graceful shutdown.
//!
//! Every request carries the client's address ([`ClientAddr`]): the TCP peer, unless the
//! peer is one of the operator's trusted proxies, whose `X-Forwarded-For` then names the
//! client. `X-Forwarded-For` is never believed otherwise, since any client can send one.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::HeaderMap;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
pub use ipnet::IpNet;
pub use proctor_accounts::http::ClientAddr;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// Limits of the connection loop.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// Time a client has to send a request's headers, also the longest idle time of a
    /// kept-alive connection between requests.
    pub header_read_timeout: Duration,
    /// Open connections in total; more are closed at once.
    pub max_connections: usize,
    /// Open connections from one client address (a trusted proxy's are not capped: it
    /// carries many clients).
    pub max_per_client: usize,
    /// Reverse proxies whose `X-Forwarded-For` names the client (none by default).
    pub trusted_proxies: Vec<IpNet>,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 1024,
            max_per_client: 64,
            trusted_proxies: Vec::new(),
        }
    }
}

/// Open connections per client address; a slot is given back when dropped.
#[derive(Default)]
struct Clients(Mutex<HashMap<IpAddr, usize>>);

struct ClientSlot {
    clients: Arc<Clients>,
    ip: IpAddr,
}

impl Clients {
    fn take(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<ClientSlot> {
        let mut open = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            clients: self.clone(),
            ip,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self.clients.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// The client of a request that came over a connection from `peer`: `peer` itself unless
/// it is a trusted proxy; then, reading `X-Forwarded-For` from the right (each proxy
/// appends the address it was reached from), the first address that is not a trusted
/// proxy. Entries left of it were written by the client and are not believed; an entry
/// that does not parse ends the search at the last trusted hop.
pub fn client_addr(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Some(ip) = parse_hop(hop) else {
            return client;
        };
        client = ip;
        if !is_trusted(&ip) {
            return ip;
        }
    }
    client
}

/// A `--trusted-proxy` value: an address (`10.0.0.5`) or a network (`10.0.0.0/8`).
pub fn parse_trusted_proxy(s: &str) -> Result<IpNet, String> {
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{s:?} is not an IP address or network (10.0.0.5, 10.0.0.0/8, ::1)"))
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5`,
/// `[::1]:5`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse()
        .ok()
        .or_else(|| hop.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
}

/// Serves `router` on `listener` under `limits` until `shutdown` resolves, then waits
/// for open connections to finish. Handlers can read `ConnectInfo<SocketAddr>`.
pub async fn serve_with_limits(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: ServerLimits,
) -> std::io::Result<()> {
    let total = Arc::new(Semaphore::new(limits.max_connections));
    let clients = Arc::new(Clients::default());
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let builder = Arc::new(builder);
    let trusted: Arc<[IpNet]> = limits.trusted_proxies.clone().into();
    tokio::pin!(shutdown);
    loop {
        let (stream, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // Out of descriptors or a reset before accept: transient, keep serving.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = total.clone().try_acquire_owned() else {
            continue; // dropping the stream closes it
        };
        let behind_proxy = limits
            .trusted_proxies
            .iter()
            .any(|net| net.contains(&addr.ip()));
        let slot = match behind_proxy {
            true => None,
            false => match clients.take(addr.ip(), limits.max_per_client) {
                Some(slot) => Some(slot),
                None => continue,
            },
        };
        let router = router.clone();
        let trusted = trusted.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            let client = client_addr(addr.ip(), req.headers(), &trusted);
            req.extensions_mut().insert(ConnectInfo(addr));
            req.extensions_mut().insert(ClientAddr(client));
            let router = router.clone();
            async move { Ok::<_, Infallible>(router.oneshot(req).await.unwrap_or_else(|e| match e {})) }
        });
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _ = connection.await;
            drop((permit, slot));
        });
    }
    graceful.shutdown().await;
    Ok(())
}
