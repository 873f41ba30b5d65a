//! The native module's filter configuration: the wasm filter's JSON object
//! (`alp_filter::config::Config`, every key optional) plus `control_address`, where
//! `control serve` listens (`unix:PATH` or `HOST:PORT`), which this module polls itself. The
//! keys that only concern reaching control through an Envoy cluster (`control_cluster`,
//! `control_authority`) and the root tick (`tick_ms`) have no effect here.
//!
//! ```json
//! {"control_address":"unix:/var/run/calico-alp/control.sock","filter":"network"}
//! ```

use crate::control_client::Address;
use crate::follower::FollowSettings;
use alp_engine::{Options, TrustDomains};
use alp_filter::config::Config;
use std::time::Duration;

/// A parsed configuration.
#[derive(Debug, Clone)]
pub struct NativeConfig {
    pub filter: Config,
    pub control: Address,
}

impl NativeConfig {
    /// Parses `filter_config`; the error is what Envoy's log shows.
    pub fn parse(bytes: &[u8]) -> Result<NativeConfig, String> {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| "filter configuration is not UTF-8".to_string())?;
        let mut value: serde_json::Value = if text.trim().is_empty() {
            serde_json::Value::Object(Default::default())
        } else {
            serde_json::from_str(text)
                .map_err(|e| format!("filter configuration is not valid JSON: {e}"))?
        };
        let Some(object) = value.as_object_mut() else {
            return Err("filter configuration must be a JSON object".to_string());
        };
        let control = match object.remove("control_address") {
            Some(serde_json::Value::String(address)) => address
                .parse::<Address>()
                .map_err(|e| format!("filter configuration key \"control_address\": {e}"))?,
            Some(_) => {
                return Err(
                    "filter configuration key \"control_address\" must be a string".to_string(),
                )
            }
            None => {
                return Err(
                    "filter configuration key \"control_address\" is required: where \
                            control serve listens (unix:PATH or HOST:PORT)"
                        .to_string(),
                )
            }
        };
        let rest = value.to_string();
        let filter = Config::parse(Some(rest.as_bytes())).map_err(|e| e.to_string())?;
        Ok(NativeConfig { filter, control })
    }

    /// What the process-wide follower for this configuration follows.
    pub fn follow(&self) -> FollowSettings {
        FollowSettings {
            address: self.control.clone(),
            poll_timeout: Duration::from_millis(self.filter.poll_timeout_ms),
            retry_interval: Duration::from_millis(self.filter.retry_interval_ms),
            options: Options {
                staged: self.filter.staged,
                trust_domains: TrustDomains::new(self.filter.trust_domains.iter().cloned()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alp_filter::config::FilterKind;

    #[test]
    fn takes_the_wasm_keys_and_the_control_address() {
        let c = NativeConfig::parse(
            br#"{"control_address":"unix:/run/c.sock","filter":"network","enforce":false,"poll_timeout_ms":1500}"#,
        )
        .unwrap();
        assert_eq!(c.control, Address::Unix("/run/c.sock".into()));
        assert_eq!(c.filter.filter, FilterKind::Network);
        assert!(!c.filter.enforce);
        assert_eq!(c.follow().poll_timeout, Duration::from_millis(1500));
    }

    #[test]
    fn errors_name_the_key() {
        for (text, wanted) in [
            (&b"{}"[..], "\"control_address\" is required"),
            (b"[]", "must be a JSON object"),
            (b"{", "not valid JSON"),
            (b"\xff", "not UTF-8"),
            (br#"{"control_address":5}"#, "must be a string"),
            (
                br#"{"control_address":"nowhere"}"#,
                "neither HOST:PORT nor unix:PATH",
            ),
            (
                br#"{"control_address":"unix:/s","enforce":"yes"}"#,
                "plugin configuration is not valid",
            ),
            (
                br#"{"control_address":"unix:/s","typo":1}"#,
                "unknown field",
            ),
        ] {
            let err = NativeConfig::parse(text).unwrap_err();
            assert!(
                err.contains(wanted),
                "{}: {err}",
                String::from_utf8_lossy(text)
            );
        }
    }
}
