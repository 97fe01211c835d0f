//! `vr-model explore` serves stateright's explorer over HTTP.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

#[test]
fn the_explorer_serves_the_checker_status_over_http() {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_vr-model"))
        .args(["explore", "--addr", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("vr-model starts");
    let _child = Killed(child);
    let started = Instant::now();
    let response = loop {
        if let Some(response) = get(port, "/.status") {
            break response;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the explorer never answered"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    assert!(body.contains("\"unique_state_count\""), "{body}");
    assert!(
        body.contains("INV-AGREEMENT"),
        "the properties are listed: {body}"
    );
}
