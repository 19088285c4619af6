//! In-memory guardrail storage (one process): rate counters, switches, idempotency records
//! and traffic counts for the embedded sandbox and tests.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sacp_domain::ApiKeyId;
use sacp_domain::audit::TrafficCount;
use sacp_domain::idempotency::{
    Answer, Begin, Claim, IN_FLIGHT_LEASE, IdempotencyScope, RETENTION, StoredResponse, lease_left,
};
use sacp_domain::ratelimit::{Counter, CounterAt};
use sacp_domain::switches::Switches;
use sacp_ports::{IdempotencyStore, RateCounters, RepositoryError, SwitchBoard, TrafficLog};

use crate::memory::lock;

/// One window of a counter: its start, its end and its count.
#[derive(Debug, Clone, Copy)]
struct Window {
    /// Unix second the window starts at.
    start: i64,
    /// Unix second it ends at.
    end: i64,
    count: u64,
}

/// Counters in a map: each name's windows (one, or two around the turn of a window until
/// the old one is purged). Looked up by the borrowed name, so a counter that exists is
/// counted without allocating.
#[derive(Debug, Default)]
pub struct MemoryRateCounters {
    map: Mutex<HashMap<String, Vec<Window>>>,
}

/// Adds one to the counter `name` in the window starting at `start` (ending at `end`);
/// returns the new count.
fn add_one(map: &mut HashMap<String, Vec<Window>>, name: &str, start: i64, end: i64) -> u64 {
    let windows = match map.get_mut(name) {
        Some(windows) => windows,
        None => map.entry(name.to_owned()).or_default(),
    };
    match windows.iter_mut().find(|w| w.start == start) {
        Some(window) => {
            window.count += 1;
            window.count
        }
        None => {
            windows.push(Window {
                start,
                end,
                count: 1,
            });
            1
        }
    }
}

#[async_trait]
impl RateCounters for MemoryRateCounters {
    async fn hit(&self, counters: &[Counter]) -> Result<Vec<u64>, RepositoryError> {
        let mut map = lock(&self.map);
        Ok(counters
            .iter()
            .map(|c| {
                add_one(
                    &mut map,
                    &c.name,
                    c.window_start.timestamp(),
                    c.window_end.timestamp(),
                )
            })
            .collect())
    }

    fn hit_now(
        &self,
        counters: &[CounterAt<'_>],
        counts: &mut [u64],
    ) -> Option<Result<(), RepositoryError>> {
        let mut map = lock(&self.map);
        for (c, count) in counters.iter().zip(counts) {
            *count = add_one(&mut map, c.name, c.window_start, c.window_end);
        }
        Some(Ok(()))
    }

    async fn release(&self, counters: &[Counter]) -> Result<(), RepositoryError> {
        let mut map = lock(&self.map);
        for c in counters {
            if let Some(window) = map.get_mut(c.name.as_str()).and_then(|windows| {
                let start = c.window_start.timestamp();
                windows.iter_mut().find(|w| w.start == start)
            }) {
                window.count = window.count.saturating_sub(1);
            }
        }
        Ok(())
    }

    async fn purge(&self, now: DateTime<Utc>) -> Result<u64, RepositoryError> {
        let mut map = lock(&self.map);
        let mut purged = 0usize;
        let now = now.timestamp();
        map.retain(|_, windows| {
            let before = windows.len();
            windows.retain(|w| w.end >= now);
            purged += before - windows.len();
            !windows.is_empty()
        });
        Ok(u64::try_from(purged).unwrap_or(u64::MAX))
    }
}

/// The switches in a cell.
#[derive(Debug, Default)]
pub struct MemorySwitchBoard {
    switches: Mutex<Switches>,
}

#[async_trait]
impl SwitchBoard for MemorySwitchBoard {
    async fn switches(&self) -> Result<Switches, RepositoryError> {
        Ok(*lock(&self.switches))
    }

    async fn set_switches(&self, switches: &Switches) -> Result<(), RepositoryError> {
        *lock(&self.switches) = *switches;
        Ok(())
    }
}

#[derive(Debug, Clone)]
enum State {
    InFlight { locked_at: DateTime<Utc> },
    Done { response: StoredResponse },
}

#[derive(Debug, Clone)]
struct Record {
    fingerprint: String,
    state: State,
    expires_at: DateTime<Utc>,
}

/// Idempotency records in a map.
#[derive(Debug, Default)]
pub struct MemoryIdempotency {
    map: Mutex<HashMap<IdempotencyScope, Record>>,
}

/// Whether `record` is in flight under `claim` (not finished, abandoned or taken over).
fn held(record: &Record, claim: &Claim) -> bool {
    matches!(record.state, State::InFlight { locked_at } if locked_at == claim.claimed_at)
}

impl MemoryIdempotency {
    /// Finishes a held claim; `NotFound` when it is no longer held. `also` runs under the
    /// same lock before the record changes, so a business change and its answer are stored
    /// together (`also` failing leaves the record in flight).
    pub(crate) fn finish_with(
        &self,
        answer: &Answer,
        also: impl FnOnce() -> Result<(), RepositoryError>,
    ) -> Result<(), RepositoryError> {
        let response = answer.response.clone();
        let mut map = lock(&self.map);
        let record = map
            .get_mut(&answer.claim.scope)
            .filter(|r| held(r, &answer.claim))
            .ok_or(RepositoryError::NotFound)?;
        also()?;
        record.state = State::Done { response };
        record.expires_at = answer.at + RETENTION;
        Ok(())
    }
}

#[async_trait]
impl IdempotencyStore for MemoryIdempotency {
    async fn begin(
        &self,
        scope: &IdempotencyScope,
        fingerprint: &str,
        now: DateTime<Utc>,
    ) -> Result<Begin, RepositoryError> {
        let mut map = lock(&self.map);
        let claim = Claim::new(scope.clone(), now);
        let fresh = Record {
            fingerprint: fingerprint.to_owned(),
            state: State::InFlight {
                locked_at: claim.claimed_at,
            },
            expires_at: now + RETENTION,
        };
        // A live record decides; an absent or expired one, or a run-out lease, is taken.
        if let Some(record) = map.get(scope).filter(|r| r.expires_at >= now) {
            if record.fingerprint != fingerprint {
                return Ok(Begin::Mismatch);
            }
            match &record.state {
                State::Done { response } => return Ok(Begin::Replay(response.clone())),
                State::InFlight { locked_at } if *locked_at + IN_FLIGHT_LEASE > now => {
                    return Ok(Begin::InFlight {
                        retry_after_secs: lease_left(*locked_at, now),
                    });
                }
                State::InFlight { .. } => {}
            }
        }
        map.insert(scope.clone(), fresh);
        Ok(Begin::Started(claim))
    }

    async fn finish(
        &self,
        claim: &Claim,
        response: &StoredResponse,
        now: DateTime<Utc>,
    ) -> Result<(), RepositoryError> {
        let answer = Answer {
            claim: claim.clone(),
            response: response.clone(),
            at: now,
        };
        self.finish_with(&answer, || Ok(()))
    }

    async fn abandon(&self, claim: &Claim) -> Result<(), RepositoryError> {
        let mut map = lock(&self.map);
        if map.get(&claim.scope).is_some_and(|r| held(r, claim)) {
            map.remove(&claim.scope);
        }
        Ok(())
    }

    async fn purge(&self, now: DateTime<Utc>) -> Result<u64, RepositoryError> {
        let mut map = lock(&self.map);
        let before = map.len();
        map.retain(|_, r| r.expires_at >= now);
        Ok(u64::try_from(before - map.len()).unwrap_or(u64::MAX))
    }
}

/// Most traffic rows kept in memory; the oldest minutes go first.
const MEMORY_TRAFFIC_CAPACITY: usize = 100_000;

type TrafficKey = (DateTime<Utc>, Option<ApiKeyId>, String, u16);

/// Traffic counts in an ordered map (oldest minute first).
#[derive(Debug, Default)]
pub struct MemoryTrafficLog {
    map: Mutex<BTreeMap<TrafficKey, u64>>,
}

#[async_trait]
impl TrafficLog for MemoryTrafficLog {
    async fn add(&self, counts: &[TrafficCount]) -> Result<(), RepositoryError> {
        let mut map = lock(&self.map);
        for c in counts {
            *map.entry((c.minute, c.key_id.clone(), c.route.clone(), c.status))
                .or_insert(0) += c.count;
        }
        while map.len() > MEMORY_TRAFFIC_CAPACITY {
            map.pop_first();
        }
        Ok(())
    }

    async fn traffic(
        &self,
        key: Option<&ApiKeyId>,
        limit: usize,
    ) -> Result<Vec<TrafficCount>, RepositoryError> {
        let map = lock(&self.map);
        let mut rows: Vec<TrafficCount> = map
            .iter()
            .filter(|((_, k, _, _), _)| key.is_none_or(|key| k.as_ref() == Some(key)))
            .map(|((minute, key_id, route, status), count)| TrafficCount {
                minute: *minute,
                key_id: key_id.clone(),
                route: route.clone(),
                status: *status,
                count: *count,
            })
            .collect();
        rows.sort_by(|a, b| {
            b.minute
                .cmp(&a.minute)
                .then_with(|| a.route.cmp(&b.route))
                .then_with(|| a.status.cmp(&b.status))
        });
        rows.truncate(limit);
        Ok(rows)
    }

    async fn retire(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, RepositoryError> {
        // Ordered by minute first: the oldest are at the front.
        let mut map = lock(&self.map);
        let mut gone = 0;
        while gone < limit && map.first_key_value().is_some_and(|(k, _)| k.0 < before) {
            map.pop_first();
            gone += 1;
        }
        Ok(gone as u64)
    }
}
