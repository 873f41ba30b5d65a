//! The endpoints. The long-poll's wire contract (path, headers, waits, the envelope) is
//! `alp_engine::relay_contract`, shared with the filter.
//!
//! * `GET /v1/snapshot`: long-poll. Request headers `x-alp-have-version` (the version the
//!   caller holds; absent or 0: none) and `x-alp-wait-ms` (default 20000, at most 60000).
//!   `200` with the envelope (`application/octet-stream`, `x-alp-version`) as soon as a
//!   published snapshot's version differs from the caller's; `204` when none did within the
//!   wait (or the server is shutting down); `400` for an unreadable header.
//! * `GET /healthz`: `200` while the process serves.
//! * `GET /metrics`: Prometheus text format (see [`super::metrics`]).
//! * `GET /readyz`: `200` while the source is in sync and its snapshot is published, else
//!   `503` (before the first sync, and while a Felix stream is reconnecting: the last in-sync
//!   snapshot is still served then, but control is not following Felix).
//!
//! [`metrics_router`], for `--metrics-listen` (an address Prometheus reaches): `GET /metrics` and
//! `GET /healthz` only; everything else is 404, so that the policy snapshot is not served
//! beyond `--listen`.

use super::metrics;
use super::publish::Published;
use crate::source::counters::Counters;
use alp_engine::relay_contract::{
    self, Poll, CONTENT_TYPE, HAVE_VERSION_HEADER, SNAPSHOT_PATH, VERSION_HEADER, WAIT_HEADER,
};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tracing::debug;

#[derive(Clone)]
pub struct AppState {
    pub published: watch::Receiver<Option<Arc<Published>>>,
    /// Turns true when the server stops: pending polls answer 204 at once.
    pub shutdown: watch::Receiver<bool>,
    /// Whether the source is in sync now (readiness).
    pub in_sync: watch::Receiver<bool>,
    pub counters: Arc<Counters>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route(SNAPSHOT_PATH, get(snapshot))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(state)
}

/// What `--metrics-listen` serves: `/metrics` and `/healthz`, nothing else.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(state)
}

/// Parsed long-poll request headers.
pub use relay_contract::Poll as PollRequest;

/// The long-poll's request headers; the 400's body when one is not a number.
pub fn poll_request(headers: &HeaderMap) -> Result<PollRequest, String> {
    let value = |name: &str| headers.get(name).map(HeaderValue::as_bytes);
    Poll::parse(value(HAVE_VERSION_HEADER), value(WAIT_HEADER)).map_err(|e| format!("{e}\n"))
}

/// What the caller does not have yet, if anything.
pub fn newer(current: Option<&Arc<Published>>, have: Option<u64>) -> Option<Arc<Published>> {
    current
        .filter(|p| relay_contract::is_newer(p.version, have))
        .cloned()
}

/// Waits up to `wait` for a snapshot the caller does not have; `None` on timeout or shutdown.
pub async fn wait_for_newer(
    published: &mut watch::Receiver<Option<Arc<Published>>>,
    shutdown: &mut watch::Receiver<bool>,
    have: Option<u64>,
    wait: Duration,
) -> Option<Arc<Published>> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let found = newer(published.borrow_and_update().as_ref(), have);
        if found.is_some() || *shutdown.borrow() {
            return found;
        }
        let stopping = async {
            let _ = shutdown.wait_for(|stop| *stop).await;
        };
        let publisher_gone = tokio::select! {
            changed = published.changed() => changed.is_err(),
            _ = stopping => return None,
            _ = tokio::time::sleep_until(deadline) => return None,
        };
        if publisher_gone {
            // Nothing will change any more: hold the poll its full time rather than spin.
            tokio::time::sleep_until(deadline).await;
            return None;
        }
    }
}

async fn snapshot(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let request = match poll_request(&headers) {
        Ok(r) => r,
        Err(message) => return (StatusCode::BAD_REQUEST, message).into_response(),
    };
    let mut published = state.published.clone();
    let mut shutdown = state.shutdown.clone();
    match wait_for_newer(&mut published, &mut shutdown, request.have, request.wait).await {
        Some(p) => {
            debug!(version = p.version, have = ?request.have, bytes = p.envelope.len(), "snapshot sent");
            let mut response = (StatusCode::OK, p.envelope.clone()).into_response();
            let h = response.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
            h.insert(VERSION_HEADER, HeaderValue::from(p.version));
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        None => {
            debug!(have = ?request.have, "nothing newer");
            StatusCode::NO_CONTENT.into_response()
        }
    }
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    let published = state.published.borrow().clone();
    let text = metrics::render(
        &state.counters,
        metrics::State {
            in_sync: *state.in_sync.borrow(),
            version: published.as_ref().map(|p| p.version),
            bytes: published.as_ref().map(|p| p.envelope.len()),
        },
    );
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

async fn readyz(State(state): State<AppState>) -> Response {
    let in_sync = *state.in_sync.borrow();
    let version = state.published.borrow().as_ref().map(|p| p.version);
    match (in_sync, version) {
        (true, Some(v)) => (StatusCode::OK, format!("ready: version {v}\n")).into_response(),
        (false, Some(v)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: source not in sync (serving the last in-sync version {v})\n"),
        )
            .into_response(),
        (_, None) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no in-sync policy\n",
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Bytes;

    const DEFAULT_WAIT: Duration = Duration::from_millis(relay_contract::DEFAULT_WAIT_MS);
    const MAX_WAIT: Duration = Duration::from_millis(relay_contract::MAX_WAIT_MS);

    fn published(version: u64) -> Option<Arc<Published>> {
        Some(Arc::new(Published {
            version,
            envelope: Bytes::from_static(b"env"),
        }))
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn parses_poll_headers() {
        assert_eq!(
            poll_request(&headers(&[])),
            Ok(PollRequest {
                have: None,
                wait: DEFAULT_WAIT
            })
        );
        assert_eq!(
            poll_request(&headers(&[
                (HAVE_VERSION_HEADER, "17"),
                (WAIT_HEADER, "250")
            ])),
            Ok(PollRequest {
                have: Some(17),
                wait: Duration::from_millis(250)
            })
        );
        assert_eq!(
            poll_request(&headers(&[(HAVE_VERSION_HEADER, "0")]))
                .unwrap()
                .have,
            None
        );
        assert_eq!(
            poll_request(&headers(&[(WAIT_HEADER, "999999")]))
                .unwrap()
                .wait,
            MAX_WAIT
        );
        assert!(poll_request(&headers(&[(HAVE_VERSION_HEADER, "v1")])).is_err());
        assert!(poll_request(&headers(&[(WAIT_HEADER, "-1")])).is_err());
    }

    #[test]
    fn newer_compares_versions() {
        assert_eq!(newer(None, None), None);
        assert_eq!(
            newer(published(5).as_ref(), None).map(|p| p.version),
            Some(5)
        );
        assert_eq!(
            newer(published(5).as_ref(), Some(4)).map(|p| p.version),
            Some(5)
        );
        assert_eq!(newer(published(5).as_ref(), Some(5)), None);
        // Not "greater": a restarted control with a slower clock is still served.
        assert_eq!(
            newer(published(5).as_ref(), Some(9)).map(|p| p.version),
            Some(5)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn answers_at_once_when_behind() {
        let (_tx, mut rx) = watch::channel(published(5));
        let (_stop, mut stop) = watch::channel(false);
        let got = wait_for_newer(&mut rx, &mut stop, Some(4), DEFAULT_WAIT).await;
        assert_eq!(got.map(|p| p.version), Some(5));
    }

    #[tokio::test(start_paused = true)]
    async fn times_out_when_nothing_changes() {
        let (_tx, mut rx) = watch::channel(published(5));
        let (_stop, mut stop) = watch::channel(false);
        let start = tokio::time::Instant::now();
        assert_eq!(
            wait_for_newer(&mut rx, &mut stop, Some(5), Duration::from_secs(20)).await,
            None
        );
        assert_eq!(start.elapsed(), Duration::from_secs(20));
    }

    #[tokio::test(start_paused = true)]
    async fn wakes_on_a_new_version() {
        let (tx, mut rx) = watch::channel(None);
        let (_stop, mut stop) = watch::channel(false);
        let poll = tokio::spawn(async move {
            wait_for_newer(&mut rx, &mut stop, None, Duration::from_secs(20)).await
        });
        tokio::time::sleep(Duration::from_secs(3)).await;
        tx.send_replace(published(8));
        assert_eq!(poll.await.unwrap().map(|p| p.version), Some(8));
    }

    #[tokio::test(start_paused = true)]
    async fn ignores_republishing_the_same_version() {
        let (tx, mut rx) = watch::channel(published(8));
        let (_stop, mut stop) = watch::channel(false);
        let poll = tokio::spawn(async move {
            wait_for_newer(&mut rx, &mut stop, Some(8), Duration::from_secs(20)).await
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        tx.send_replace(published(8));
        tokio::time::sleep(Duration::from_secs(1)).await;
        tx.send_replace(published(9));
        assert_eq!(poll.await.unwrap().map(|p| p.version), Some(9));
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_polls() {
        let (_tx, mut rx) = watch::channel(published(8));
        let (stop_tx, mut stop) = watch::channel(false);
        let poll = tokio::spawn(async move {
            wait_for_newer(&mut rx, &mut stop, Some(8), Duration::from_secs(60)).await
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        stop_tx.send_replace(true);
        let start = tokio::time::Instant::now();
        assert_eq!(poll.await.unwrap(), None);
        assert!(start.elapsed() < Duration::from_secs(1));
    }
}
