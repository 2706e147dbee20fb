//! Keys that choose among the instances of a kind (fission): a fixed 64-bit hash of the key
//! bytes, and its reduction to an instance index. Every nukleus that routes by key uses these,
//! so a key reaches the same instance whichever nukleus routes it (http and ws route a node id
//! to the switch instance that is the node's home, and the switch computes the same home).

/// FNV-1a (64-bit) followed by the SplitMix64 finaliser: fixed by this definition alone (not
/// by a crate version, a platform or a process seed), so identical in every process.
///
/// The bytes are taken eight at a time, each group's eight steps written out (a load, an
/// `xor` and a multiply per byte, no loop test per byte): the same byte-serial FNV-1a, ~4
/// instead of ~5 instructions per byte. A switch instance hashes every port of a RegPort and
/// every SendMsg target to find its instance.
pub fn key_hash(bytes: &[u8]) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut groups = bytes.chunks_exact(8);
    for group in &mut groups {
        for &b in group {
            h ^= u64::from(b);
            h = h.wrapping_mul(PRIME);
        }
    }
    for &b in groups.remainder() {
        h ^= u64::from(b);
        h = h.wrapping_mul(PRIME);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    h
}

/// The instance (of `instances`) a key hash belongs to. A multiply-high, not a modulo, so the
/// choice depends on the high bits of the hash.
///
/// # Panics
/// If `instances` is 0.
pub fn key_index(hash: u64, instances: usize) -> usize {
    assert!(instances > 0, "key_index: instances must be at least 1");
    ((u128::from(hash) * instances as u128) >> 64) as usize
}

/// The key hash of path segment `segment` (0-based, after the leading `/`; the query is not
/// part of the path) after percent-decoding, or `None` if the path has no such segment or it
/// is not valid percent-encoding. `/v1/nodes/n%201/ports` has segment 2 = `n 1`.
pub fn path_key(path: &str, segment: usize) -> Option<u64> {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let raw = path
        .strip_prefix('/')
        .unwrap_or(path)
        .split('/')
        .nth(segment)?;
    if raw.is_empty() {
        return None;
    }
    if !raw.contains('%') {
        return Some(key_hash(raw.as_bytes()));
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(key_hash(&out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_fixed_by_its_definition() {
        // Pinned values: changing the hash would move every node and port to another instance.
        assert_eq!(key_hash(b""), 17_665_956_581_633_026_203);
        assert_eq!(key_index(key_hash(b"alice"), 1), 0);
        let spread: Vec<usize> = (0..1000)
            .map(|i| key_index(key_hash(format!("node-{i}").as_bytes()), 4))
            .fold(vec![0; 4], |mut v, i| {
                v[i] += 1;
                v
            });
        assert!(spread.iter().all(|&n| n > 200), "{spread:?}");
    }

    /// FNV-1a as defined, a byte at a time, then the finaliser: what `key_hash` must equal.
    fn reference(bytes: &[u8]) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h ^= h >> 30;
        h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h ^= h >> 27;
        h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^= h >> 31;
        h
    }

    #[test]
    fn the_grouped_hash_is_fnv_1a_byte_by_byte_at_every_length() {
        // Pseudo-random bytes (SplitMix64), every length 0..=200 at every start offset 0..8 of
        // a buffer (groups of eight at any alignment), and common keys.
        let mut state = 0x1234_5678_9abc_def0_u64;
        let mut next = || {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        for round in 0..20 {
            let buf: Vec<u8> = (0..216).map(|_| next() as u8).collect();
            for start in 0..8 {
                for len in 0..=200 {
                    let bytes = &buf[start..start + len];
                    assert_eq!(key_hash(bytes), reference(bytes), "round {round} len {len}");
                }
            }
        }
        for key in [
            "",
            "a",
            "alice",
            "node-17",
            "p0000000000000042",
            "user:42/video:abc",
        ] {
            assert_eq!(key_hash(key.as_bytes()), reference(key.as_bytes()), "{key}");
        }
    }

    #[test]
    fn path_keys_decode_the_segment_and_ignore_the_query() {
        let k = key_hash(b"n 1");
        assert_eq!(path_key("/v1/nodes/n%201/ports", 2), Some(k));
        assert_eq!(path_key("/v1/ws/n%201?token=x", 2), Some(k));
        assert_eq!(path_key("/v1/ws/n 1", 2), Some(k));
        assert_eq!(path_key("/v1/messages", 2), None);
        assert_eq!(path_key("/v1/ws/", 2), None);
        assert_eq!(path_key("/v1/ws/%zz", 2), None);
        assert_eq!(path_key("/v1/ws/%4", 2), None);
    }
}
