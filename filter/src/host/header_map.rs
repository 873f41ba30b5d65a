//! The proxy-wasm serialization of a header map, as the real host reads the request's in one
//! call: only `:method` and `:path` are picked out.

use super::MethodAndPath;

/// `:method` and `:path` from a serialized header map: a u32 count, the count's (key size,
/// value size) u32 pairs, then each key and value followed by a NUL (all little-endian). A map
/// that does not parse yields what was found before the problem.
pub fn method_and_path(map: &[u8]) -> MethodAndPath {
    let u32_at = |at: usize| -> Option<usize> {
        let b: [u8; 4] = map.get(at..at.checked_add(4)?)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(b)).ok()
    };
    let (mut method, mut path) = (None, None);
    let Some(count) = u32_at(0) else {
        return (method, path);
    };
    let mut data = 4usize.saturating_add(count.saturating_mul(8));
    for i in 0..count {
        let entry = i.checked_mul(8).and_then(|x| x.checked_add(4));
        let (Some(key_len), Some(value_len)) = (
            entry.and_then(u32_at),
            entry.and_then(|e| e.checked_add(4)).and_then(u32_at),
        ) else {
            break;
        };
        let key = map.get(data..data.saturating_add(key_len));
        let value_at = data.saturating_add(key_len).saturating_add(1);
        let value = map.get(value_at..value_at.saturating_add(value_len));
        let (Some(key), Some(value)) = (key, value) else {
            break;
        };
        match key {
            b":method" if method.is_none() => method = Some(value.to_vec()),
            b":path" if path.is_none() => path = Some(value.to_vec()),
            _ => {}
        }
        if method.is_some() && path.is_some() {
            break;
        }
        data = value_at.saturating_add(value_len).saturating_add(1);
    }
    (method, path)
}

#[cfg(test)]
mod tests {
    use super::method_and_path;

    /// The proxy-wasm serialization of `pairs`.
    fn serialize(pairs: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
        for (k, v) in pairs {
            out.extend_from_slice(&(k.len() as u32).to_le_bytes());
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        }
        for (k, v) in pairs {
            out.extend_from_slice(k.as_bytes());
            out.push(0);
            out.extend_from_slice(v);
            out.push(0);
        }
        out
    }

    #[test]
    fn finds_method_and_path_in_a_serialized_map() {
        let map = serialize(&[
            (":authority", b"x"),
            (":path", b"/a?b"),
            (":method", b"GET"),
            ("cookie", b"c"),
        ]);
        assert_eq!(
            method_and_path(&map),
            (Some(b"GET".to_vec()), Some(b"/a?b".to_vec()))
        );
        let map = serialize(&[("x-path", b"/no"), (":path", b""), ("bytes", b"\xff\x00")]);
        assert_eq!(method_and_path(&map), (None, Some(Vec::new())));
        assert_eq!(method_and_path(&serialize(&[])), (None, None));
        // The first of repeated pseudo-headers (Envoy never sends two).
        let map = serialize(&[(":method", b"GET"), (":method", b"POST"), (":path", b"/")]);
        assert_eq!(method_and_path(&map).0, Some(b"GET".to_vec()));
    }

    #[test]
    fn truncated_or_lying_maps_yield_what_was_read() {
        let map = serialize(&[(":method", b"GET"), (":path", b"/a")]);
        for cut in 0..map.len() {
            let (m, p) = method_and_path(&map[..cut]);
            assert!(m.is_none() || m == Some(b"GET".to_vec()));
            assert!(p.is_none() || p == Some(b"/a".to_vec()));
        }
        let mut huge = map.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        let _ = method_and_path(&huge);
        let mut long_key = map;
        long_key[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(method_and_path(&long_key), (None, None));
    }
}
