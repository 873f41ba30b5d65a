//! A raw TCP upstream that tells what reached it: it listens on a Unix socket (the socket the
//! bootstrap's cluster `backend_tcp_W` points at), optionally sends a greeting the moment it
//! accepts a connection (a server-first protocol: MySQL, SMTP), then echoes every byte back.
//!
//! Every accepted connection is recorded with every byte it received, so a test can tell "no
//! upstream connection at all" (nothing accepted) from "connected, nothing forwarded" (accepted,
//! no bytes) from "forwarded" (the client's bytes arrived).

use anyhow::{Context as _, Result};
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The running backend; stops accepting on drop.
pub struct TcpBackend {
    pub socket: PathBuf,
    greeting: Vec<u8>,
    /// What each accepted connection has received so far, in accept order.
    connections: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
}

impl TcpBackend {
    /// Listens on `socket` (replacing a stale file); `greeting`, when not empty, is sent on
    /// every accepted connection before anything is read.
    pub fn start(socket: &Path, greeting: &[u8]) -> Result<Self> {
        let _ = std::fs::remove_file(socket);
        let listener = UnixListener::bind(socket)
            .with_context(|| format!("TCP backend: binding {}", socket.display()))?;
        let connections = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (conns, s, hello) = (connections.clone(), stop.clone(), greeting.to_vec());
        std::thread::Builder::new()
            .name("tcp-backend".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if s.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let index = match conns.lock() {
                        Ok(mut c) => {
                            c.push(Vec::new());
                            c.len() - 1
                        }
                        Err(_) => return,
                    };
                    let (conns, hello) = (conns.clone(), hello.clone());
                    let _ = std::thread::Builder::new()
                        .name("tcp-backend-conn".into())
                        .spawn(move || serve(conn, &hello, &conns, index));
                }
            })?;
        Ok(TcpBackend {
            socket: socket.to_path_buf(),
            greeting: greeting.to_vec(),
            connections,
            stop,
        })
    }

    /// What the backend sends first on each connection (empty: nothing, it only echoes).
    pub fn greeting(&self) -> &[u8] {
        &self.greeting
    }

    /// How many connections it has accepted.
    pub fn accepted(&self) -> usize {
        self.connections.lock().map(|c| c.len()).unwrap_or(0)
    }

    /// The bytes each accepted connection received, in accept order.
    pub fn received(&self) -> Vec<Vec<u8>> {
        self.connections
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default()
    }

    /// Whether any connection received `token` (the tests send a distinct one per case).
    pub fn saw(&self, token: &[u8]) -> bool {
        self.received()
            .iter()
            .any(|r| r.windows(token.len()).any(|w| w == token))
    }
}

impl Drop for TcpBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = UnixStream::connect(&self.socket);
        let _ = std::fs::remove_file(&self.socket);
    }
}

fn serve(mut conn: UnixStream, greeting: &[u8], log: &Mutex<Vec<Vec<u8>>>, index: usize) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(60)));
    if !greeting.is_empty() && conn.write_all(greeting).is_err() {
        return;
    }
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if let Ok(mut l) = log.lock() {
            if let Some(r) = l.get_mut(index) {
                r.extend_from_slice(&buf[..n]);
            }
        }
        if conn.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greets_echoes_and_records() {
        let dir = std::env::temp_dir().join(format!("alp-tcp-backend-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let backend = TcpBackend::start(&dir.join("b.sock"), b"hello\n").unwrap();
        let mut c = UnixStream::connect(&backend.socket).unwrap();
        let mut greeting = [0u8; 6];
        c.read_exact(&mut greeting).unwrap();
        assert_eq!(&greeting, b"hello\n");
        c.write_all(b"ping").unwrap();
        let mut echo = [0u8; 4];
        c.read_exact(&mut echo).unwrap();
        assert_eq!(&echo, b"ping");
        assert_eq!(backend.accepted(), 1);
        assert!(backend.saw(b"ping") && !backend.saw(b"pong"));
        assert_eq!(backend.received(), vec![b"ping".to_vec()]);
        drop(backend);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
