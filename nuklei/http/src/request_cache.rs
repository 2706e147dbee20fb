//! The last request head http read, kept as wire bytes with what reading it decided: a client
//! that sends the same head again and again (load generators, health checks, polling clients,
//! every pipelined burst of identical requests) has it compared instead of parsed, checked
//! and encoded anew for every request.
//!
//! Why a hit is exact: reading a head (`request::parse_head`) looks at the bytes up to the
//! blank line that ends it and at nothing after, and depends otherwise only on the limits and
//! the routes, which are fixed for a nukleus. The cached bytes are a complete head that ends
//! at its first blank line, so any input that starts with them holds that same head and reads
//! the same way: the same `Parsed` and the same BEGIN extension. The owner does not use the
//! cache when a route takes a key from the path (the key is computed while routing, which a
//! hit skips). Sans-I/O.

use crate::request::Parsed;

/// Heads larger than this are read every time (keeps the copy per miss and the memory small).
const MAX_CACHED: usize = 1024;

/// One cached request head.
#[derive(Default)]
pub struct RequestCache {
    entry: Option<Entry>,
}

struct Entry {
    /// The head's bytes, blank line included (`parsed.consumed` of them).
    head: Vec<u8>,
    parsed: Parsed,
    /// The BEGIN extension reading it wrote.
    extension: Vec<u8>,
}

impl RequestCache {
    /// The outcome of reading `input` if it starts with the cached head: the extension is
    /// written to `extension` (cleared first), as reading would.
    pub fn get(&self, input: &[u8], extension: &mut Vec<u8>) -> Option<Parsed> {
        let parsed = self.hit(input)?;
        extension.clear();
        extension.extend_from_slice(self.extension());
        Some(parsed)
    }

    /// The outcome of reading `input` if it starts with the cached head, without its
    /// extension: that is [`RequestCache::extension`] (as long as nothing is put meanwhile).
    #[inline]
    pub fn hit(&self, input: &[u8]) -> Option<Parsed> {
        let entry = self.entry.as_ref()?;
        if !input.starts_with(&entry.head) {
            return None;
        }
        Some(entry.parsed.clone())
    }

    /// Whether `input` starts with the cached head: the length of that head if it does (what
    /// [`RequestCache::hit`] would say without its `Parsed`, for a caller that holds it).
    #[inline]
    pub fn matches(&self, input: &[u8]) -> Option<usize> {
        let entry = self.entry.as_ref()?;
        input.starts_with(&entry.head).then_some(entry.head.len())
    }

    /// How many copies of the cached head `input` starts with, back to back, counting at most
    /// `limit`: each of them is a hit ([`RequestCache::matches`] at every multiple of the
    /// head's length below that count). A burst of one request is checked with one comparison
    /// of the bytes against themselves one head further on (bytes that equal their own shift by
    /// the head's length repeat the head that starts them), and head by head only when it is
    /// not all repeats.
    pub fn repeats(&self, input: &[u8], limit: usize) -> usize {
        let Some(entry) = &self.entry else {
            return 0;
        };
        let n = entry.head.len();
        if n == 0 || limit == 0 || !input.starts_with(&entry.head) {
            return 0;
        }
        let whole = (input.len() / n).min(limit);
        let span = whole * n;
        if input[n..span] == input[..span - n] {
            return whole;
        }
        let mut count = 1;
        while count < whole && input[count * n..].starts_with(&entry.head) {
            count += 1;
        }
        count
    }

    /// The BEGIN extension of the cached head (empty when none is cached).
    pub fn extension(&self) -> &[u8] {
        self.entry.as_ref().map_or(&[], |e| &e.extension)
    }

    /// Remembers a head just read from the start of `input` (replacing the previous one).
    pub fn put(&mut self, input: &[u8], parsed: &Parsed, extension: &[u8]) {
        let Some(head) = input.get(..parsed.consumed) else {
            return;
        };
        if head.len() > MAX_CACHED || extension.len() > MAX_CACHED {
            return;
        }
        let entry = self.entry.get_or_insert_with(|| Entry {
            head: Vec::with_capacity(head.len()),
            parsed: parsed.clone(),
            extension: Vec::with_capacity(extension.len()),
        });
        entry.head.clear();
        entry.head.extend_from_slice(head);
        entry.parsed = parsed.clone();
        entry.extension.clear();
        entry.extension.extend_from_slice(extension);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{parse_head, HttpLimits, Rejection};

    fn read(input: &[u8], cache: &mut RequestCache) -> (String, Vec<u8>, bool) {
        let route = |path: &str| (path.len() != 2).then_some(path.len());
        let mut extension = Vec::new();
        if let Some(parsed) = cache.get(input, &mut extension) {
            let parsed: Result<_, Rejection> = Ok(Some(parsed));
            return (format!("{parsed:?}"), extension, true);
        }
        let parsed = parse_head(input, &HttpLimits::default(), route, &mut extension);
        if let Ok(Some(parsed)) = &parsed {
            cache.put(input, parsed, &extension);
        }
        (format!("{parsed:?}"), extension, false)
    }

    fn fresh(input: &[u8]) -> (String, Vec<u8>) {
        let (outcome, extension, _) = read(input, &mut RequestCache::default());
        (outcome, extension)
    }

    #[test]
    fn a_repeated_head_is_read_once_and_every_hit_reads_as_parsing_would() {
        let mut cache = RequestCache::default();
        let get = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let inputs: [&[u8]; 9] = [
            get,
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\nrest",
            // A longer head that starts with the same line: not a hit.
            b"GET / HTTP/1.1\r\nHost: xy\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\n",
            b"POST /ab HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
            b"POST /ab HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r",
            b"GET / HTTP/1.0\r\n\r\n",
        ];
        let mut hits = 0;
        for input in inputs {
            let matched = cache.matches(input);
            assert_eq!(matched, cache.hit(input).map(|p| p.consumed), "{input:?}");
            let (outcome, extension, hit) = read(input, &mut cache);
            assert_eq!((outcome, extension), fresh(input), "{input:?}");
            hits += hit as usize;
        }
        assert_eq!(hits, 3, "the two repeats of GET and the repeated POST");
    }

    #[test]
    fn repeats_counts_the_hits_back_to_back() {
        let mut cache = RequestCache::default();
        let get: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let other: &[u8] = b"GET / HTTP/1.1\r\nHost: y\r\n\r\n";
        assert_eq!(cache.repeats(get, 10), 0, "nothing cached");
        read(get, &mut cache);
        // One hit after another, as `matches` finds them.
        let naive = |input: &[u8], limit: usize| {
            let mut count = 0;
            while count < limit && cache.matches(&input[count * get.len()..]).is_some() {
                count += 1;
            }
            count
        };
        let mut inputs: Vec<Vec<u8>> = Vec::new();
        for copies in 0..5 {
            let burst = get.repeat(copies);
            for tail in [&b""[..], b"GET / HT", other, b"x", &get[..get.len() - 1]] {
                inputs.push([&burst[..], tail].concat());
                inputs.push([&burst[..], tail, get].concat());
            }
        }
        // Periodic in parts, but not repeats of the head: it is shifted by a byte.
        inputs.push([&b"G"[..], &get.repeat(3)].concat());
        for input in &inputs {
            for limit in [0, 1, 2, 3, 10] {
                assert_eq!(
                    cache.repeats(input, limit),
                    naive(input, limit),
                    "{:?}, limit {limit}",
                    String::from_utf8_lossy(input)
                );
            }
        }
    }

    #[test]
    fn incomplete_bad_and_oversized_heads_are_not_kept() {
        let mut cache = RequestCache::default();
        read(b"GET / HTTP/1.1\r\nHost: x\r\n", &mut cache);
        read(b"GET / HTTP/1.1\r\n\r\n", &mut cache); // 400: no Host
        assert!(cache.entry.is_none());
        let big = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX: {}\r\n\r\n",
            "v".repeat(2000)
        );
        read(big.as_bytes(), &mut cache);
        assert!(cache.entry.is_none());
        assert!(!read(big.as_bytes(), &mut cache).2);
    }
}
