//! A hostile test Felix: answers `felix.PolicySync/Sync` at the HTTP/2 level with bytes that are
//! not a well-formed stream, so a client's handling of a broken Felix can be tested
//! (`tests/tests/chaos.rs`). Every call counts in [`RawFelix::syncs`] (how often the client
//! reconnected).

use anyhow::{Context as _, Result};
use hyper::body::{Bytes, Frame};
use std::convert::Infallible;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::UnixListener;
use tokio::sync::mpsc;

/// What each `Sync` call gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// A complete gRPC message whose payload is not valid protobuf; the stream then stays open.
    Undecodable,
    /// The start of a gRPC message (its header announces 1024 bytes, 8 arrive), then the
    /// connection is dropped without a trailer, a RST_STREAM or a GOAWAY.
    ResetMidMessage,
    /// Response headers, then nothing at all (a Felix that hangs before its first message).
    Stall,
}

/// A response body fed from a channel.
struct ChannelBody(mpsc::Receiver<Frame<Bytes>>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|f| f.map(Ok))
    }
}

/// The running hostile Felix; dropping it stops it and removes the socket.
pub struct RawFelix {
    socket: PathBuf,
    syncs: Arc<AtomicU64>,
    acceptor: tokio::task::JoinHandle<()>,
}

impl RawFelix {
    /// Listens on `socket` (replacing a file there). Must run inside a tokio runtime.
    pub async fn start(socket: impl Into<PathBuf>, behaviour: Behaviour) -> Result<RawFelix> {
        let socket = socket.into();
        let _ = std::fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket)
            .with_context(|| format!("listening on {}", socket.display()))?;
        let syncs = Arc::new(AtomicU64::new(0));
        let counter = syncs.clone();
        let acceptor = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let counter = counter.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |_req| {
                        counter.fetch_add(1, Ordering::SeqCst);
                        let (tx, rx) = mpsc::channel(4);
                        tokio::spawn(async move {
                            match behaviour {
                                Behaviour::Undecodable => {
                                    // Length 8; field 0 with wire type 7: no protobuf decoder
                                    // accepts it.
                                    let mut frame = vec![0u8, 0, 0, 0, 8];
                                    frame.extend_from_slice(&[0xff; 8]);
                                    let _ = tx.send(Frame::data(Bytes::from(frame))).await;
                                    tx.closed().await;
                                }
                                Behaviour::ResetMidMessage => {
                                    let mut frame = vec![0u8, 0, 0, 4, 0];
                                    frame.extend_from_slice(b"\x0a\x06abcde");
                                    let _ = tx.send(Frame::data(Bytes::from(frame))).await;
                                    tx.closed().await;
                                }
                                Behaviour::Stall => tx.closed().await,
                            }
                        });
                        async move {
                            let resp = hyper::Response::builder()
                                .status(200)
                                .header("content-type", "application/grpc")
                                .body(ChannelBody(rx))
                                .map_err(|e| anyhow::anyhow!("{e}"))?;
                            Ok::<_, anyhow::Error>(resp)
                        }
                    });
                    let conn = hyper::server::conn::http2::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                    if behaviour == Behaviour::ResetMidMessage {
                        // Drop the connection (the socket closes) shortly after the partial
                        // message went out.
                        let _ = tokio::time::timeout(Duration::from_millis(100), conn).await;
                    } else {
                        let _ = conn.await;
                    }
                });
            }
        });
        Ok(RawFelix {
            socket,
            syncs,
            acceptor,
        })
    }

    /// How many `Sync` calls arrived.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::SeqCst)
    }

    /// Stops serving (open connections end with the runtime's tasks) and removes the socket.
    pub fn stop(self) {}
}

impl Drop for RawFelix {
    fn drop(&mut self) {
        self.acceptor.abort();
        let _ = std::fs::remove_file(&self.socket);
    }
}
