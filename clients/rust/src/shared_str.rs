//! [`SharedStr`]: a string that clones and slices without copying.
//!
//! Why: every pushed message used to become two `String`s (port and body), allocated,
//! copied and freed per message, and every sent message two more; at a million messages a
//! second that was a third of the client's CPU (issue 16). A pushed message's port and body
//! are now slices of the WebSocket message they arrived in, and an application can send
//! slices of one buffer, or one port name, to many messages without a copy each.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::{Deref, Range};

use arrayvec::ArrayString;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// The longest string kept inline (copied, with no reference count): port and node names
/// usually fit, and the whole [`SharedStr`] stays 40 bytes (28 is the most that fits beside
/// the shared form's non-null vtable pointer, which then tells the two apart).
pub const INLINE_MAX: usize = 28;

/// An immutable UTF-8 string that shares its buffer: [`Clone`] and [`SharedStr::slice`]
/// take a reference count, not a copy. It reads as a `&str` ([`Deref`]), compares, hashes
/// and orders as one, and converts from `String` (without a copy) and `&str` (with one).
///
/// A string of at most [`INLINE_MAX`] bytes made by slicing or from a `&str` is kept inline
/// instead: copying a port name costs less than the atomic reference count taken at the
/// clone and given back at the drop (twice per pushed message when both were slices).
///
/// A slice keeps the whole buffer it came from alive: a pushed message's body holds the
/// WebSocket message that carried it (up to the switch's batch size) for as long as the
/// body lives. Keep it as a `String` (`to_string()`, [`String::from`]) to let go of the rest.
#[derive(Clone)]
pub struct SharedStr {
    repr: Repr,
}

#[derive(Clone)]
enum Repr {
    /// A short string, copied.
    Inline(ArrayString<INLINE_MAX>),
    /// A part of a shared buffer.
    Shared {
        /// The buffer: valid UTF-8 (the type of tungstenite's text messages guarantees it).
        text: Utf8Bytes,
        /// This string's part of it: a char range of `text` (u32: a WebSocket message the
        /// client accepts is far below 4 GiB, and the string stays 40 bytes).
        start: u32,
        end: u32,
    },
}

impl SharedStr {
    /// A string from a `'static` one: no allocation. A short one (a port name sent to
    /// often) is cheaper to clone and drop as `SharedStr::from(s)`, which keeps it inline.
    ///
    /// # Panics
    /// If `s` is 4 GiB or longer.
    pub const fn from_static(s: &'static str) -> SharedStr {
        assert!(
            s.len() <= u32::MAX as usize,
            "a SharedStr holds less than 4 GiB"
        );
        SharedStr {
            repr: Repr::Shared {
                text: Utf8Bytes::from_static(s),
                start: 0,
                end: s.len() as u32,
            },
        }
    }

    /// The string.
    pub fn as_str(&self) -> &str {
        match &self.repr {
            Repr::Inline(s) => s.as_str(),
            // The range is on char boundaries of a valid UTF-8 buffer (`slice` checks it):
            // the index check cannot fail, it only costs two compares.
            Repr::Shared { text, start, end } => &text.as_str()[*start as usize..*end as usize],
        }
    }

    /// The part `range` (byte offsets into this string) without a copy (or inline, if it is
    /// short).
    ///
    /// # Panics
    /// As `&str[range]`: if `range` is out of bounds or not on char boundaries.
    pub fn slice(&self, range: Range<usize>) -> SharedStr {
        // Checks bounds and boundaries with `str`'s own rule and message.
        let part = &self.as_str()[range.clone()];
        match &self.repr {
            Repr::Shared { text, start, .. } if part.len() > INLINE_MAX => SharedStr {
                repr: Repr::Shared {
                    text: text.clone(),
                    start: start + range.start as u32,
                    end: start + range.end as u32,
                },
            },
            _ => SharedStr::inline(part),
        }
    }

    /// The part `range` of this string whose ends the caller found next to ASCII bytes (a
    /// JSON string's quotes), so on char boundaries: [`SharedStr::slice`] without checking
    /// the boundaries again. A wrong range panics here (out of bounds) or when the string is
    /// read, as `&str[range]` would.
    pub(crate) fn slice_between_ascii(&self, range: Range<usize>) -> SharedStr {
        match &self.repr {
            Repr::Shared { text, start, end } if range.len() > INLINE_MAX => {
                assert!(range.start <= range.end && range.end <= (end - start) as usize);
                SharedStr {
                    repr: Repr::Shared {
                        text: text.clone(),
                        start: start + range.start as u32,
                        end: start + range.end as u32,
                    },
                }
            }
            _ => SharedStr::inline(&self.as_str()[range]),
        }
    }

    /// `part` (at most [`INLINE_MAX`] bytes) copied inline.
    fn inline(part: &str) -> SharedStr {
        let mut s = ArrayString::new();
        s.push_str(part);
        SharedStr {
            repr: Repr::Inline(s),
        }
    }

    /// `sub`, a part of [`SharedStr::as_str`] (a `&str` borrowed from it), as a shared
    /// string; `None` if `sub` does not lie inside this string.
    pub fn slice_ref(&self, sub: &str) -> Option<SharedStr> {
        let whole = self.as_str();
        let start = (sub.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
        let end = start.checked_add(sub.len())?;
        // In bounds, and on boundaries: `sub` is a `&str` starting and ending inside
        // `whole`, so it starts and ends on char boundaries of it.
        whole.get(start..end)?;
        Some(self.slice(start..end))
    }

    /// The length in bytes.
    pub fn len(&self) -> usize {
        self.as_str().len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether this string is a part of a shared buffer (not inline).
    pub fn is_shared(&self) -> bool {
        matches!(self.repr, Repr::Shared { .. })
    }
}

impl From<Utf8Bytes> for SharedStr {
    /// # Panics
    /// If `text` is 4 GiB or longer (a WebSocket message the client accepts is far smaller).
    fn from(text: Utf8Bytes) -> SharedStr {
        let end = u32::try_from(text.len()).expect("a SharedStr holds less than 4 GiB");
        SharedStr {
            repr: Repr::Shared {
                text,
                start: 0,
                end,
            },
        }
    }
}

impl From<String> for SharedStr {
    /// Without a copy.
    fn from(s: String) -> SharedStr {
        SharedStr::from(Utf8Bytes::from(s))
    }
}

impl From<&String> for SharedStr {
    /// A copy.
    fn from(s: &String) -> SharedStr {
        SharedStr::from(s.as_str())
    }
}

impl From<&str> for SharedStr {
    /// A copy: inline if it is short, else into a buffer of its own (use
    /// [`SharedStr::from_static`] for a `'static` string, or clone one `SharedStr` for many
    /// messages, to avoid it).
    fn from(s: &str) -> SharedStr {
        if s.len() <= INLINE_MAX {
            SharedStr::inline(s)
        } else {
            SharedStr::from(Utf8Bytes::from(s))
        }
    }
}

impl From<SharedStr> for String {
    fn from(s: SharedStr) -> String {
        s.as_str().to_owned()
    }
}

impl Default for SharedStr {
    /// The empty string, inline.
    fn default() -> SharedStr {
        SharedStr {
            repr: Repr::Inline(ArrayString::new_const()),
        }
    }
}

impl Deref for SharedStr {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for SharedStr {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for SharedStr {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for SharedStr {
    fn eq(&self, other: &SharedStr) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for SharedStr {}

impl PartialEq<str> for SharedStr {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for SharedStr {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for SharedStr {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<SharedStr> for str {
    fn eq(&self, other: &SharedStr) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<SharedStr> for &str {
    fn eq(&self, other: &SharedStr) -> bool {
        *self == other.as_str()
    }
}

impl PartialEq<SharedStr> for String {
    fn eq(&self, other: &SharedStr) -> bool {
        self == other.as_str()
    }
}

impl PartialOrd for SharedStr {
    fn partial_cmp(&self, other: &SharedStr) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SharedStr {
    fn cmp(&self, other: &SharedStr) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Hash for SharedStr {
    /// As `str` hashes (so `Borrow<str>` lookups work).
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl fmt::Debug for SharedStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for SharedStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

impl serde::Serialize for SharedStr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn reads_compares_and_hashes_as_the_str_it_holds() {
        let s = SharedStr::from(String::from("héllo, world"));
        assert_eq!(s, "héllo, world");
        assert_eq!(s.len(), "héllo, world".len());
        assert_eq!(format!("{s} {s:?}"), "héllo, world \"héllo, world\"");
        let set: HashSet<SharedStr> = [s.clone()].into();
        assert!(set.contains("héllo, world"));
        let (a, b) = (
            SharedStr::from(String::from("a")),
            SharedStr::from_static("b"),
        );
        assert!(a < b);
        assert_eq!(b.cmp(&a), std::cmp::Ordering::Greater);
        assert_eq!(String::from(s), "héllo, world");
        assert!(SharedStr::default().is_empty());
    }

    #[test]
    fn slices_share_the_buffer_and_keep_str_rules() {
        let s = SharedStr::from("héllo, world");
        let world = s.slice(8..13);
        assert_eq!(world, "world");
        assert_eq!(world.slice(1..3), "or");
        let inner = &s.as_str()[1..5];
        assert_eq!(s.slice_ref(inner).unwrap(), "éll");
        assert_eq!(
            world.slice_ref(&s.as_str()[0..1]),
            None,
            "outside the slice"
        );
        assert_eq!(s.slice_ref("world"), None, "another buffer");
        assert!(
            std::panic::catch_unwind(|| s.slice(2..3)).is_err(),
            "inside é"
        );
        assert!(
            std::panic::catch_unwind(|| world.slice(0..6)).is_err(),
            "past the end"
        );
    }

    #[test]
    fn short_strings_are_inline_long_ones_share_their_buffer() {
        assert_eq!(std::mem::size_of::<SharedStr>(), 40);
        let short = "p".repeat(INLINE_MAX);
        let long = "b".repeat(INLINE_MAX + 1);
        assert!(!SharedStr::from(short.as_str()).is_shared());
        assert!(SharedStr::from(long.as_str()).is_shared());
        assert!(
            SharedStr::from(short.clone()).is_shared(),
            "a String is never copied"
        );
        let both = SharedStr::from(format!("{short}{long}"));
        let (p, b) = (
            both.slice(0..INLINE_MAX),
            both.slice(INLINE_MAX..both.len()),
        );
        assert_eq!((p.as_str(), b.as_str()), (short.as_str(), long.as_str()));
        assert!(!p.is_shared());
        assert!(b.is_shared());
        assert_eq!(b.as_ptr(), both.as_str()[INLINE_MAX..].as_ptr(), "no copy");
        // Inline and shared strings with the same text are equal, hash alike and order by text.
        let shared_short = SharedStr::from(short.clone());
        assert_eq!(p, shared_short);
        let set: HashSet<SharedStr> = [p.clone()].into();
        assert!(set.contains(&shared_short));
        assert!(b < p);
        // The reader's slice between ASCII bytes is `slice` without the boundary checks.
        for r in [0..INLINE_MAX, INLINE_MAX..both.len(), 0..both.len(), 3..3] {
            let (a, b) = (both.slice(r.clone()), both.slice_between_ascii(r));
            assert_eq!((a.as_str(), a.is_shared()), (b.as_str(), b.is_shared()));
        }
        assert!(std::panic::catch_unwind(|| both.slice_between_ascii(0..both.len() + 1)).is_err());
        // Slicing an inline string, with str's rules.
        let e = SharedStr::from("héllo");
        assert_eq!(e.slice(1..3), "é");
        assert_eq!(e.slice_ref(&e.as_str()[3..]).unwrap(), "llo");
        assert!(
            std::panic::catch_unwind(|| e.slice(2..3)).is_err(),
            "inside é"
        );
        assert!(
            std::panic::catch_unwind(|| e.slice(0..9)).is_err(),
            "past the end"
        );
    }

    #[test]
    fn serialises_as_a_json_string() {
        let s = SharedStr::from("a\"b");
        assert_eq!(serde_json::to_string(&s).unwrap(), r#""a\"b""#);
    }
}
