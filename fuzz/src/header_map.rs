//! The filter's parser of proxy-wasm's serialized header map
//! (`alp_filter::host::header_map::method_and_path`, what the filter reads `:method` and
//! `:path` with), and `HttpAttributes::read` on what it yields.
//!
//! Two uses of the input:
//! * as a serialized map as it is (truncated, lying about sizes): what is found is a part of
//!   the input;
//! * as pairs (key and value alternating, split at 0xFF bytes) serialized correctly: the first
//!   `:method` and the first `:path` are found, exactly.

use alp_filter::attributes::HttpAttributes;
use alp_filter::host::header_map::method_and_path;

pub fn fuzz(data: &[u8]) {
    let (method, path) = method_and_path(data);
    for found in [&method, &path].into_iter().flatten() {
        assert!(
            found.is_empty() || data.windows(found.len()).any(|w| w == found.as_slice()),
            "{found:?} is not in the map"
        );
    }

    let parts: Vec<&[u8]> = data.split(|&b| b == 0xff).collect();
    let pairs: Vec<(&[u8], &[u8])> = parts
        .chunks(2)
        .map(|kv| (kv[0], kv.get(1).copied().unwrap_or_default()))
        .collect();
    let map = serialize(&pairs);
    let first = |name: &[u8]| {
        pairs
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_vec())
    };
    let want = (first(b":method"), first(b":path"));
    let got = method_and_path(&map);
    assert_eq!(got, want, "pairs {pairs:?}");

    let host = crate::properties::FuzzHost::with_request(got.clone());
    let attributes = HttpAttributes::read(&host).unwrap_or_else(|_| panic!("host error"));
    let raw_path = got.1.unwrap_or_default();
    match std::str::from_utf8(&raw_path) {
        Ok(text) => assert_eq!(attributes.path, text),
        // Not UTF-8: each stray byte becomes its %XX escape, which decodes back to it.
        Err(_) => assert!(attributes.path.len() > raw_path.len()),
    }
    assert_eq!(attributes.received_path(), attributes.path);
}

/// The proxy-wasm serialization of `pairs`: a u32 count, (key size, value size) u32 pairs, then
/// each key and value followed by a NUL, little-endian.
pub fn serialize(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
    for (k, v) in pairs {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k);
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}
