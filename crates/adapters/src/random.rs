//! Randomness from the operating system, for ids.

use rand::Rng;
use sacp_domain::RandomSource;

/// A cryptographically secure random source (the thread-local generator of `rand`, seeded
/// and periodically reseeded from the operating system).
#[derive(Debug, Clone, Copy, Default)]
pub struct OsRandom;

impl RandomSource for OsRandom {
    fn fill_bytes(&self, dest: &mut [u8]) {
        rand::rng().fill_bytes(dest);
    }
}
