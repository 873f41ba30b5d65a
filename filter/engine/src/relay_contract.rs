//! The relay's wire contract: how the filter's fetcher (`alp-filter`'s `relay`) long-polls
//! `control serve` (`alp-control`'s `serve::http`) for snapshots. Both ends use these names
//! and rules; nothing here calls a host or does I/O.
//!
//! ```text
//! GET /v1/snapshot            SNAPSHOT_PATH
//! x-alp-have-version: <u64>   HAVE_VERSION_HEADER: the version the caller holds (absent or 0:
//!                             none; the filter also sends one it refused, so as not to get it again)
//! x-alp-wait-ms: <ms>         WAIT_HEADER: how long control may hold the poll (absent:
//!                             DEFAULT_WAIT_MS; more than MAX_WAIT_MS is capped to it)
//! -> 200  body: an envelope (CONTENT_TYPE), VERSION_HEADER x-alp-version: <u64>, as soon as
//!         the published version differs from the caller's ([`is_newer`])
//! -> 204  nothing newer within the wait, or control is shutting down
//! -> 400  a request header that is not a decimal number ([`NotANumber`])
//! ```
//!
//! The body is [`crate::envelope`]: magic, schema, version, checksum and the postcard-encoded
//! snapshot.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// The long-poll's path.
pub const SNAPSHOT_PATH: &str = "/v1/snapshot";
/// Request header: the version the caller holds (absent or 0: none).
pub const HAVE_VERSION_HEADER: &str = "x-alp-have-version";
/// Request header: how long control may hold the poll, in milliseconds.
pub const WAIT_HEADER: &str = "x-alp-wait-ms";
/// Response header of a 200: the version of the envelope in the body.
pub const VERSION_HEADER: &str = "x-alp-version";
/// Content type of a 200's body (an envelope).
pub const CONTENT_TYPE: &str = "application/octet-stream";
/// The wait when the caller gives none, and the filter's default `poll_timeout_ms`.
pub const DEFAULT_WAIT_MS: u64 = 20_000;
/// The longest wait control holds a poll; the filter accepts no longer `poll_timeout_ms`.
pub const MAX_WAIT_MS: u64 = 60_000;

/// Where `control serve` listens (`--listen`) and a filter reaches it: `HOST:PORT` (TCP) or
/// `unix:PATH` (a Unix socket).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Tcp(String),
    Unix(PathBuf),
}

impl FromStr for Address {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix: needs a socket path (unix:/run/alp/control.sock)".to_string());
            }
            return Ok(Address::Unix(PathBuf::from(path)));
        }
        match s.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                Ok(Address::Tcp(s.to_string()))
            }
            _ => Err(format!("{s:?} is neither HOST:PORT nor unix:PATH")),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp(addr) => f.write_str(addr),
            Address::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// A request header that is not a decimal number (the 400's body names it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{header} must be a decimal number")]
pub struct NotANumber {
    pub header: &'static str,
}

/// What a poll asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Poll {
    /// The version the caller holds; `None` for none (absent or 0).
    pub have: Option<u64>,
    /// How long control may hold the poll, capped at [`MAX_WAIT_MS`].
    pub wait: Duration,
}

impl Poll {
    /// Reads the request headers' raw values (`None`: absent).
    pub fn parse(have: Option<&[u8]>, wait: Option<&[u8]>) -> Result<Poll, NotANumber> {
        let number = |header: &'static str, value: Option<&[u8]>| match value {
            None => Ok(None),
            Some(v) => header_text(v)
                .and_then(parse_number)
                .map(Some)
                .ok_or(NotANumber { header }),
        };
        let have = number(HAVE_VERSION_HEADER, have)?.filter(|v| *v != 0);
        let wait = number(WAIT_HEADER, wait)?.map_or(DEFAULT_WAIT_MS, |ms| ms.min(MAX_WAIT_MS));
        Ok(Poll {
            have,
            wait: Duration::from_millis(wait),
        })
    }
}

/// A header value as text: only visible ASCII (and tabs), as HTTP allows; `None` otherwise.
pub fn header_text(value: &[u8]) -> Option<&str> {
    let visible = value.iter().all(|&b| b == b'\t' || (32..127).contains(&b));
    if visible {
        std::str::from_utf8(value).ok()
    } else {
        None
    }
}

/// A number header (`x-alp-have-version`, `x-alp-wait-ms`, `x-alp-version`): decimal,
/// surrounding whitespace allowed.
pub fn parse_number(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// Whether control answers a caller holding `have` with the snapshot `published`: whenever
/// the versions differ, not only when it is greater (a restarted control whose clock is
/// behind is still followed).
pub fn is_newer(published: u64, have: Option<u64>) -> bool {
    Some(published) != have
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_polls() {
        let ms = Duration::from_millis;
        assert_eq!(
            Poll::parse(None, None),
            Ok(Poll {
                have: None,
                wait: ms(DEFAULT_WAIT_MS)
            })
        );
        assert_eq!(
            Poll::parse(Some(b"17"), Some(b" 250 ")),
            Ok(Poll {
                have: Some(17),
                wait: ms(250)
            })
        );
        assert_eq!(Poll::parse(Some(b"0"), None).map(|p| p.have), Ok(None));
        assert_eq!(
            Poll::parse(None, Some(b"999999")).map(|p| p.wait),
            Ok(ms(MAX_WAIT_MS))
        );
        assert_eq!(
            Poll::parse(Some(b"v1"), None),
            Err(NotANumber {
                header: HAVE_VERSION_HEADER
            })
        );
        assert_eq!(
            Poll::parse(None, Some(b"-1")),
            Err(NotANumber {
                header: WAIT_HEADER
            })
        );
        assert_eq!(
            Poll::parse(Some(b"\x0b5"), None),
            Err(NotANumber {
                header: HAVE_VERSION_HEADER
            })
        );
        assert_eq!(
            NotANumber {
                header: WAIT_HEADER
            }
            .to_string(),
            "x-alp-wait-ms must be a decimal number"
        );
    }

    #[test]
    fn newer_means_different() {
        assert!(is_newer(5, None));
        assert!(is_newer(5, Some(4)));
        assert!(!is_newer(5, Some(5)));
        assert!(is_newer(5, Some(9)));
    }
}
