//! The bench's HTTP/2 load (wrk speaks HTTP/1.1 only), as Istio sidecars talk to each other:
//! plaintext h2c with prior knowledge (the connection preface straight away; Envoy's `AUTO`
//! codec recognises it), mTLS with ALPN `h2` (the target's client configuration offers only
//! `h2`, and `load::connect` checks it was agreed).
//!
//! Closed loop: N connections, made before the warm-up, each with M streams in flight; every
//! stream sends its next request (`GET`, end of stream on the headers, the header set of
//! `headers.rs` after the pseudo-headers) as soon as the previous response is in. Same thread,
//! window, tally and CPU measurement as the HTTP/1.1 generator (`load.rs`).

use crate::load::{self, Outcome, Pace, Settings, Tally, Target, Window};
use anyhow::{bail, Context as _, Result};
use bytes::Bytes;
use h2::client::SendRequest;
use http::{Request, Version};
use std::future::poll_fn;
use std::time::{Duration, Instant};

/// The request every stream sends (cloned per request).
fn request(target: &Target) -> Result<Request<()>> {
    let scheme = if target.tls.is_some() {
        "https"
    } else {
        "http"
    };
    // h2 takes :scheme, :authority and :path from the URI; `Host` would be redundant.
    let mut b = Request::builder()
        .method("GET")
        .version(Version::HTTP_2)
        .uri(format!("{scheme}://{}{}", target.addr, target.path));
    for (name, value) in target.headers.fields() {
        b = b.header(*name, *value);
    }
    b.body(()).context("building the HTTP/2 request")
}

/// A connection: TCP (and TLS), the HTTP/2 handshake, its driver spawned on the current
/// `LocalSet`.
async fn open(target: &Target) -> Result<SendRequest<Bytes>> {
    let io = load::connect(target).await?;
    let (send, connection) = h2::client::handshake(io)
        .await
        .context("HTTP/2 handshake")?;
    tokio::task::spawn_local(async move {
        // Ends with the connection; a failure shows in the streams' errors.
        let _ = connection.await;
    });
    Ok(send)
}

/// One request and its whole response: the status.
async fn exchange(send: &mut SendRequest<Bytes>, request: Request<()>) -> Result<u16> {
    poll_fn(|cx| send.poll_ready(cx)).await?;
    let (response, _) = send.send_request(request, true)?;
    let response = response.await?;
    let status = response.status().as_u16();
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        body.flow_control().release_capacity(chunk.len())?;
    }
    Ok(status)
}

/// One stream slot's closed loop. An error ends it (counted): the run then fails anyway.
async fn stream_loop(mut send: SendRequest<Bytes>, request: Request<()>, window: Window) -> Tally {
    let mut tally = Tally::default();
    loop {
        let sent = Instant::now();
        if sent >= window.end {
            break;
        }
        let result = exchange(&mut send, request.clone()).await;
        let done = Instant::now();
        match result {
            Ok(status) => {
                if sent >= window.start && done <= window.end {
                    tally.count(status, sent, done);
                }
            }
            Err(_) => {
                tally.errors += 1;
                break;
            }
        }
    }
    tally
}

/// Runs the closed loop: `settings.connections` connections × `streams` streams in flight.
/// Blocks for warm-up + duration.
pub fn run(target: &Target, settings: &Settings, streams: usize) -> Result<Outcome> {
    if settings.pace != Pace::Closed {
        bail!("the HTTP/2 load is closed loop only");
    }
    let (target, settings) = (target.clone(), settings.clone());
    load::on_load_thread(settings.cpu, move || async move {
        let request = request(&target)?;
        let mut connections = Vec::with_capacity(settings.connections);
        for _ in 0..settings.connections {
            connections.push(open(&target).await?);
        }
        let (_, window) = load::window(&settings);
        let mut handles = Vec::new();
        for send in &connections {
            for _ in 0..streams.max(1) {
                handles.push(tokio::task::spawn_local(stream_loop(
                    send.clone(),
                    request.clone(),
                    window,
                )));
            }
        }
        load::gather(handles, &settings, window).await
    })
}

/// One request on a fresh HTTP/2 connection: its status (sanity checks before measuring).
pub fn probe(target: &Target) -> Result<u16> {
    let target = target.clone();
    load::on_load_thread(None, move || async move {
        let request = request(&target)?;
        tokio::time::timeout(Duration::from_secs(5), async {
            let mut send = open(&target).await?;
            exchange(&mut send, request).await
        })
        .await
        .context("no HTTP/2 response in 5 s")?
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::HeaderSet;

    fn target(headers: HeaderSet) -> Target {
        Target {
            addr: "127.0.0.1:8080".parse().unwrap(),
            tls: None,
            path: "/orders/42".into(),
            headers,
        }
    }

    #[test]
    fn the_request_carries_the_header_set() {
        let r = request(&target(HeaderSet::Realistic)).unwrap();
        assert_eq!(r.uri().to_string(), "http://127.0.0.1:8080/orders/42");
        assert_eq!(r.headers().len(), HeaderSet::Realistic.fields().len());
        for (name, value) in HeaderSet::Realistic.fields() {
            assert_eq!(r.headers()[*name], *value);
        }
        assert!(request(&target(HeaderSet::Minimal))
            .unwrap()
            .headers()
            .is_empty());
    }
}
