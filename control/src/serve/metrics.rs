//! `GET /metrics`: control's own metrics in the Prometheus text exposition format (0.0.4),
//! written by hand (a handful of atomics; no registry needed).
//!
//! | metric | type | what |
//! |---|---|---|
//! | `alp_control_in_sync` | gauge | 1 while the source is in sync (readiness), else 0 |
//! | `alp_control_snapshot_version` | gauge | version of the snapshot served (0: none) |
//! | `alp_control_snapshot_bytes` | gauge | size of its envelope |
//! | `alp_control_felix_reconnects_total` | counter | Felix streams that ended or could not start (each is followed by a reconnect) |
//! | `alp_control_updates_applied_total` | counter | Felix Policy Sync messages applied to the store |
//! | `alp_control_connections_refused_total` | counter | connections closed at once at `--max-connections` (all listeners) |
//! | `alp_control_header_timeouts_total` | counter | connections closed at `--header-read-timeout` (all listeners) |
//! | `alp_control_snapshot_build_seconds` | histogram | time to build each snapshot from the source's state (file sources: read, parse, replay) |

use crate::source::counters::{Counted, Counters, BUILD_BUCKETS};
use std::fmt::Write as _;

/// The gauges at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub struct State {
    pub in_sync: bool,
    pub version: Option<u64>,
    pub bytes: Option<usize>,
}

/// The exposition text of the source's `counters` and the server's `state`.
pub fn render(counters: &Counters, state: State) -> String {
    let counted: Counted = counters.read();
    let mut out = String::with_capacity(2048);
    let mut metric = |name: &str, kind: &str, help: &str, value: String| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    metric(
        "alp_control_in_sync",
        "gauge",
        "Whether the policy source is in sync now (1) or not (0).",
        u8::from(state.in_sync).to_string(),
    );
    metric(
        "alp_control_snapshot_version",
        "gauge",
        "Version of the policy snapshot served to the filters (0: none yet).",
        state.version.unwrap_or(0).to_string(),
    );
    metric(
        "alp_control_snapshot_bytes",
        "gauge",
        "Size of the snapshot envelope served.",
        state.bytes.unwrap_or(0).to_string(),
    );
    metric(
        "alp_control_connections_refused_total",
        "counter",
        "Connections closed at once because --max-connections were open on their listener.",
        crate::listen::connections_refused().to_string(),
    );
    metric(
        "alp_control_header_timeouts_total",
        "counter",
        "Connections closed because their request headers did not arrive within --header-read-timeout.",
        crate::listen::header_timeouts().to_string(),
    );
    metric(
        "alp_control_felix_reconnects_total",
        "counter",
        "Felix Policy Sync streams that ended or could not start, each followed by a reconnect.",
        counted.reconnects.to_string(),
    );
    metric(
        "alp_control_updates_applied_total",
        "counter",
        "Felix Policy Sync messages applied to the store.",
        counted.updates_applied.to_string(),
    );
    let name = "alp_control_snapshot_build_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Time to build each policy snapshot from the source's state.\n# TYPE {name} histogram"
    );
    let mut cumulative = 0;
    for (bound, n) in BUILD_BUCKETS.iter().zip(&counted.build_buckets) {
        cumulative += n;
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
    }
    let count = counted.builds;
    let sum = counted.build_micros as f64 / 1e6;
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn renders_every_metric() {
        let m = Counters::default();
        m.reconnected();
        m.applied(5);
        m.applied(2);
        m.built(Duration::from_micros(300));
        m.built(Duration::from_millis(30));
        m.built(Duration::from_secs(10));
        let text = render(
            &m,
            State {
                in_sync: true,
                version: Some(42),
                bytes: Some(1000),
            },
        );
        assert_eq!(value(&text, "alp_control_in_sync"), Some(1.0));
        assert_eq!(value(&text, "alp_control_snapshot_version"), Some(42.0));
        assert_eq!(value(&text, "alp_control_snapshot_bytes"), Some(1000.0));
        assert_eq!(
            value(&text, "alp_control_felix_reconnects_total"),
            Some(1.0)
        );
        assert_eq!(value(&text, "alp_control_updates_applied_total"), Some(7.0));
        let b = "alp_control_snapshot_build_seconds";
        assert_eq!(
            value(&text, &format!("{b}_bucket{{le=\"0.001\"}}")),
            Some(1.0)
        );
        assert_eq!(
            value(&text, &format!("{b}_bucket{{le=\"0.05\"}}")),
            Some(2.0)
        );
        assert_eq!(
            value(&text, &format!("{b}_bucket{{le=\"2.5\"}}")),
            Some(2.0)
        );
        assert_eq!(
            value(&text, &format!("{b}_bucket{{le=\"+Inf\"}}")),
            Some(3.0)
        );
        assert_eq!(value(&text, &format!("{b}_count")), Some(3.0));
        assert!((value(&text, &format!("{b}_sum")).unwrap() - 10.0303).abs() < 1e-9);
        assert!(text.contains("# TYPE alp_control_snapshot_build_seconds histogram"));
        let empty = render(&Counters::default(), State::default());
        assert_eq!(value(&empty, "alp_control_snapshot_version"), Some(0.0));
        assert_eq!(value(&empty, "alp_control_in_sync"), Some(0.0));
    }

    /// `GET /metrics` of a running server follows its source.
    #[tokio::test]
    async fn served_by_control() {
        use crate::source::updates_file::UpdatesFile;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("updates.jsonl");
        std::fs::write(
            &file,
            concat!(
                r#"{"workloadEndpointUpdate":{"id":{"workloadId":"default/pod"},"endpoint":{"profileIds":["p"]}}}"#,
                "\n",
                r#"{"inSync":{}}"#,
                "\n"
            ),
        )
        .unwrap();
        let source = Box::new(UpdatesFile::new(file, Duration::from_millis(10)));
        let running = crate::serve::start(&"127.0.0.1:0".parse().unwrap(), source)
            .await
            .unwrap();
        let scrape = || async {
            let mut s = tokio::net::TcpStream::connect(&running.address)
                .await
                .unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nhost: c\r\nconnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut raw = String::new();
            s.read_to_string(&mut raw).await.unwrap();
            raw
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let text = loop {
            let text = scrape().await;
            if value(&text, "alp_control_in_sync") == Some(1.0)
                && value(&text, "alp_control_snapshot_version").unwrap_or(0.0) > 0.0
            {
                break text;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "never in sync: {text}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(
            text.contains("content-type: text/plain; version=0.0.4"),
            "{text}"
        );
        assert!(value(&text, "alp_control_snapshot_bytes").unwrap() > 0.0);
        assert_eq!(
            value(&text, "alp_control_snapshot_build_seconds_count"),
            Some(1.0)
        );
        running.shutdown.send_replace(true);
        running.finished().await.unwrap();
    }
}
