//! Guardrail storage shared by every replica: rate-limit counters, kill switches,
//! idempotency records and traffic counts.
//!
//! Every method answers [`RepositoryError::Unavailable`] when the storage cannot be reached;
//! callers decide whether to fail open or closed.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sacp_domain::ApiKeyId;
use sacp_domain::audit::TrafficCount;
use sacp_domain::idempotency::{Begin, Claim, IdempotencyScope, StoredResponse};
use sacp_domain::ratelimit::{Counter, CounterAt};
use sacp_domain::switches::Switches;

use crate::RepositoryError;

/// Fixed-window counters.
#[async_trait]
pub trait RateCounters: Send + Sync {
    /// Adds one to each counter (a counter not seen in its window starts at 0) and returns
    /// the new counts, in order. Atomic per counter: concurrent calls on every replica never
    /// lose an increment.
    async fn hit(&self, counters: &[Counter]) -> Result<Vec<u64>, RepositoryError>;

    /// [`RateCounters::hit`] answered at once, for counters kept in this process's memory:
    /// the same counting, with each count written to `counts` (as long as `counters`, in
    /// order) and nothing allocated once the counters exist. `None` — the default, and what
    /// shared storage answers — leaves the counting to [`RateCounters::hit`]. A counter hit
    /// either way is the same counter.
    fn hit_now(
        &self,
        counters: &[CounterAt<'_>],
        counts: &mut [u64],
    ) -> Option<Result<(), RepositoryError>> {
        let _ = (counters, counts);
        None
    }

    /// Takes one back from each counter (a refused request does not use up quota). Never
    /// goes below 0.
    async fn release(&self, counters: &[Counter]) -> Result<(), RepositoryError>;

    /// Forgets counters whose window ended before `now`; returns how many.
    async fn purge(&self, now: DateTime<Utc>) -> Result<u64, RepositoryError>;
}

/// The global kill switches.
#[async_trait]
pub trait SwitchBoard: Send + Sync {
    /// The current switches ([`Switches::default`] when never set).
    async fn switches(&self) -> Result<Switches, RepositoryError>;

    /// Replaces the switches; every later [`SwitchBoard::switches`] call, on any replica,
    /// sees them.
    async fn set_switches(&self, switches: &Switches) -> Result<(), RepositoryError>;
}

/// Idempotency records: one per [`IdempotencyScope`].
///
/// Lifecycle: [`IdempotencyStore::begin`] claims a scope (in flight, with a lease of
/// [`sacp_domain::idempotency::IN_FLIGHT_LEASE`]); the holder of the [`Claim`] then either
/// [`IdempotencyStore::finish`]es it with the answer or [`IdempotencyStore::abandon`]s it. A
/// claim taken over after its lease ran out can no longer do either.
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Claims `scope` for a request whose body has `fingerprint`: [`Begin::Started`] when the
    /// scope is new, expired or its in-flight lease ran out; [`Begin::Replay`] when finished
    /// with the same fingerprint; [`Begin::Mismatch`] when used with another fingerprint;
    /// [`Begin::InFlight`] while another request holds it. Atomic: of concurrent claims on
    /// one scope exactly one starts.
    async fn begin(
        &self,
        scope: &IdempotencyScope,
        fingerprint: &str,
        now: DateTime<Utc>,
    ) -> Result<Begin, RepositoryError>;

    /// Stores the answer of a held claim, kept until `now` + 24 h.
    /// [`RepositoryError::NotFound`] when the claim is no longer held (finished, abandoned or
    /// taken over); nothing changes then.
    async fn finish(
        &self,
        claim: &Claim,
        response: &StoredResponse,
        now: DateTime<Utc>,
    ) -> Result<(), RepositoryError>;

    /// Releases a held claim without an answer (the request failed with a 5xx and may be
    /// retried with the same key). Does nothing when the claim is no longer held.
    async fn abandon(&self, claim: &Claim) -> Result<(), RepositoryError>;

    /// Forgets records that expired before `now`; returns how many.
    async fn purge(&self, now: DateTime<Utc>) -> Result<u64, RepositoryError>;
}

/// Traffic counts per key, route, status and minute.
#[async_trait]
pub trait TrafficLog: Send + Sync {
    /// Adds these counts to the stored ones (same minute, key, route and status add up).
    async fn add(&self, counts: &[TrafficCount]) -> Result<(), RepositoryError>;

    /// Up to `limit` rows, newest minute first, optionally of one key only.
    async fn traffic(
        &self,
        key: Option<&ApiKeyId>,
        limit: usize,
    ) -> Result<Vec<TrafficCount>, RepositoryError>;

    /// Deletes up to `limit` counts of minutes before `before`; returns how many went.
    async fn retire(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, RepositoryError>;
}
