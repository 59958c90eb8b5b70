//! Connections against a `sluice serve` process, as a hostile client holds them: a head or a
//! body sent byte by byte, a keep-alive connection left idle, more connections than
//! `limits.connections`, a file limit too small for them — each closed or refused, the server
//! answering everyone else; and a request in flight during SIGTERM still answered.

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::sync::mpsc::Receiver;
use std::time::Duration;

use crate::support::process::{Spawned, lines, serve, service_dir, wait_line};
use crate::support::{service_toml, shop, token};

/// How long a test waits for the server to close a connection before it calls it open.
const BOUND: Duration = Duration::from_secs(30);

/// Writes the service's sluice.toml with these `[limits]` lines.
fn limits(dir: &Path, limits: &str) {
    let toml = service_toml(r#"token-env = "SLUICE_RITA""#);
    std::fs::write(
        dir.join("sluice.toml"),
        format!("{toml}[limits]\n{limits}\n"),
    )
    .unwrap();
}

/// A raw connection to `address` (`http://` or not), reads bounded by [`BOUND`].
fn connect(address: &str) -> TcpStream {
    let stream = TcpStream::connect(address.trim_start_matches("http://")).unwrap();
    stream.set_read_timeout(Some(BOUND)).unwrap();
    stream
}

/// Reads until the server closes the connection (EOF or reset); panics if it is still open
/// after [`BOUND`].
fn until_closed(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!(
                "the connection is still open after {BOUND:?} ({e}); read so far: {:?}",
                String::from_utf8_lossy(&got)
            ),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// Reads one response whose body has a `content-length` (the connection stays open).
fn response(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0; 4096];
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_owned)
                })
                .map_or(0, |n| n.trim().parse::<usize>().unwrap());
            if got.len() >= end + 4 + length {
                return text;
            }
        }
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "closed before a whole response: {text:?}");
        got.extend_from_slice(&buf[..n]);
    }
}

fn get_healthz(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: sluice\r\n\r\n")
        .unwrap();
    response(stream)
}

/// Waits (bounded) until `/healthz` answers 200 again, each answer until then a 503.
fn healthz_again(address: &str) {
    let deadline = std::time::Instant::now() + BOUND;
    loop {
        let reply = get_healthz(&mut connect(address));
        if reply.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");
        assert!(
            std::time::Instant::now() < deadline,
            "still refused after the held connections closed: {reply}"
        );
        std::thread::yield_now();
    }
}

/// Sends `bytes` one at a time, 100 ms apart (the attack's pace, slower than a 1 s timeout
/// for the whole), on its own thread; how many were written before the server closed.
fn trickle(stream: &TcpStream, bytes: Vec<u8>) -> std::thread::JoinHandle<usize> {
    let mut stream = stream.try_clone().unwrap();
    std::thread::spawn(move || {
        for (sent, byte) in bytes.iter().enumerate() {
            if stream.write_all(&[*byte]).is_err() {
                return sent;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bytes.len()
    })
}

#[test]
fn a_slowloris_head_or_body_is_closed_after_the_header_timeout_and_others_are_served() {
    let dir = service_dir();
    limits(dir.path(), "header-timeout = \"1s\"");
    let (_child, address, _lines) = serve(dir.path(), None);

    // A head sent byte by byte: 300 bytes would take 30 s; it is cut off unanswered.
    let mut head = b"GET /healthz HTTP/1.1\r\nHost: sluice\r\nX-Slow: ".to_vec();
    head.resize(300, b'a');
    let mut slow = connect(&address);
    let writer = trickle(&slow, head.clone());
    assert_eq!(until_closed(&mut slow), "", "a slow head got an answer");
    let sent = writer.join().unwrap();
    assert!(
        sent < head.len(),
        "the whole slow head was read: {sent} bytes"
    );

    // The same head as the second request of a keep-alive connection: the idle timeout (60 s)
    // does not cover it, the header timeout does.
    let mut kept = connect(&address);
    let reply = get_healthz(&mut kept);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let writer = trickle(&kept, head.clone());
    assert_eq!(
        until_closed(&mut kept),
        "",
        "a slow second head got an answer"
    );
    let sent = writer.join().unwrap();
    assert!(
        sent < head.len(),
        "the whole slow second head was read: {sent} bytes"
    );

    // A connection that says nothing at all is closed too.
    assert_eq!(until_closed(&mut connect(&address)), "");

    // A body the handler waits for, sent byte by byte after a whole head.
    let pipeline = shop("1h");
    let mut post = connect(&address);
    write!(
        post,
        "POST /api/v1/pipelines/shop/validate HTTP/1.1\r\nHost: sluice\r\nAuthorization: Bearer {}\r\nContent-Type: application/toml\r\nContent-Length: {}\r\n\r\n",
        token("rita"),
        pipeline.len()
    )
    .unwrap();
    let writer = trickle(&post, pipeline.clone().into_bytes());
    assert_eq!(until_closed(&mut post), "", "a slow body got an answer");
    let sent = writer.join().unwrap();
    assert!(
        sent < pipeline.len(),
        "the whole slow body was read: {sent} bytes"
    );

    // The server is unharmed: a prompt client is served.
    let reply = get_healthz(&mut connect(&address));
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let dir = service_dir();
    // The header timeout is longer than the test waits: only the idle timeout can close it.
    limits(
        dir.path(),
        "header-timeout = \"60s\"\nidle-timeout = \"1s\"",
    );
    let (_child, address, _lines) = serve(dir.path(), None);
    let mut stream = connect(&address);
    let reply = get_healthz(&mut stream);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(
        !reply.to_ascii_lowercase().contains("connection: close"),
        "the connection was not kept alive: {reply}"
    );
    assert_eq!(until_closed(&mut stream), "");
}

#[test]
fn past_the_connection_cap_a_json_503_and_healthz_again_once_connections_close() {
    let dir = service_dir();
    limits(dir.path(), "connections = 2\nheader-timeout = \"60s\"");
    let (_child, address, _lines) = serve(dir.path(), None);
    // Two keep-alive connections, each served once, held open.
    let mut held: Vec<TcpStream> = (0..2).map(|_| connect(&address)).collect();
    for stream in &mut held {
        let reply = get_healthz(stream);
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    }
    // A third: one 503 that says which key to raise, then closed.
    let mut third = connect(&address);
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: sluice\r\n\r\n")
        .unwrap();
    let refused = until_closed(&mut third);
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    let lower = refused.to_ascii_lowercase();
    assert!(lower.contains("connection: close"), "{refused}");
    assert!(
        lower.contains("content-type: application/json"),
        "{refused}"
    );
    let body = &refused[refused.find("\r\n\r\n").unwrap() + 4..];
    let error: serde_json::Value = serde_json::from_str(body).unwrap();
    let message = error["error"].as_str().unwrap();
    assert!(
        message.contains("limit of 2 connections") && message.contains("limits.connections"),
        "{message}"
    );
    // The held connections still work.
    let reply = get_healthz(&mut held[0]);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    // Once they close, the places are free again (the server notices the close at once).
    drop(held);
    healthz_again(&address);
}

#[test]
fn a_request_in_flight_during_sigterm_is_answered_before_the_server_exits() {
    let dir = service_dir();
    let (mut child, address, lines) = serve(dir.path(), None);
    let pipeline = shop("1h");
    let mut post = connect(&address);
    // `Expect: 100-continue`: the server says `100 Continue` once the handler reads the body,
    // so the request is past every check and in flight.
    write!(
        post,
        "POST /api/v1/pipelines/shop/validate HTTP/1.1\r\nHost: sluice\r\nAuthorization: Bearer {}\r\nContent-Type: application/toml\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        token("rita"),
        pipeline.len()
    )
    .unwrap();
    let mut buf = [0; 64];
    let n = post.read(&mut buf).unwrap();
    let continued = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(continued.starts_with("HTTP/1.1 100"), "{continued}");

    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    wait_line(&lines, "stopping: no new requests");
    post.write_all(pipeline.as_bytes()).unwrap();
    let answer = until_closed(&mut post);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#""valid":true"#), "{answer}");
    let code = child.wait().unwrap();
    assert!(code.success(), "{code:?}");
}

#[test]
fn a_file_limit_too_small_for_the_connection_cap_lowers_it_and_says_so() {
    let dir = service_dir();
    // Silent connections are held for the whole test.
    limits(dir.path(), "header-timeout = \"60s\"");
    let (_child, lines) = serve_with_file_limit(dir.path(), 200);
    let warning = wait_line(&lines, "limits.connections");
    assert!(
        warning.contains("limits.connections = 1024 does not fit the open-file limit of 200")
            && warning.contains("serving at most 136 connections"),
        "{warning}"
    );
    let address = wait_line(&lines, "serving on ");
    let address = address.split("serving on ").nth(1).unwrap();
    let reply = get_healthz(&mut connect(address));
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    // The lowered cap holds: 136 connections, and the next one is refused with a 503 — the
    // server still has descriptors to answer it.
    let held: Vec<TcpStream> = (0..136).map(|_| connect(address)).collect();
    let mut next = connect(address);
    next.write_all(b"GET /healthz HTTP/1.1\r\nHost: sluice\r\n\r\n")
        .unwrap();
    let refused = until_closed(&mut next);
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.contains("limit of 136 connections"), "{refused}");
    drop(held);
}

/// `sluice serve` on `dir` under `ulimit -n files` (which sets the hard limit too: the server
/// cannot raise it); its stderr lines.
fn serve_with_file_limit(dir: &Path, files: u32) -> (Spawned, Receiver<String>) {
    let mut child = Spawned(
        std::process::Command::new("sh")
            .args(["-c", &format!("ulimit -n {files} && exec \"$0\" \"$@\"")])
            .arg(env!("CARGO_BIN_EXE_sluice"))
            .args(["serve", "--config"])
            .arg(dir.join("sluice.toml"))
            .env("SLUICE_RITA", token("rita"))
            .env("SLUICE_BOB", token("bob"))
            .env("SLUICE_VIC", token("vic"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let lines = lines(child.stderr.take().unwrap());
    (child, lines)
}

#[test]
fn out_of_descriptors_the_accept_loop_backs_off_and_serves_again_once_they_free() {
    let dir = service_dir();
    limits(dir.path(), "header-timeout = \"60s\"");
    // 24 descriptors: too few for the reserve, so the server can run out of them (~13 in use
    // at start, 1 connection served, 16 answered 503).
    let (_child, lines) = serve_with_file_limit(dir.path(), 24);
    let address = wait_line(&lines, "serving on ");
    let address = address.split("serving on ").nth(1).unwrap();
    let held: Vec<TcpStream> = (0..40).map(|_| connect(address)).collect();
    let failed = wait_line(&lines, "accepting a connection: ");
    assert!(failed.contains("Too many open files"), "{failed}");
    // The loop did not end: once the connections close, the server answers again.
    drop(held);
    healthz_again(address);
}

#[test]
fn a_request_with_many_headers_is_not_refused_by_hyper_with_an_empty_answer() {
    let dir = service_dir();
    let (_child, address, _lines) = serve(dir.path(), None);
    // 150 headers: more than hyper's default of 100, fewer than the 256 it is set to. The
    // guard decides (a JSON 431 past its own limit) or the route answers; never a bare 431.
    let mut request = String::from("GET /healthz HTTP/1.1\r\nHost: sluice\r\n");
    for i in 0..150 {
        request.push_str(&format!("X-Header-{i}: {i}\r\n"));
    }
    request.push_str("\r\n");
    let mut stream = connect(&address);
    stream.write_all(request.as_bytes()).unwrap();
    let reply = response(&mut stream);
    let lower = reply.to_ascii_lowercase();
    assert!(
        reply.starts_with("HTTP/1.1 200")
            || (reply.starts_with("HTTP/1.1 431") && lower.contains("application/json")),
        "{reply}"
    );
}
