//! A test Felix: serves the real Policy Sync service (`felix.PolicySync/Sync`, tonic, the server
//! code generated into `alp_felix::wire::felix::policy_sync_server`) on a Unix socket, so
//! control's gRPC client is tested against the wire protocol it meets in a cluster.
//!
//! Two ways to drive it:
//!
//! * **Live** ([`FelixSim`]): every `Sync` call a client makes becomes a [`Session`] that the
//!   test [`accept`](FelixSim::accept)s and then feeds: [`Session::send`] a message,
//!   [`Session::end`] the stream cleanly, [`Session::fail`] it with a gRPC error, or
//!   [`FelixSim::crash`] everything (connections dropped without goodbye, socket removed, as when
//!   Felix dies). Messages go out in order; `send` waits while the client does not read.
//! * **Scripted** ([`Script`], [`play`]; the `test-felix` binary): a text file of steps, one per
//!   line: a `ToDataplane` message in protobuf JSON (parsed with `alp_felix::json`), `pause MS`,
//!   `end` (end the stream; what follows is sent on the client's next connection), `fail TEXT`
//!   (end the stream with status UNAVAILABLE), `exit` (stop serving: the socket goes away).
//!   `#` starts a comment line. Connections beyond the script's sections replay its last one
//!   (a Felix that restarts sends its whole state again); the last connection is held open.

use alp_felix::wire::felix::policy_sync_server::{PolicySync, PolicySyncServer};
use alp_felix::wire::felix::{SyncRequest, ToDataplane};
use anyhow::{bail, Context as _, Result};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, Mutex};
use tokio::task::JoinSet;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

pub use alp_felix::wire::felix;

/// A hostile Felix (undecodable messages, resets mid-message, stalls) for chaos tests.
pub mod raw;

/// How many messages may wait in a session before `send` waits for the client.
const SESSION_BUFFER: usize = 1024;

type Item = Result<ToDataplane, Status>;

/// A running test Felix on a Unix socket. Dropping it is a [`crash`](FelixSim::crash).
pub struct FelixSim {
    socket: PathBuf,
    sessions: mpsc::UnboundedReceiver<Session>,
    syncs: Arc<AtomicU64>,
    connections: Arc<Mutex<JoinSet<()>>>,
    acceptor: tokio::task::JoinHandle<()>,
}

/// One client's `Sync` stream, from the server's side.
#[derive(Debug)]
pub struct Session {
    /// 1 for the first `Sync` call this server answered, 2 for the next...
    pub number: u64,
    /// When the call arrived.
    pub started: Instant,
    tx: mpsc::Sender<Item>,
}

/// The client is gone: the message was not sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed;

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the client closed the stream")
    }
}

impl std::error::Error for Closed {}

impl Session {
    /// Queues `msg` for the client (waits while `SESSION_BUFFER` messages are queued).
    pub async fn send(&self, msg: ToDataplane) -> Result<(), Closed> {
        self.tx.send(Ok(msg)).await.map_err(|_| Closed)
    }

    /// Queues every message, in order.
    pub async fn send_all(
        &self,
        msgs: impl IntoIterator<Item = ToDataplane>,
    ) -> Result<(), Closed> {
        for msg in msgs {
            self.send(msg).await?;
        }
        Ok(())
    }

    /// Ends the stream cleanly (status OK) after the queued messages.
    pub fn end(self) {}

    /// Ends the stream with `status` after the queued messages.
    pub async fn fail(self, status: Status) {
        let _ = self.tx.send(Err(status)).await;
    }

    /// True once the client has gone (its stream is dropped).
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Waits until the client has gone.
    pub async fn closed(&self) {
        self.tx.closed().await
    }
}

struct Service {
    sessions: mpsc::UnboundedSender<Session>,
    syncs: Arc<AtomicU64>,
}

#[tonic::async_trait]
impl PolicySync for Service {
    type SyncStream = ReceiverStream<Item>;

    async fn sync(
        &self,
        _request: Request<SyncRequest>,
    ) -> Result<Response<Self::SyncStream>, Status> {
        let number = self.syncs.fetch_add(1, Ordering::SeqCst) + 1;
        let (tx, rx) = mpsc::channel(SESSION_BUFFER);
        let session = Session {
            number,
            started: Instant::now(),
            tx,
        };
        if self.sessions.send(session).is_err() {
            return Err(Status::unavailable("test Felix is not accepting sessions"));
        }
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

impl FelixSim {
    /// Listens on `socket` (a file already there is replaced, as Felix does) and serves
    /// `PolicySync` until stopped. Must run inside a tokio runtime.
    pub async fn start(socket: impl Into<PathBuf>) -> Result<FelixSim> {
        let socket = socket.into();
        match std::fs::remove_file(&socket) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", socket.display())),
        }
        let listener = UnixListener::bind(&socket)
            .with_context(|| format!("listening on {}", socket.display()))?;
        let (sessions_tx, sessions) = mpsc::unbounded_channel();
        let syncs = Arc::new(AtomicU64::new(0));
        let service = PolicySyncServer::new(Service {
            sessions: sessions_tx,
            syncs: syncs.clone(),
        });
        let connections = Arc::new(Mutex::new(JoinSet::new()));
        let acceptor = tokio::spawn({
            let connections = connections.clone();
            async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let service = service.clone();
                    let mut set = connections.lock().await;
                    // Reap finished connections so the set does not grow.
                    while set.try_join_next().is_some() {}
                    set.spawn(async move {
                        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                            .serve_connection(
                                TokioIo::new(stream),
                                TowerToHyperService::new(service),
                            )
                            .await;
                    });
                }
            }
        });
        Ok(FelixSim {
            socket,
            sessions,
            syncs,
            connections,
            acceptor,
        })
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// How many `Sync` calls have arrived.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::SeqCst)
    }

    /// The next client `Sync` call (waits for it).
    pub async fn accept(&mut self) -> Session {
        match self.sessions.recv().await {
            Some(s) => s,
            // The sender lives in the server, which lives as long as `self`.
            None => std::future::pending().await,
        }
    }

    /// The next `Sync` call within `timeout`.
    pub async fn accept_within(&mut self, timeout: Duration) -> Result<Session> {
        match tokio::time::timeout(timeout, self.accept()).await {
            Ok(s) => Ok(s),
            Err(_) => bail!(
                "no client called Sync on {} within {timeout:?}",
                self.socket.display()
            ),
        }
    }

    /// Felix dies: stops accepting, removes the socket and drops every connection at once (no
    /// trailers, no GOAWAY: the client sees its stream break).
    pub async fn crash(self) {
        self.acceptor.abort();
        let _ = std::fs::remove_file(&self.socket);
        let mut set = self.connections.lock().await;
        set.shutdown().await;
    }
}

impl Drop for FelixSim {
    fn drop(&mut self) {
        self.acceptor.abort();
        if let Ok(mut set) = self.connections.try_lock() {
            set.abort_all();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// One `ToDataplane` message from protobuf JSON (the mapping `alp_felix::json` accepts).
pub fn parse_message(text: &str) -> Result<ToDataplane> {
    alp_felix::json::from_str(text).with_context(|| format!("not a ToDataplane message: {text}"))
}

/// One scripted step.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Send(Box<ToDataplane>),
    Pause(Duration),
    /// End the stream cleanly; the steps after it are for the next connection.
    End,
    /// End the stream with UNAVAILABLE and this message; the steps after it are for the next
    /// connection.
    Fail(String),
    /// Stop serving.
    Exit,
}

/// A parsed script: its steps grouped by connection.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Script {
    pub connections: Vec<Vec<Step>>,
}

impl Script {
    /// Parses the script text (see the crate documentation). Errors name the line.
    pub fn parse(text: &str) -> Result<Script> {
        let mut connections = vec![vec![]];
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            let n = i + 1;
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (word, rest) = line
                .split_once(char::is_whitespace)
                .map_or((line, ""), |(w, r)| (w, r.trim()));
            let step = if line.starts_with('{') {
                Step::Send(Box::new(
                    alp_felix::json::from_str(line).with_context(|| format!("line {n}"))?,
                ))
            } else {
                match word {
                    "pause" => Step::Pause(Duration::from_millis(
                        rest.parse().with_context(|| format!("line {n}: pause needs milliseconds, got {rest:?}"))?,
                    )),
                    "end" => Step::End,
                    "fail" => Step::Fail(if rest.is_empty() { "test Felix failed the stream".into() } else { rest.into() }),
                    "exit" => Step::Exit,
                    other => bail!("line {n}: unknown step {other:?} (a JSON message, pause MS, end, fail TEXT, exit)"),
                }
            };
            let ends = matches!(step, Step::End | Step::Fail(_));
            if let Some(current) = connections.last_mut() {
                current.push(step);
            }
            if ends {
                connections.push(vec![]);
            }
        }
        if connections.len() > 1 && connections.last().is_some_and(Vec::is_empty) {
            connections.pop();
        }
        Ok(Script { connections })
    }
}

/// What [`play`] reports as it goes.
pub trait Observer {
    fn event(&mut self, text: String);
}

impl<F: FnMut(String)> Observer for F {
    fn event(&mut self, text: String) {
        self(text)
    }
}

/// Plays `script` on `sim`: one section per accepted connection (the last section again for
/// any further connection). Returns after an `exit` step; otherwise serves forever.
pub async fn play(mut sim: FelixSim, script: &Script, observer: &mut dyn Observer) {
    let empty = vec![];
    for index in 0usize.. {
        let steps = script
            .connections
            .get(index)
            .or(script.connections.last())
            .unwrap_or(&empty);
        let session = sim.accept().await;
        observer.event(format!("connection {}: client called Sync", session.number));
        let mut sent = 0usize;
        let mut open = Some(session);
        for step in steps {
            let Some(session) = open.as_ref() else { break };
            match step {
                Step::Send(msg) => {
                    if session.send((**msg).clone()).await.is_err() {
                        observer.event(format!(
                            "connection {}: client went away after {sent} messages",
                            session.number
                        ));
                        open = None;
                        break;
                    }
                    sent += 1;
                }
                Step::Pause(d) => tokio::time::sleep(*d).await,
                Step::End => {
                    observer.event(format!(
                        "connection {}: ended after {sent} messages",
                        session.number
                    ));
                    if let Some(s) = open.take() {
                        s.end();
                    }
                }
                Step::Fail(text) => {
                    observer.event(format!(
                        "connection {}: failed after {sent} messages",
                        session.number
                    ));
                    if let Some(s) = open.take() {
                        s.fail(Status::unavailable(text.clone())).await;
                    }
                }
                Step::Exit => {
                    observer.event(format!(
                        "exiting after {sent} messages on connection {}",
                        session.number
                    ));
                    sim.crash().await;
                    return;
                }
            }
        }
        if let Some(session) = open {
            observer.event(format!(
                "connection {}: {sent} messages sent; holding the stream open",
                session.number
            ));
            session.closed().await;
            observer.event(format!("connection {}: client went away", session.number));
        }
    }
}
