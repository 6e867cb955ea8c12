//! Deterministic test bytes.

/// `len` pseudo-random bytes (xorshift64), different per `seed` and the same on every run: a
/// misplaced, lost or duplicated block changes them, so they make good payloads to compare.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::pattern;

    #[test]
    fn is_reproducible_and_differs_per_seed() {
        assert_eq!(pattern(3, 1000), pattern(3, 1000));
        assert_ne!(pattern(3, 1000), pattern(4, 1000));
        assert_eq!(pattern(0, 64).len(), 64);
        assert!(pattern(0, 64).iter().any(|&b| b != 0));
    }
}
