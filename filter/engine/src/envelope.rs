//! The snapshot's binary framing on the relay and in Envoy's shared data:
//! `MAGIC (8 bytes) | schema (u16 LE) | version (u64 LE) | postcard-encoded Snapshot`.
//!
//! postcard rather than JSON: a 10 k-rule snapshot decodes several times faster and is a
//! fraction of the size, and both ends are this crate, so self-description buys nothing.
//! `control snapshot --format json` prints the same data for people.

use crate::snapshot::Snapshot;

pub const MAGIC: &[u8; 8] = b"CALPSNAP";
/// Bump when [`Snapshot`]'s encoding changes; a filter refuses schemas it does not know.
pub const SCHEMA: u16 = 1;
const HEADER_LEN: usize = 8 + 2 + 8;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("snapshot is {0} bytes, shorter than its {HEADER_LEN}-byte header")]
    Truncated(usize),
    #[error("snapshot does not start with the magic bytes {MAGIC:?}")]
    BadMagic,
    #[error("snapshot schema {found} is not supported (this build reads schema {SCHEMA})")]
    UnsupportedSchema { found: u16 },
    #[error("snapshot version {version} has a corrupt body: {message}")]
    Body { version: u64, message: String },
    #[error("snapshot could not be encoded: {0}")]
    Encode(String),
}

/// Frames `snapshot` as `version`.
pub fn encode(version: u64, snapshot: &Snapshot) -> Result<Vec<u8>, EnvelopeError> {
    let mut out = Vec::with_capacity(HEADER_LEN + 256);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&SCHEMA.to_le_bytes());
    out.extend_from_slice(&version.to_le_bytes());
    postcard::to_extend(snapshot, out).map_err(|e| EnvelopeError::Encode(e.to_string()))
}

/// Reads the version without decoding the body (cheap: what a VM compares per request).
pub fn peek_version(bytes: &[u8]) -> Result<u64, EnvelopeError> {
    let header = bytes
        .get(..HEADER_LEN)
        .ok_or(EnvelopeError::Truncated(bytes.len()))?;
    let (magic, rest) = header.split_at(8);
    if magic != MAGIC {
        return Err(EnvelopeError::BadMagic);
    }
    let (schema, version) = rest.split_at(2);
    let schema = u16::from_le_bytes([schema[0], schema[1]]);
    if schema != SCHEMA {
        return Err(EnvelopeError::UnsupportedSchema { found: schema });
    }
    let mut v = [0u8; 8];
    v.copy_from_slice(version);
    Ok(u64::from_le_bytes(v))
}

/// Decodes a framed snapshot into `(version, snapshot)`.
pub fn decode(bytes: &[u8]) -> Result<(u64, Snapshot), EnvelopeError> {
    let version = peek_version(bytes)?;
    let body = bytes.get(HEADER_LEN..).unwrap_or_default();
    let (snapshot, rest) =
        postcard::take_from_bytes::<Snapshot>(body).map_err(|e| EnvelopeError::Body {
            version,
            message: e.to_string(),
        })?;
    if !rest.is_empty() {
        return Err(EnvelopeError::Body {
            version,
            message: format!("{} trailing bytes", rest.len()),
        });
    }
    Ok((version, snapshot))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{Endpoint, Tier};

    fn sample() -> Snapshot {
        Snapshot {
            endpoint: Some(Endpoint {
                tiers: vec![Tier {
                    name: "default".into(),
                    ..Default::default()
                }],
                profile_ids: vec!["kns.default".into()],
            }),
            ..Default::default()
        }
    }

    #[test]
    fn round_trips() {
        let bytes = encode(42, &sample()).unwrap();
        assert_eq!(peek_version(&bytes), Ok(42));
        assert_eq!(decode(&bytes), Ok((42, sample())));
    }

    #[test]
    fn refuses_damage() {
        let good = encode(7, &sample()).unwrap();
        assert_eq!(decode(&good[..5]), Err(EnvelopeError::Truncated(5)));
        let mut bad_magic = good.clone();
        bad_magic[0] = b'X';
        assert_eq!(decode(&bad_magic), Err(EnvelopeError::BadMagic));
        let mut bad_schema = good.clone();
        bad_schema[8] = 99;
        assert_eq!(
            decode(&bad_schema),
            Err(EnvelopeError::UnsupportedSchema { found: 99 })
        );
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(matches!(
            decode(&trailing),
            Err(EnvelopeError::Body { version: 7, .. })
        ));
        let truncated_body = &good[..good.len() - 1];
        assert!(matches!(
            decode(truncated_body),
            Err(EnvelopeError::Body { .. })
        ));
    }
}
