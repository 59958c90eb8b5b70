//! Tiny HTTP servers on 127.0.0.1 for plugins to call: `TestServer` answers with a settable
//! status, `Latch` holds every request until the test opens it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::time::Duration;

/// A minimal HTTP/1.1 server on 127.0.0.1 answering every request with a settable status and
/// body; stops when dropped. Runs on its own thread so any test runtime can use it.
pub struct TestServer {
    pub addr: SocketAddr,
    status: Arc<AtomicU16>,
    hits: Arc<std::sync::atomic::AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl TestServer {
    pub fn start(body: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let status = Arc::new(AtomicU16::new(200));
        let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, h, st) = (status.clone(), hits.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                h.fetch_add(1, Ordering::SeqCst);
                let _ = answer(&mut conn, s.load(Ordering::SeqCst), body);
            }
        });
        Self {
            addr,
            status,
            hits,
            stop,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn set_status(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn answer(conn: &mut TcpStream, status: u16, body: &str) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    write!(
        conn,
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

/// An HTTP server on 127.0.0.1 that holds every request until the test opens it (then, and
/// from then on, answers 200): lets a test decide when a task blocked on it goes on, without
/// anyone polling. A request held over a minute gets 504.
pub struct Latch {
    pub addr: SocketAddr,
    open: Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
}

impl Latch {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let open = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let gate = open.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let gate = gate.clone();
                std::thread::spawn(move || {
                    let (lock, opened) = &*gate;
                    let guard = lock.lock().unwrap_or_else(|e| e.into_inner());
                    let (guard, waited) = opened
                        .wait_timeout_while(guard, Duration::from_secs(60), |open| !*open)
                        .unwrap_or_else(|e| e.into_inner());
                    let status = if waited.timed_out() { 504 } else { 200 };
                    drop(guard);
                    let _ = answer(&mut conn, status, "released");
                });
            }
        });
        Self { addr, open }
    }

    pub fn url(&self) -> String {
        format!("http://{}/go", self.addr)
    }

    /// Answers every held request, and every later one.
    pub fn open(&self) {
        let (lock, opened) = &*self.open;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        opened.notify_all();
    }
}
