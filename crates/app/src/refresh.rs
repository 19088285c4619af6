//! Refresh-ahead for values cached a short while (API keys, kill switches).
//!
//! Without it, every request that arrives while a busy entry is being read again reads it
//! too: under load the benchmark saw four reads of each key per second instead of one, and a
//! dozen of the switches per 250 ms. With it, the first request to find an entry near the
//! end of its life reads it again while the others are still served the cached copy, which
//! is never older than the entry's limit.

/// What a caller does with a cached entry of some age.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Serve {
    /// Use the cached value.
    Cached,
    /// Read it again (and put the fresh value back).
    Read,
}

/// Decides for an entry `age` old whose limit is `max_age`, refreshed from `max_age -
/// ahead` on. `refreshing` is the entry's flag that a caller is already reading it again;
/// the caller told to read sets it (a fresh entry starts without it). Past `max_age`
/// everyone reads, so a refresh that fails or hangs never stretches the limit.
pub(crate) fn serve<D: PartialOrd + Copy + std::ops::Sub<Output = D>>(
    age: D,
    max_age: D,
    ahead: D,
    refreshing: &mut bool,
) -> Serve {
    if age >= max_age {
        return Serve::Read;
    }
    if age < max_age - ahead || *refreshing {
        return Serve::Cached;
    }
    *refreshing = true;
    Serve::Read
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_caller_refreshes_ahead_while_the_others_are_served() {
        let mut refreshing = false;
        assert_eq!(serve(500, 1000, 250, &mut refreshing), Serve::Cached);
        assert!(!refreshing);
        assert_eq!(serve(800, 1000, 250, &mut refreshing), Serve::Read);
        assert!(refreshing);
        assert_eq!(serve(900, 1000, 250, &mut refreshing), Serve::Cached);
        assert_eq!(
            serve(1000, 1000, 250, &mut refreshing),
            Serve::Read,
            "past the limit everyone reads, refresh or not"
        );
    }
}
