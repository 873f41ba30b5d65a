//! The plugin configuration: a JSON object, every key optional (an empty configuration means
//! all defaults). Unknown keys are refused so a misspelt key is not silently ignored.
//!
//! ```json
//! {"control_cluster":"alp_control","control_authority":"alp-control",
//!  "poll_timeout_ms":20000,"retry_interval_ms":500,"tick_ms":100,
//!  "enforce":true,"staged":false,"metrics":true,
//!  "decision_log":"deny","decision_log_sample":1.0,"decision_log_max_per_second":1000}
//! ```
//!
//! * `enforce: false` is a dry run: every request is decided, counted and logged as usual, and
//!   none is refused (`alp_requests_total{alp_decision="would_deny"}` counts what would have been).
//! * `staged: true` also evaluates the staged policies as if they were enforced and counts and
//!   logs where that would decide differently (`alp_staged_*`).
//! * `metrics: false` defines and updates no `alp_*` stat at all.
//! * `decision_log`: `off`, `deny` (every refused, or in a dry run would-be refused, request) or
//!   `all`; one JSON line per decision at `info` in Envoy's log, sampled with probability
//!   `decision_log_sample` (0.0 to 1.0), at most `decision_log_max_per_second` lines per worker
//!   (0: no limit; the rest count in `alp_decision_log_suppressed_total`), so a flood of denials
//!   cannot make logging expensive. Staged differences are logged at any level but `off`.
//! * `trust_domains`: the SPIFFE trust domains a peer principal may come from (D12); a principal
//!   from any other is an invalid peer identity (403). Empty or absent: any trust domain.
//! * `non_canonical_path`: what to do with a request path that is not canonical (dot segments,
//!   `//`, `\`, parameter-only segments; D10): `rewrite` (default) forwards the canonical path,
//!   decided on that path; `reject` answers 400 `invalid request path`.
//! * `filter_state` (default `false`): write each decision to Envoy filter state
//!   `wasm.alp_decision` (`allow reason=allow tier=default policy=summary rule=0 rule_id=…`), so
//!   an access log shows it with `%FILTER_STATE(wasm.alp_decision:PLAIN)%`. Off by default: the
//!   host call and the filter-state object Envoy creates for it cost about 8 µs of Envoy CPU per
//!   request (bench/run.sh, one run). The shipped bootstrap and Istio manifests turn it on.
//! * `filter`: which Envoy filter this configuration is for: `http` (default,
//!   `envoy.filters.http.wasm`: each request is decided) or `network`
//!   (`envoy.filters.network.wasm` before `tcp_proxy`: each connection is decided, spec section 7;
//!   see `connection`). The module cannot tell which filter loaded it, so a network filter
//!   configured as `http` (or the reverse) stops the VM at its first connection: fail closed.

pub use alp_engine::path::NonCanonicalPath;
use alp_engine::relay_contract::{DEFAULT_WAIT_MS, MAX_WAIT_MS};
use serde::Deserialize;
use std::fmt;
/// Added to the poll timeout to get the callout's own timeout, so control answers first.
pub const CALL_GRACE_MS: u64 = 5_000;

/// Which Envoy filter the plugin configuration is for (`filter`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FilterKind {
    /// `envoy.filters.http.wasm`: one decision per request.
    #[default]
    Http,
    /// `envoy.filters.network.wasm`: one decision per connection.
    Network,
}

impl FilterKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FilterKind::Http => "http",
            FilterKind::Network => "network",
        }
    }
}

/// Which decisions are logged (`decision_log`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionLog {
    Off,
    /// Requests refused, or in a dry run that would have been (and staged differences).
    Deny,
    All,
}

impl DecisionLog {
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionLog::Off => "off",
            DecisionLog::Deny => "deny",
            DecisionLog::All => "all",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The Envoy cluster that reaches `control serve`.
    pub control_cluster: String,
    /// `:authority` of the requests to control.
    pub control_authority: String,
    /// How long control may hold a poll open (`x-alp-wait-ms`), at most
    /// `relay_contract::MAX_WAIT_MS` (control's cap).
    pub poll_timeout_ms: u64,
    /// Wait after a failed poll before the next one.
    pub retry_interval_ms: u64,
    /// Root context tick: lease renewal, poll scheduling, snapshot pick-up, metrics flush.
    pub tick_ms: u64,
    /// `false`: dry run, never refuse a request.
    pub enforce: bool,
    /// Also evaluate staged policies as if enforced, and count and log differences.
    pub staged: bool,
    /// Envoy stats `alp_*`.
    pub metrics: bool,
    pub decision_log: DecisionLog,
    /// Probability that a decision selected by `decision_log` is logged.
    pub decision_log_sample: f64,
    /// Most decision lines per second per VM (0: no limit).
    pub decision_log_max_per_second: u32,
    /// D12: accepted SPIFFE trust domains (empty: any).
    pub trust_domains: Vec<String>,
    /// D10: rewrite or reject a non-canonical request path.
    pub non_canonical_path: NonCanonicalPath,
    /// The HTTP filter or the network filter.
    pub filter: FilterKind,
    /// Write each decision to Envoy filter state `wasm.alp_decision` for access logs.
    pub filter_state: bool,
    /// Chaos testing only (cargo feature `chaos`; a released module refuses the key as unknown):
    /// a request for exactly this path aborts the VM (`scripts/chaos.sh`).
    #[cfg(feature = "chaos")]
    pub debug_abort_path: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            control_cluster: "alp_control".to_string(),
            control_authority: "alp-control".to_string(),
            poll_timeout_ms: DEFAULT_WAIT_MS,
            retry_interval_ms: 500,
            tick_ms: 100,
            enforce: true,
            staged: false,
            metrics: true,
            decision_log: DecisionLog::Deny,
            decision_log_sample: 1.0,
            decision_log_max_per_second: 1000,
            trust_domains: Vec::new(),
            non_canonical_path: NonCanonicalPath::Rewrite,
            filter: FilterKind::Http,
            filter_state: false,
            #[cfg(feature = "chaos")]
            debug_abort_path: None,
        }
    }
}

/// The crash switch of chaos builds (`--features chaos`): `debug_abort_path` is kept for the
/// whole VM (the HTTP and network filters of a workload share it).
#[cfg(feature = "chaos")]
pub mod chaos {
    use std::sync::Mutex;

    static ABORT_PATH: Mutex<Option<String>> = Mutex::new(None);

    pub fn set_abort_path(path: &str) {
        if let Ok(mut p) = ABORT_PATH.lock() {
            *p = Some(path.to_string());
        }
    }

    /// Aborts the VM (a trap: Envoy's failure_policy applies) when `path` is the switch's path.
    pub fn abort_if(path: &str) {
        let hit = ABORT_PATH
            .lock()
            .map(|p| p.as_deref() == Some(path))
            .unwrap_or(false);
        if hit {
            std::process::abort();
        }
    }
}

/// Why a configuration was refused; the text is what Envoy's log shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    NotUtf8,
    Json(String),
    Invalid {
        key: &'static str,
        problem: &'static str,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::NotUtf8 => write!(f, "plugin configuration is not UTF-8"),
            ConfigError::Json(e) => write!(f, "plugin configuration is not valid: {e}"),
            ConfigError::Invalid { key, problem } => {
                write!(f, "plugin configuration key {key:?} {problem}")
            }
        }
    }
}

impl Config {
    /// Parses the plugin configuration; absent or blank means every default.
    pub fn parse(bytes: Option<&[u8]>) -> Result<Config, ConfigError> {
        let text = match bytes {
            None => return Ok(Config::default()),
            Some(b) => std::str::from_utf8(b).map_err(|_| ConfigError::NotUtf8)?,
        };
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        let config: Config =
            serde_json::from_str(text).map_err(|e| ConfigError::Json(e.to_string()))?;
        config.validate()?;
        #[cfg(feature = "chaos")]
        if let Some(p) = &config.debug_abort_path {
            chaos::set_abort_path(p);
        }
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, problem| Err(ConfigError::Invalid { key, problem });
        if self.control_cluster.is_empty() {
            return invalid("control_cluster", "must not be empty");
        }
        if self.control_authority.is_empty() {
            return invalid("control_authority", "must not be empty");
        }
        if self
            .trust_domains
            .iter()
            .any(|d| d.is_empty() || d.contains('/'))
        {
            return invalid(
                "trust_domains",
                "must list trust domains such as \"cluster.local\" (not empty, no '/')",
            );
        }
        if self.poll_timeout_ms == 0 || self.poll_timeout_ms > MAX_WAIT_MS {
            return invalid("poll_timeout_ms", "must be between 1 and 60000");
        }
        if self.retry_interval_ms == 0 || self.retry_interval_ms > 3_600_000 {
            return invalid("retry_interval_ms", "must be between 1 and 3600000");
        }
        if self.tick_ms == 0 || self.tick_ms > 60_000 {
            return invalid("tick_ms", "must be between 1 and 60000");
        }
        if !(0.0..=1.0).contains(&self.decision_log_sample) {
            return invalid("decision_log_sample", "must be between 0.0 and 1.0");
        }
        Ok(())
    }

    /// The callout's timeout: control's wait plus a grace period.
    pub fn call_timeout_ms(&self) -> u64 {
        self.poll_timeout_ms + CALL_GRACE_MS
    }

    /// A lease not renewed for about three ticks expires.
    pub fn lease_ms(&self) -> u64 {
        self.tick_ms * 3
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_means_defaults() {
        assert_eq!(Config::parse(None), Ok(Config::default()));
        assert_eq!(Config::parse(Some(b"")), Ok(Config::default()));
        assert_eq!(Config::parse(Some(b" \n")), Ok(Config::default()));
        assert_eq!(Config::parse(Some(b"{}")), Ok(Config::default()));
    }

    #[test]
    fn documented_defaults() {
        let c = Config::default();
        assert_eq!(c.control_cluster, "alp_control");
        assert_eq!(c.control_authority, "alp-control");
        assert_eq!(
            (c.poll_timeout_ms, c.retry_interval_ms, c.tick_ms),
            (20_000, 500, 100)
        );
        assert_eq!(c.call_timeout_ms(), 25_000);
        assert_eq!(c.lease_ms(), 300);
        assert!(c.enforce && !c.staged && c.metrics);
        assert_eq!(c.decision_log, DecisionLog::Deny);
        assert_eq!(c.decision_log_sample, 1.0);
        assert_eq!(c.decision_log_max_per_second, 1000);
    }

    #[test]
    fn observability_keys() {
        let c = Config::parse(Some(
            br#"{"enforce":false,"staged":true,"metrics":false,"decision_log":"all","decision_log_sample":0.25}"#,
        ))
        .unwrap();
        assert!(!c.enforce && c.staged && !c.metrics);
        assert_eq!(c.decision_log, DecisionLog::All);
        assert_eq!(c.decision_log_sample, 0.25);
        let c = Config::parse(Some(br#"{"decision_log_max_per_second":0}"#)).unwrap();
        assert_eq!(c.decision_log_max_per_second, 0);
        let c = Config::parse(Some(br#"{"decision_log":"off","decision_log_sample":0}"#)).unwrap();
        assert_eq!(
            (c.decision_log, c.decision_log_sample),
            (DecisionLog::Off, 0.0)
        );
    }

    #[test]
    fn path_and_identity_keys() {
        let c = Config::default();
        assert!(c.trust_domains.is_empty());
        assert_eq!(c.non_canonical_path, NonCanonicalPath::Rewrite);
        let c = Config::parse(Some(
            br#"{"trust_domains":["cluster.local","prod"],"non_canonical_path":"reject"}"#,
        ))
        .unwrap();
        assert_eq!(c.trust_domains, ["cluster.local", "prod"]);
        assert_eq!(c.non_canonical_path, NonCanonicalPath::Reject);
        let err = |s: &str| Config::parse(Some(s.as_bytes())).unwrap_err().to_string();
        assert!(err(r#"{"trust_domains":[""]}"#).contains("\"trust_domains\""));
        assert!(err(r#"{"trust_domains":["spiffe://x/"]}"#).contains("\"trust_domains\""));
        assert!(err(r#"{"trust_domains":"cluster.local"}"#).contains("invalid type"));
        assert!(err(r#"{"non_canonical_path":"keep"}"#).contains("unknown variant"));
    }

    #[test]
    fn filter_kind() {
        assert_eq!(Config::default().filter, FilterKind::Http);
        let c = Config::parse(Some(br#"{"filter":"network"}"#)).unwrap();
        assert_eq!(c.filter, FilterKind::Network);
        let err = Config::parse(Some(br#"{"filter":"tcp"}"#))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown variant `tcp`"), "{err}");
    }

    #[test]
    fn partial_overrides() {
        let c = Config::parse(Some(br#"{"control_cluster":"ctl","tick_ms":50}"#)).unwrap();
        assert_eq!(c.control_cluster, "ctl");
        assert_eq!(c.tick_ms, 50);
        assert_eq!(c.poll_timeout_ms, 20_000);
    }

    #[test]
    fn refuses_bad_configuration() {
        let err = |s: &str| Config::parse(Some(s.as_bytes())).unwrap_err().to_string();
        assert!(
            err(r#"{"tick":5}"#).contains("unknown field `tick`"),
            "{}",
            err(r#"{"tick":5}"#)
        );
        assert!(err(r#"{"tick_ms":"5"}"#).contains("invalid type"));
        assert!(err("not json").contains("not valid"));
        assert!(err(r#"{"tick_ms":0}"#).contains("\"tick_ms\""));
        assert!(err(r#"{"control_cluster":""}"#).contains("\"control_cluster\""));
        assert!(err(r#"{"poll_timeout_ms":70000}"#).contains("\"poll_timeout_ms\""));
        assert!(err(r#"{"decision_log":"warn"}"#).contains("unknown variant"));
        assert!(err(r#"{"decision_log_sample":1.5}"#).contains("\"decision_log_sample\""));
        assert!(err(r#"{"decision_log_sample":-0.1}"#).contains("\"decision_log_sample\""));
        assert!(err(r#"{"enforce":"no"}"#).contains("invalid type"));
        assert_eq!(Config::parse(Some(&[0xff])), Err(ConfigError::NotUtf8));
    }

    #[cfg(not(feature = "chaos"))]
    #[test]
    fn the_crash_switch_is_unknown_without_the_chaos_feature() {
        let err = Config::parse(Some(br#"{"debug_abort_path":"/__alp_abort"}"#))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `debug_abort_path`"), "{err}");
    }
}
