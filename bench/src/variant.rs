//! The traffic of an HTTP cell besides configuration, rules and transport: the header set, the
//! HTTP version and whether each request gets a connection of its own. The default cell
//! (minimal headers, HTTP/1.1, keep-alive) is what the main tables measure, at every rule count,
//! closed and open loop; the other combinations ("variants") run closed loop only, at a subset of
//! rule counts, and by default one dimension at a time (see [`plan`]).

use crate::headers::HeaderSet;
use serde::{Deserialize, Serialize};

/// The HTTP version between the client and Envoy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HttpVersion {
    #[default]
    #[serde(rename = "1.1")]
    Http1,
    /// Plaintext: h2c with prior knowledge; TLS: ALPN `h2`.
    #[serde(rename = "2")]
    Http2,
}

impl HttpVersion {
    pub fn parse(s: &str) -> Result<HttpVersion, String> {
        match s {
            "1" | "1.1" | "http1" => Ok(HttpVersion::Http1),
            "2" | "h2" | "http2" => Ok(HttpVersion::Http2),
            _ => Err(format!("unknown HTTP version {s:?} (1, 2)")),
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            HttpVersion::Http1 => "HTTP/1.1",
            HttpVersion::Http2 => "HTTP/2",
        }
    }
}

/// Whether connections carry many requests or one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnMode {
    #[default]
    KeepAlive,
    /// A new connection (mTLS: a full handshake) per request, sent with `connection: close`.
    Close,
}

impl ConnMode {
    pub fn parse(s: &str) -> Result<ConnMode, String> {
        match s {
            "keepalive" | "keep-alive" => Ok(ConnMode::KeepAlive),
            "close" => Ok(ConnMode::Close),
            _ => Err(format!("unknown connection mode {s:?} (keepalive, close)")),
        }
    }
}

/// One combination of the traffic dimensions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Variant {
    #[serde(default)]
    pub headers: HeaderSet,
    #[serde(default)]
    pub http: HttpVersion,
    #[serde(default)]
    pub connection: ConnMode,
}

impl Variant {
    /// What the main tables measure.
    pub const DEFAULT: Variant = Variant {
        headers: HeaderSet::Minimal,
        http: HttpVersion::Http1,
        connection: ConnMode::KeepAlive,
    };

    pub fn is_default(self) -> bool {
        self == Variant::DEFAULT
    }

    /// HTTP/2 has no `connection` header, and a client opening an HTTP/2 connection per
    /// request is not what this dimension is about: that combination is not run.
    pub fn runnable(self) -> bool {
        !(self.http == HttpVersion::Http2 && self.connection == ConnMode::Close)
    }

    /// The parts that differ from the default, e.g. `realistic headers, HTTP/2`.
    pub fn title(self) -> String {
        let mut parts = Vec::new();
        if self.headers != HeaderSet::Minimal {
            parts.push(format!("{} headers", self.headers.key()));
        }
        if self.http != HttpVersion::Http1 {
            parts.push(self.http.label().to_string());
        }
        if self.connection == ConnMode::Close {
            parts.push("a connection per request".to_string());
        }
        if parts.is_empty() {
            "minimal headers, HTTP/1.1, keep-alive".into()
        } else {
            parts.join(", ")
        }
    }

    /// The default's values of the dimensions this variant changes, e.g. `minimal headers`.
    pub fn baseline_title(self) -> String {
        let mut parts = Vec::new();
        if self.headers != HeaderSet::Minimal {
            parts.push("minimal headers");
        }
        if self.http != HttpVersion::Http1 {
            parts.push("HTTP/1.1");
        }
        if self.connection == ConnMode::Close {
            parts.push("keep-alive");
        }
        if parts.is_empty() {
            "itself".into()
        } else {
            parts.join(", ")
        }
    }

    /// A short key for progress lines: `realistic+h2`, `close`, `default`.
    pub fn short(self) -> String {
        let mut parts = Vec::new();
        if self.headers != HeaderSet::Minimal {
            parts.push(self.headers.key());
        }
        if self.http == HttpVersion::Http2 {
            parts.push("h2");
        }
        if self.connection == ConnMode::Close {
            parts.push("close");
        }
        if parts.is_empty() {
            "default".into()
        } else {
            parts.join("+")
        }
    }
}

/// The variants to run besides the default cell, in order. One at a time (`cross` false): each
/// listed value other than the default, with the other dimensions at the default. `cross`:
/// every combination of the listed values (and the defaults) but the default itself and those
/// not [`Variant::runnable`].
pub fn plan(
    headers: &[HeaderSet],
    http: &[HttpVersion],
    connection: &[ConnMode],
    cross: bool,
) -> Vec<Variant> {
    let d = Variant::DEFAULT;
    let mut out: Vec<Variant> = Vec::new();
    let mut add = |v: Variant| {
        if !v.is_default() && v.runnable() && !out.contains(&v) {
            out.push(v);
        }
    };
    // One dimension at a time first (in both modes), so single changes lead the report.
    for &h in headers {
        add(Variant { headers: h, ..d });
    }
    for &v in http {
        add(Variant { http: v, ..d });
    }
    for &c in connection {
        add(Variant { connection: c, ..d });
    }
    if cross {
        for h in with_default(headers, d.headers) {
            for v in with_default(http, d.http) {
                for c in with_default(connection, d.connection) {
                    add(Variant {
                        headers: h,
                        http: v,
                        connection: c,
                    });
                }
            }
        }
    }
    out
}

/// Checks, from Envoy's HTTP connection manager counters over a variant's measurement, that it
/// got the traffic meant: `opened` downstream connections of which `http2` HTTP/2, for
/// `requests` measured requests on `connections` client connections.
pub fn check_connections(
    v: Variant,
    opened: u64,
    http2: u64,
    requests: u64,
    connections: usize,
) -> Result<(), String> {
    let connections = connections as u64;
    match (v.http, v.connection) {
        (HttpVersion::Http2, _) if http2 < connections || http2 != opened => Err(format!(
            "HTTP/2 cell: Envoy saw {opened} connections, {http2} of them HTTP/2 (want at least {connections}, all HTTP/2)"
        )),
        (HttpVersion::Http1, _) if http2 > 0 => Err(format!(
            "HTTP/1.1 cell: Envoy saw {http2} HTTP/2 connections"
        )),
        // Every measured request had a connection of its own (warm-up and retries add more).
        (HttpVersion::Http1, ConnMode::Close) if opened < requests => Err(format!(
            "connection-per-request cell: {requests} requests on only {opened} new connections"
        )),
        _ => Ok(()),
    }
}

/// `list` with `default` first (whether listed or not), each value once.
fn with_default<T: Copy + PartialEq>(list: &[T], default: T) -> Vec<T> {
    let mut l = vec![default];
    l.extend(list.iter().copied().filter(|x| *x != default));
    l
}

/// A rule count of `--variant-rules`, or `all`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleSel {
    All,
    Count(usize),
}

impl RuleSel {
    pub fn parse(s: &str) -> Result<RuleSel, String> {
        match s {
            "all" => Ok(RuleSel::All),
            n => n
                .parse()
                .map(RuleSel::Count)
                .map_err(|_| format!("not a rule count: {n:?} (a number, or all)")),
        }
    }

    /// The list for [`runs_at`]: `None` when `all` is among them.
    pub fn counts(list: &[RuleSel]) -> Option<Vec<usize>> {
        list.iter()
            .map(|r| match r {
                RuleSel::All => None,
                RuleSel::Count(n) => Some(*n),
            })
            .collect()
    }
}

/// Whether the variants run at `rules`: configurations without a policy always, the others at
/// the rule counts of `at` (`None`: every count).
pub fn runs_at(at: Option<&[usize]>, rules: Option<usize>) -> bool {
    match (at, rules) {
        (Some(list), Some(n)) => list.contains(&n),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ConnMode::*;
    use HeaderSet::*;
    use HttpVersion::*;

    #[test]
    fn one_at_a_time_changes_one_dimension_each() {
        let p = plan(
            &[Minimal, Realistic],
            &[Http1, Http2],
            &[KeepAlive, Close],
            false,
        );
        let d = Variant::DEFAULT;
        assert_eq!(
            p,
            vec![
                Variant {
                    headers: Realistic,
                    ..d
                },
                Variant { http: Http2, ..d },
                Variant {
                    connection: Close,
                    ..d
                },
            ]
        );
        assert!(plan(&[Minimal], &[Http1], &[KeepAlive], false).is_empty());
    }

    #[test]
    fn cross_is_every_runnable_combination_but_the_default() {
        let p = plan(
            &[Minimal, Realistic],
            &[Http1, Http2],
            &[KeepAlive, Close],
            true,
        );
        // 2 x 2 x 2 = 8, without the default and the two HTTP/2 + close; single changes first.
        assert_eq!(p.len(), 5);
        assert_eq!(
            p[..3],
            plan(
                &[Minimal, Realistic],
                &[Http1, Http2],
                &[KeepAlive, Close],
                false
            )[..]
        );
        assert!(p.iter().all(|v| !v.is_default() && v.runnable()));
        assert!(p.contains(&Variant {
            headers: Realistic,
            http: Http2,
            connection: KeepAlive
        }));
        // Values not listed stay at their default.
        let p = plan(&[Realistic], &[Http2], &[], true);
        assert_eq!(p.len(), 3);
        assert!(p.iter().all(|v| v.connection == KeepAlive));
    }

    #[test]
    fn titles_name_what_differs() {
        let v = Variant {
            headers: Realistic,
            http: Http2,
            connection: KeepAlive,
        };
        assert_eq!(v.title(), "realistic headers, HTTP/2");
        assert_eq!(v.baseline_title(), "minimal headers, HTTP/1.1");
        assert_eq!(v.short(), "realistic+h2");
        assert_eq!(Variant::DEFAULT.short(), "default");
        let c = Variant {
            connection: Close,
            ..Variant::DEFAULT
        };
        assert_eq!(c.baseline_title(), "keep-alive");
    }

    #[test]
    fn parse_and_serde() {
        assert_eq!(HttpVersion::parse("1"), Ok(Http1));
        assert_eq!(HttpVersion::parse("2"), Ok(Http2));
        assert!(HttpVersion::parse("3").is_err());
        assert_eq!(ConnMode::parse("keep-alive"), Ok(KeepAlive));
        let json = serde_json::to_string(&Variant {
            headers: Realistic,
            http: Http2,
            connection: Close,
        })
        .unwrap();
        assert_eq!(
            json,
            r#"{"headers":"realistic","http":"2","connection":"close"}"#
        );
        let v: Variant = serde_json::from_str("{}").unwrap();
        assert!(v.is_default());
    }

    #[test]
    fn connection_counts_tell_the_protocol() {
        let d = Variant::DEFAULT;
        let h2 = Variant { http: Http2, ..d };
        let close = Variant {
            connection: Close,
            ..d
        };
        assert!(check_connections(h2, 16, 16, 30_000, 16).is_ok());
        assert!(check_connections(h2, 16, 0, 30_000, 16).is_err());
        assert!(check_connections(d, 16, 0, 30_000, 16).is_ok());
        assert!(check_connections(d, 16, 16, 30_000, 16).is_err());
        assert!(check_connections(close, 12_000, 0, 10_000, 16).is_ok());
        assert!(check_connections(close, 16, 0, 10_000, 16).is_err());
    }

    #[test]
    fn rule_selection() {
        let l = [
            RuleSel::parse("1").unwrap(),
            RuleSel::parse("10000").unwrap(),
        ];
        assert_eq!(RuleSel::counts(&l), Some(vec![1, 10000]));
        assert_eq!(RuleSel::counts(&[RuleSel::Count(1), RuleSel::All]), None);
        assert!(RuleSel::parse("many").is_err());
    }

    #[test]
    fn variants_run_at_the_subset() {
        assert!(runs_at(Some(&[1, 10000]), None));
        assert!(runs_at(Some(&[1, 10000]), Some(1)));
        assert!(!runs_at(Some(&[1, 10000]), Some(100)));
        assert!(runs_at(None, Some(100)));
    }
}
