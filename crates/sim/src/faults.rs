//! Fault knobs: make a simulator misbehave on purpose so that callers' error handling is
//! exercised.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Faults a simulator injects into its API (not into its HTML pages or control endpoints).
/// Set per simulator instance, at run time, with `PUT <base>/sim/faults`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Delay added before every API answer, in milliseconds.
    pub latency_ms: u64,
    /// Fraction (0.0–1.0) of API calls answered with HTTP 503.
    pub error_rate: f64,
    /// Fraction (0.0–1.0) of API calls answered with a body that is not valid JSON.
    pub malformed_rate: f64,
    /// Wallet only: answer pending device-token polls with `slow_down`.
    pub slow_down: bool,
    /// Wallet only: lifetime of new device codes in seconds (default 900).
    pub device_code_ttl_secs: Option<u32>,
    /// Wallet only: poll interval announced for new device codes in seconds (default 5).
    pub poll_interval_secs: Option<u32>,
    /// Store only: decline every payment at completion (`declined`).
    pub decline_payments: bool,
    /// Wallet only: the person has no active card — payment tokens are refused as the real
    /// wallet refuses them (400 `invalid_request`, "No payment methods available").
    pub no_payment_method: bool,
    /// Wallet only: the card issuer fails — payment tokens answer 502
    /// `payment_provider_error`, and an approved step-up answers `approved` with that error
    /// and no token.
    pub payment_provider_error: bool,
    /// Wallet only: the gateway's client is suspended — its token-endpoint calls (device
    /// polls, client credentials) answer 401 `invalid_client`.
    pub suspended_client: bool,
}

/// What to do with one API call, decided from the faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injected {
    /// Answer normally.
    None,
    /// Answer 503.
    ServerError,
    /// Answer with garbage.
    Malformed,
}

impl Faults {
    /// The delay to add.
    pub fn latency(&self) -> Duration {
        Duration::from_millis(self.latency_ms)
    }

    /// Decides the fault for one call from a uniform random `roll` in [0, 1).
    pub fn decide(&self, roll: f64) -> Injected {
        if roll < self.error_rate {
            Injected::ServerError
        } else if roll < self.error_rate + self.malformed_rate {
            Injected::Malformed
        } else {
            Injected::None
        }
    }
}
