//! The last response head http rendered, kept as wire bytes: an application that answers
//! with the same head again and again (fixed responses, the common case under load) has it
//! copied instead of parsed, filtered and rendered anew for every response.
//!
//! A rendered head depends on the application's BEGIN extension, on a few facts of the
//! request (the `Variant`) and on the `Date` text; the owner clears the cache when the date
//! changes. Sans-I/O.

/// The facts of a request that change how a response head is rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variant {
    pub is_head: bool,
    pub minor_version: u8,
    pub close_after: bool,
}

/// One cached head and what rendering it decided (`O`: the body framing and the like).
pub struct HeadCache<O: Copy> {
    entry: Option<Entry<O>>,
}

struct Entry<O> {
    /// Cleared entries keep their allocations but match nothing.
    valid: bool,
    extension: Vec<u8>,
    variant: Variant,
    rendered: Vec<u8>,
    outcome: O,
}

impl<O: Copy> Default for HeadCache<O> {
    fn default() -> Self {
        HeadCache { entry: None }
    }
}

/// Heads larger than this are rendered every time (keeps the cache's memory small).
const MAX_CACHED: usize = 1024;

impl<O: Copy> HeadCache<O> {
    /// The rendered bytes and outcome for exactly this extension and variant, if cached.
    pub fn get(&self, extension: &[u8], variant: Variant) -> Option<(&[u8], O)> {
        let entry = self.entry.as_ref()?;
        (entry.valid && entry.variant == variant && entry.extension == extension)
            .then_some((entry.rendered.as_slice(), entry.outcome))
    }

    /// Remembers a head just rendered (replacing the previous one).
    pub fn put(&mut self, extension: &[u8], variant: Variant, rendered: &[u8], outcome: O) {
        if extension.len() > MAX_CACHED || rendered.len() > MAX_CACHED {
            return;
        }
        let entry = self.entry.get_or_insert_with(|| Entry {
            valid: true,
            extension: Vec::new(),
            variant,
            rendered: Vec::new(),
            outcome,
        });
        entry.extension.clear();
        entry.extension.extend_from_slice(extension);
        entry.variant = variant;
        entry.rendered.clear();
        entry.rendered.extend_from_slice(rendered);
        entry.outcome = outcome;
        entry.valid = true;
    }

    /// Forgets the cached head (the `Date` text changed).
    pub fn clear(&mut self) {
        if let Some(entry) = &mut self.entry {
            entry.valid = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEEP_ALIVE: Variant = Variant {
        is_head: false,
        minor_version: 1,
        close_after: false,
    };

    #[test]
    fn a_head_is_reused_only_for_the_same_extension_and_variant() {
        let mut cache = HeadCache::<u8>::default();
        assert!(cache.get(b"ext", KEEP_ALIVE).is_none());
        cache.put(b"ext", KEEP_ALIVE, b"HTTP/1.1 200 OK\r\n\r\n", 7);
        assert_eq!(
            cache.get(b"ext", KEEP_ALIVE),
            Some((&b"HTTP/1.1 200 OK\r\n\r\n"[..], 7))
        );
        assert!(cache.get(b"exu", KEEP_ALIVE).is_none());
        let head_request = Variant {
            is_head: true,
            ..KEEP_ALIVE
        };
        assert!(cache.get(b"ext", head_request).is_none());
        let closing = Variant {
            close_after: true,
            ..KEEP_ALIVE
        };
        assert!(cache.get(b"ext", closing).is_none());
    }

    #[test]
    fn clearing_forgets_the_head() {
        let mut cache = HeadCache::<u8>::default();
        cache.put(b"ext", KEEP_ALIVE, b"head", 1);
        cache.clear();
        assert!(cache.get(b"ext", KEEP_ALIVE).is_none());
        cache.put(b"", KEEP_ALIVE, b"other", 2);
        cache.clear();
        assert!(cache.get(b"", KEEP_ALIVE).is_none());
    }

    #[test]
    fn oversized_heads_are_not_kept() {
        let mut cache = HeadCache::<u8>::default();
        let big = vec![b'x'; MAX_CACHED + 1];
        cache.put(&big, KEEP_ALIVE, b"head", 1);
        assert!(cache.get(&big, KEEP_ALIVE).is_none());
    }
}
