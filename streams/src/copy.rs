//! Copying large payloads between buffers at any relative alignment.
//!
//! `copy_from_slice` calls the C library's `memcpy`, which copies sizes above a few KiB with
//! `rep movsb`. On the AMD EPYC machines this project is measured on, `rep movsb` runs at
//! ~3.5 GB/s instead of ~50 GB/s when the destination lies 1 to 15 bytes after the source
//! modulo 4 KiB (and is still slowed up to ~63 bytes), a known 4K-aliasing weakness of that
//! instruction. Ring positions advance in step from one stage to the next, so such an
//! unlucky offset between two buffers can last a whole run and make one stage's copy ~15×
//! slower. [`copy`] copies those cases in pieces below glibc's `rep movsb` threshold, which
//! its vector loop handles at full speed; every other case stays one `memcpy`, since
//! `rep movsb` is the faster one when the destination is not in the cache.

/// Bytes per `memcpy` call when copying in pieces: below the smallest default `rep movsb`
/// threshold of glibc (2,048 bytes), so every piece takes the vector loop.
pub const PIECE: usize = 1024;

/// Destination offsets after the source (modulo 4 KiB) at which `rep movsb` is slow.
const ALIASED: usize = 64;

/// Whether copying `len` bytes from `src` to `dst` in one `memcpy` would meet the slow case.
#[inline]
fn aliased(dst: *const u8, src: *const u8, len: usize) -> bool {
    let rel = (dst as usize).wrapping_sub(src as usize) % 4096;
    len > PIECE && rel != 0 && rel < ALIASED
}

/// Whether [`copy`] would copy `src` into `dst` in pieces (the slow `rep movsb` case) rather
/// than in one `memcpy`: for a measurement that must compare like for like (callgrind counts
/// the one `memcpy`'s `rep movsb` an instruction per byte, the pieces' vector loop far less).
pub fn in_pieces(dst: &[u8], src: &[u8]) -> bool {
    aliased(dst.as_ptr(), src.as_ptr(), src.len())
}

/// Copies `src` into `dst`, which must have the same length (as `copy_from_slice`), avoiding
/// the slow `rep movsb` case (see the module).
///
/// # Panics
///
/// If the lengths differ.
#[inline]
pub fn copy(dst: &mut [u8], src: &[u8]) {
    assert_eq!(
        dst.len(),
        src.len(),
        "copy between slices of different lengths"
    );
    if !aliased(dst.as_ptr(), src.as_ptr(), src.len()) {
        dst.copy_from_slice(src);
        return;
    }
    for (d, s) in dst.chunks_mut(PIECE).zip(src.chunks(PIECE)) {
        d.copy_from_slice(s);
    }
}

/// Appends `src` to `dst` (as `extend_from_slice`), copied as [`copy`] does.
#[inline(always)]
pub fn extend(dst: &mut Vec<u8>, src: &[u8]) {
    if src.len() <= PIECE {
        // Never the slow case (see `aliased`): one `extend_from_slice`, one capacity check.
        dst.extend_from_slice(src);
        return;
    }
    extend_large(dst, src);
}

/// [`extend`] beyond one piece, out of line (the common small case stays inlined).
#[inline(never)]
fn extend_large(dst: &mut Vec<u8>, src: &[u8]) {
    let start = dst.len();
    dst.reserve(src.len());
    if !aliased(dst.as_ptr().wrapping_add(start), src.as_ptr(), src.len()) {
        dst.extend_from_slice(src);
        return;
    }
    for s in src.chunks(PIECE) {
        dst.extend_from_slice(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn copies_every_byte_at_any_length_and_offset() {
        for n in [0, 1, PIECE - 1, PIECE, PIECE + 1, 3 * PIECE + 17, 100_000] {
            let src = pattern(n + 64);
            for (so, d) in [(0, 0), (1, 0), (0, 1), (5, 63), (63, 5), (0, 8)] {
                let mut dst = vec![0xaa; n + 64];
                copy(&mut dst[d..d + n], &src[so..so + n]);
                assert_eq!(&dst[d..d + n], &src[so..so + n], "n {n} src+{so} dst+{d}");
                assert!(dst[..d].iter().all(|&b| b == 0xaa));
                assert!(dst[d + n..].iter().all(|&b| b == 0xaa));
            }
        }
    }

    #[test]
    fn only_destinations_just_after_the_source_modulo_4k_are_copied_in_pieces() {
        let at = |a: usize, b: usize| (a as *const u8, b as *const u8);
        let (d, s) = at(0x1_0008, 0x2_0000);
        assert!(aliased(d, s, 100_000));
        assert!(!aliased(d, s, PIECE), "small copies never use rep movsb");
        let (d, s) = at(0x1_0000 + ALIASED, 0x2_0000);
        assert!(!aliased(d, s, 100_000));
        let (d, s) = at(0x1_0000, 0x2_0000);
        assert!(!aliased(d, s, 100_000), "same alignment is the fast case");
        let (d, s) = at(0x2_0000, 0x1_0008);
        assert!(
            !aliased(d, s, 100_000),
            "a destination before the source is fast"
        );
    }

    #[test]
    fn in_pieces_says_which_way_copy_goes() {
        let buf = vec![0u8; 2 * 4096 + 2 * PIECE];
        let src = &buf[..2 * PIECE];
        // A destination 8 bytes after the source modulo 4 KiB: pieces; 64 after: one memcpy.
        let at = 4096 + 8;
        assert!(in_pieces(&buf[at..at + 2 * PIECE], src));
        let at = 4096 + ALIASED;
        assert!(!in_pieces(&buf[at..at + 2 * PIECE], src));
        assert!(
            !in_pieces(&buf[at..at + PIECE], &src[..PIECE]),
            "small: one memcpy"
        );
    }

    #[test]
    #[should_panic(expected = "different lengths")]
    fn lengths_must_match() {
        copy(&mut [0; 3], &[1, 2]);
    }

    #[test]
    fn extend_appends_after_what_is_there() {
        for n in [0, 5, PIECE, 2 * PIECE + 3] {
            let src = pattern(n);
            let mut dst = b"head".to_vec();
            extend(&mut dst, &src);
            assert_eq!(&dst[..4], b"head");
            assert_eq!(&dst[4..], &src[..]);
        }
    }
}
