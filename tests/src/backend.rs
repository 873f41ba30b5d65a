//! An upstream that tells exactly what it received: a tiny HTTP/1.1 server on a Unix socket (the
//! socket the bootstrap's cluster `backend_W` points at), answering every request with 200, the
//! request-target as it read it as the body, and how servers would route that target.
//!
//! Every request is recorded (request-target and headers), so a test can tell "refused before
//! the upstream" (nothing recorded) from "reached the upstream as X". The answer carries:
//!
//! * `x-backend-route`: the `x-alp-route` request header, i.e. the route Envoy chose
//!   (`admin`, `public`, `other`; the bootstrap adds it per route, after the filter ran);
//! * `x-backend-areas`: the first path segment under several ways real servers read a path
//!   ([`areas`]), comma-separated, so a path that some server would route under `/admin` shows
//!   `admin` among them.

use anyhow::{Context as _, Result};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request as the backend read it.
#[derive(Clone, Debug)]
pub struct Received {
    /// The request-target, byte for byte (lossily UTF-8: Envoy forwards ASCII).
    pub target: String,
    pub method: String,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The running backend; stops accepting on drop.
pub struct EchoBackend {
    pub socket: PathBuf,
    log: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
}

impl EchoBackend {
    /// Listens on `socket` (replacing a stale file) and serves each connection on its own thread.
    pub fn start(socket: &Path) -> Result<Self> {
        let _ = std::fs::remove_file(socket);
        let listener = UnixListener::bind(socket)
            .with_context(|| format!("echo backend: binding {}", socket.display()))?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (l, s) = (log.clone(), stop.clone());
        std::thread::Builder::new()
            .name("echo-backend".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if s.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let l = l.clone();
                    let _ = std::thread::Builder::new()
                        .name("echo-backend-conn".into())
                        .spawn(move || serve(conn, &l));
                }
            })?;
        Ok(EchoBackend {
            socket: socket.to_path_buf(),
            log,
            stop,
        })
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The requests whose header `name` is `value` (the tests tag each request they send).
    pub fn received_with(&self, name: &str, value: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.header(name) == Some(value))
            .collect()
    }
}

impl Drop for EchoBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = UnixStream::connect(&self.socket);
        let _ = std::fs::remove_file(&self.socket);
    }
}

fn serve(conn: UnixStream, log: &Mutex<Vec<Received>>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(60)));
    let Ok(mut writer) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn);
    loop {
        let mut line = Vec::new();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let request_line = String::from_utf8_lossy(&line).trim_end().to_string();
        if request_line.is_empty() {
            continue;
        }
        let mut parts = request_line.splitn(3, ' ');
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("").to_string();
        let mut headers = vec![];
        loop {
            let mut h = Vec::new();
            match reader.read_until(b'\n', &mut h) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let h = String::from_utf8_lossy(&h);
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((n, v)) = h.split_once(':') {
                headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let received = Received {
            target,
            method,
            headers,
        };
        // Discard a body (Envoy forwards none for the tests' GETs; be correct anyway).
        let mut close = false;
        if let Some(len) = received.header("content-length") {
            let n: u64 = len.parse().unwrap_or(0);
            if std::io::copy(&mut (&mut reader).take(n), &mut std::io::sink()).is_err() {
                return;
            }
        } else if received.header("transfer-encoding").is_some() {
            close = true;
        }
        let route = received.header("x-alp-route").unwrap_or("none").to_string();
        let areas: Vec<String> = areas(&received.target).into_iter().collect();
        let body = received.target.clone();
        if let Ok(mut l) = log.lock() {
            l.push(received);
        }
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\
             x-backend-route: {route}\r\nx-backend-areas: {}\r\n{}\r\n",
            body.len(),
            areas.join(","),
            if close { "connection: close\r\n" } else { "" }
        );
        if writer.write_all(head.as_bytes()).is_err() || writer.write_all(body.as_bytes()).is_err()
        {
            return;
        }
        if close {
            return;
        }
    }
}

/// Percent-decodes every valid escape (invalid ones stay as they are).
fn decode_all(s: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' && i + 2 < s.len() {
            if let (Some(h), Some(l)) = (hex(s[i + 1]), hex(s[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

/// RFC 3986 dot-segment removal plus slash merging over `/`-separated segments: what
/// `path.Clean`, Python's `posixpath.normpath` and most routers' "clean path" do.
fn clean(path: &[u8]) -> Vec<u8> {
    let mut stack: Vec<&[u8]> = vec![];
    for seg in path.split(|&b| b == b'/') {
        match seg {
            b"" | b"." => {}
            b".." => {
                stack.pop();
            }
            s => stack.push(s),
        }
    }
    let mut out = vec![b'/'];
    out.extend(stack.join(&b'/'));
    out
}

fn strip_params(path: &[u8]) -> Vec<u8> {
    let segs: Vec<&[u8]> = path
        .split(|&b| b == b'/')
        .map(|seg| seg.split(|&b| b == b';').next().unwrap_or(b""))
        .collect();
    segs.join(&b'/')
}

fn backslashes(path: &[u8]) -> Vec<u8> {
    path.iter()
        .map(|&b| if b == b'\\' { b'/' } else { b })
        .collect()
}

/// The area a path falls in: its first non-empty segment (`admin`, `public`, ...; `/` for none).
fn area(path: &[u8]) -> String {
    let first = path
        .split(|&b| b == b'/')
        .find(|s| !s.is_empty())
        .unwrap_or(b"/");
    String::from_utf8_lossy(first).into_owned()
}

/// The first segment of `target` (query cut) under readings real servers use:
/// * as sent (a router matching the raw path, like Envoy's own route table);
/// * cleaned without decoding, `\` as `/` (WHATWG URL parsers: Node, browsers);
/// * decoded first, then cleaned (servers that decode the whole path: Python's
///   `http.server`, many static-file handlers), `\` as `/` both before and after decoding;
/// * `;parameters` stripped per segment, then decoded and cleaned (Tomcat and other Java
///   servlet containers);
/// * decoded, then `;parameters` stripped, then cleaned (what Dikastes and this filter before
///   D10 did: `..%3B` becomes a `..` segment);
/// * cleaned, then decoded (a handler that decodes after routing and splits again).
pub fn areas(target: &str) -> BTreeSet<String> {
    let raw = target.as_bytes();
    let path = raw
        .iter()
        .position(|&b| b == b'?' || b == b'#')
        .map_or(raw, |i| &raw[..i]);
    let mut out = BTreeSet::new();
    out.insert(area(path));
    out.insert(area(&clean(&backslashes(path))));
    out.insert(area(&clean(&backslashes(&decode_all(&backslashes(path))))));
    out.insert(area(&clean(&backslashes(&decode_all(&strip_params(
        &backslashes(path),
    ))))));
    out.insert(area(&clean(&strip_params(&backslashes(&decode_all(
        &backslashes(path),
    ))))));
    out.insert(area(&backslashes(&decode_all(&clean(&backslashes(path))))));
    out.insert(area(&clean(&backslashes(&decode_all(&clean(
        &backslashes(path),
    ))))));
    // Parameters cut from a segment's name when the reading is done ("admin;x" is admin).
    out.into_iter()
        .map(|a| a.split(';').next().unwrap_or("").to_string())
        .map(|a| if a.is_empty() { "/".to_string() } else { a })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn readings() {
        assert_eq!(areas("/public/x"), set(&["public"]));
        assert_eq!(areas("/public/x?q=/admin"), set(&["public"]));
        // Servers route it under /admin; the pre-D10 reading made it /public.
        assert_eq!(areas("/admin/..%3B/public"), set(&["admin", "public"]));
        assert_eq!(areas("/public/../admin"), set(&["public", "admin"]));
        assert_eq!(
            areas("/public%2F..%2Fadmin"),
            set(&["public%2F..%2Fadmin", "admin", "public"])
        );
        assert_eq!(areas("/admin;x/../public"), set(&["admin", "public"]));
        assert_eq!(
            areas("/public\\..\\admin"),
            set(&["public\\..\\admin", "admin"])
        );
        assert_eq!(areas("/%70ublic"), set(&["%70ublic", "public"]));
        assert_eq!(areas("/"), set(&["/"]));
        assert_eq!(decode_all(b"%4"), b"%4");
        assert_eq!(decode_all(b"a%41"), b"aA");
    }
}
