//! A circuit breaker per upstream: after a run of failures (unreachable, timeout, 5xx) the
//! upstream is answered as unavailable at once for a cool-down, instead of every request
//! waiting for its timeout; then one trial request decides whether it is back.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// When the breaker opens and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the circuit.
    pub failure_threshold: u32,
    /// How long it stays open before a trial request.
    pub cool_down: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 5,
            cool_down: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One trial request is out.
    HalfOpen,
}

/// The breaker of one upstream.
#[derive(Debug)]
pub(crate) struct Breaker {
    config: BreakerConfig,
    state: Mutex<State>,
    /// `sacp_upstream_breaker_open` of this upstream: 1 unless closed.
    open: metrics::Gauge,
}

impl Breaker {
    pub(crate) fn new(upstream: &'static str, config: BreakerConfig) -> Breaker {
        let open =
            metrics::gauge!(sacp_ports::telemetry::UPSTREAM_BREAKER_OPEN, "upstream" => upstream);
        open.set(0.0);
        Breaker {
            config,
            state: Mutex::new(State::Closed { failures: 0 }),
            open,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether a request may go out now (`false`: answer it as unavailable at once).
    pub(crate) fn allow(&self, now: Instant) -> bool {
        let mut state = self.state();
        match *state {
            State::Closed { .. } => true,
            State::Open { until } if now >= until => {
                *state = State::HalfOpen;
                true
            }
            State::Open { .. } | State::HalfOpen => false,
        }
    }

    /// Records how a request that went out ended.
    pub(crate) fn record(&self, failed: bool, now: Instant) {
        let mut state = self.state();
        let next = match (*state, failed) {
            (_, false) => State::Closed { failures: 0 },
            (State::Closed { failures }, true) if failures + 1 < self.config.failure_threshold => {
                State::Closed {
                    failures: failures + 1,
                }
            }
            (State::Closed { .. } | State::HalfOpen | State::Open { .. }, true) => {
                tracing::warn!(
                    cool_down_ms = self.config.cool_down.as_millis(),
                    "upstream circuit open"
                );
                State::Open {
                    until: now + self.config.cool_down,
                }
            }
        };
        let closed = matches!(next, State::Closed { .. });
        *state = next;
        self.open.set(if closed { 0.0 } else { 1.0 });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_and_lets_one_trial_through_after_the_cool_down() {
        let breaker = Breaker::new(
            "store",
            BreakerConfig {
                failure_threshold: 3,
                cool_down: Duration::from_secs(5),
            },
        );
        let t0 = Instant::now();
        for _ in 0..2 {
            assert!(breaker.allow(t0));
            breaker.record(true, t0);
        }
        assert!(breaker.allow(t0), "two failures keep it closed");
        breaker.record(false, t0);
        for _ in 0..3 {
            assert!(breaker.allow(t0));
            breaker.record(true, t0);
        }
        assert!(!breaker.allow(t0), "open after three in a row");
        assert!(!breaker.allow(t0 + Duration::from_secs(4)));
        let later = t0 + Duration::from_secs(5);
        assert!(breaker.allow(later), "one trial after the cool-down");
        assert!(!breaker.allow(later), "only one");
        breaker.record(true, later);
        assert!(
            !breaker.allow(later + Duration::from_secs(1)),
            "failed trial reopens"
        );
        let again = later + Duration::from_secs(5);
        assert!(breaker.allow(again));
        breaker.record(false, again);
        assert!(breaker.allow(again) && breaker.allow(again), "closed again");
    }
}
