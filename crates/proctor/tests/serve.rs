//! `proctor serve` over real HTTP.

mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n")?.1.to_string();
    Some((code, body))
}

#[test]
fn serve_answers_health_status_and_the_index_page() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = std::process::Command::new(util::proctor_bin())
        .args(["serve", "--port", &port.to_string()])
        .spawn()
        .unwrap();
    let start = Instant::now();
    let health = loop {
        if let Some(r) = get(port, "/health") {
            break r;
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "server did not come up"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(health.0, 200);
    assert!(health.1.contains("\"ok\""), "{}", health.1);
    let (code, body) = get(port, "/api/status").unwrap();
    assert_eq!(code, 200);
    let body = body.trim_start_matches(|c: char| c.is_ascii_hexdigit() || c.is_whitespace());
    assert!(body.contains("\"sandboxed\":true"), "{body}");
    assert!(body.contains("torch_version"), "{body}");
    let (code, page) = get(port, "/").unwrap();
    assert_eq!(code, 200);
    assert!(page.contains("<title>proctor</title>"));
    for link in ["href=\"/gym\"", "href=\"/challenges\"", "href=\"/review\""] {
        assert!(page.contains(link), "{link} missing from the index page");
    }
    for page in ["/gym", "/challenges"] {
        assert_eq!(get(port, page).unwrap().0, 200, "{page}");
    }
    // Reviews belong to accounts: without a session the review page sends to the login.
    assert_eq!(get(port, "/review").unwrap().0, 303, "/review");
    let (code, _) = get(port, "/no-such-page").unwrap();
    assert_eq!(code, 404);
    child.kill().unwrap();
    let _ = child.wait();
}
