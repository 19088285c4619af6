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
    serve_at(age, max_age - ahead, max_age, refreshing)
}

/// [`serve`] with the entry's moments worked out when it was kept: at `now`, for an
/// entry refreshed from `refresh_from` on and read again by everyone from `stale_at`.
/// Comparing times is cheaper than subtracting them, and a key is looked up on every
/// request.
pub(crate) fn serve_at<T: PartialOrd>(
    now: T,
    refresh_from: T,
    stale_at: T,
    refreshing: &mut bool,
) -> Serve {
    if now >= stale_at {
        return Serve::Read;
    }
    if now < refresh_from || *refreshing {
        return Serve::Cached;
    }
    *refreshing = true;
    Serve::Read
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deciding_by_moments_is_deciding_by_age() {
        let read_at = 10_000;
        for age in 0..1200 {
            for was_refreshing in [false, true] {
                let (mut by_age, mut by_moment) = (was_refreshing, was_refreshing);
                assert_eq!(
                    serve(age, 1000, 250, &mut by_age),
                    serve_at(read_at + age, read_at + 750, read_at + 1000, &mut by_moment),
                    "{age}"
                );
                assert_eq!(by_age, by_moment);
            }
        }
    }

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
