//! A service outage for one job only: a TCP relay in front of a real service (PostgreSQL,
//! Redis, SeaweedFS) that the test can take down and bring back. Down, it behaves as a
//! stopped server does to its clients: open connections are reset and new ones refused
//! (the listening socket is closed). The service itself keeps running for the other tests.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// A relay from `127.0.0.1:port` to a target address.
pub struct Relay {
    pub port: u16,
    target: String,
    state: Arc<State>,
}

#[derive(Default)]
struct State {
    down: AtomicBool,
    /// Answering every HTTP request with 503 instead of relaying it.
    unavailable: AtomicBool,
    /// Both ends of every relayed connection, for the reset on `down`.
    open: Mutex<Vec<TcpStream>>,
    /// Bumped at each `down`, so a stale accept loop ends.
    epoch: Mutex<u64>,
}

impl Relay {
    /// Relays a free local port to `target` (`host:port`).
    pub fn start(target: &str) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let relay = Relay {
            port,
            target: target.to_string(),
            state: Arc::new(State::default()),
        };
        relay.serve(listener);
        relay
    }

    /// `host:port` of the relay.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn serve(&self, listener: TcpListener) {
        let (state, target) = (self.state.clone(), self.target.clone());
        let epoch = *state.epoch.lock().unwrap();
        thread::spawn(move || {
            for client in listener.incoming() {
                if *state.epoch.lock().unwrap() != epoch || state.down.load(Ordering::SeqCst) {
                    return; // the listener is dropped: new connections are refused
                }
                let Ok(client) = client else { continue };
                if state.unavailable.load(Ordering::SeqCst) {
                    answer_503(client, state.clone());
                    continue;
                }
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                {
                    let mut open = state.open.lock().unwrap();
                    open.push(client.try_clone().unwrap());
                    open.push(server.try_clone().unwrap());
                }
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                pipe(server, client);
            }
        });
    }

    /// Takes the service away: open connections reset, new ones refused.
    pub fn down(&self) {
        self.state.down.store(true, Ordering::SeqCst);
        *self.state.epoch.lock().unwrap() += 1;
        // Wake the accept loop so it sees the flag and drops its listener.
        let _ =
            TcpStream::connect_timeout(&self.addr().parse().unwrap(), Duration::from_millis(200));
        for s in self.state.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
        // The listener is closed once the loop has returned.
        for _ in 0..50 {
            if TcpStream::connect_timeout(&self.addr().parse().unwrap(), Duration::from_millis(100))
                .is_err()
            {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        panic!("the relay on {} still accepts connections", self.port);
    }

    /// Keeps accepting connections but answers every HTTP request `503 Service Unavailable`
    /// (an overloaded S3): open connections are reset so that clients reconnect.
    pub fn answer_503(&self) {
        self.state.unavailable.store(true, Ordering::SeqCst);
        for s in self.state.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// Relays again after [`Relay::answer_503`].
    pub fn stop_503(&self) {
        self.state.unavailable.store(false, Ordering::SeqCst);
    }

    /// Brings the service back on the same port.
    pub fn up(&self) {
        let listener = loop {
            match TcpListener::bind(self.addr()) {
                Ok(l) => break l,
                Err(_) => thread::sleep(Duration::from_millis(50)),
            }
        };
        self.state.down.store(false, Ordering::SeqCst);
        self.serve(listener);
    }
}

/// Reads HTTP requests on `client` (head, then a `Content-Length` body) and answers each
/// with 503 (the connection kept alive), until the client closes or the relay relays again
/// (then the connection is closed, and the client's next one is relayed).
fn answer_503(mut client: TcpStream, state: Arc<State>) {
    thread::spawn(move || {
        let _ = client.set_read_timeout(Some(Duration::from_secs(30)));
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                match client.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
                continue;
            };
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let body: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + body {
                match client.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            buf.drain(..end + 4 + body);
            if !state.unavailable.load(Ordering::SeqCst) {
                let _ = client.shutdown(Shutdown::Both);
                return;
            }
            let reply = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\nContent-Length: 88\r\n\r\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>\n";
            if client.write_all(reply.as_bytes()).is_err() {
                return;
            }
        }
    });
}

/// Copies `from` to `to` until either end closes.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    thread::spawn(move || {
        let mut buf = [0u8; 64 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}

/// `GET /metrics` of a `jobs` process, as text (empty while it is not serving yet).
pub fn scrape(addr: &str) -> String {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// The value of one sample (`name{labels}` exactly as rendered) in a scrape, or `None`.
pub fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// A free local port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends SIGTERM to `child` and waits for its exit.
pub fn term(child: &mut std::process::Child) -> std::process::ExitStatus {
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    child.wait().unwrap()
}
