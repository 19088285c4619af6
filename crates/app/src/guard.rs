//! Guardrails: rate limits and quotas, kill switches, idempotency, audit and
//! traffic — the use cases behind the API's middleware and the admin API.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use sacp_domain::ApiKeyId;
use sacp_domain::audit::{AuditEvent, AuditOutcome, TrafficCount};
use sacp_domain::idempotency::{Answer, Begin, Claim, IdempotencyScope, StoredResponse};
use sacp_domain::ids::ID_RANDOM_BYTES;
use sacp_domain::ratelimit::{CounterAt, Decision, INLINE_USAGES, Limit, Moment, Usage};
use sacp_domain::switches::{Operation, Switches};
use sacp_ports::telemetry;
use sacp_ports::{AuditLog, Clock, IdempotencyStore, RateCounters, SwitchBoard, TrafficLog};

use super::AppError;
use super::refresh::{Serve, serve};
use crate::{Caller, Principal};

/// The storage the guardrails use.
#[derive(Clone)]
pub struct GuardPorts {
    /// Rate-limit counters.
    pub counters: Arc<dyn RateCounters>,
    /// Kill switches.
    pub switches: Arc<dyn SwitchBoard>,
    /// Idempotency records.
    pub idempotency: Arc<dyn IdempotencyStore>,
    /// Traffic counts.
    pub traffic: Arc<dyn TrafficLog>,
    /// The audit log.
    pub audit: Arc<dyn AuditLog>,
}

impl std::fmt::Debug for GuardPorts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GuardPorts")
    }
}

/// How a created resource's idempotent answer is rendered, for storing it in the same
/// transaction as the resource.
pub struct Answering<'a, T> {
    /// The request's claim.
    pub claim: Claim,
    /// The answer the request gets, rendered from the resource to be stored.
    pub render: &'a (dyn Fn(&T) -> StoredResponse + Send + Sync),
}

impl<T> std::fmt::Debug for Answering<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Answering")
            .field("claim", &self.claim)
            .finish_non_exhaustive()
    }
}

impl<T> Answering<'_, T> {
    /// The answer for `value`, at `now`.
    pub fn answer(&self, value: &T, now: DateTime<Utc>) -> Answer {
        Answer {
            claim: self.claim.clone(),
            response: (self.render)(value),
            at: now,
        }
    }
}

/// Gateway-wide limits (the default tiers); per-key limits live on each key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitSettings {
    /// Requests per minute of all keys of one organisation together.
    pub org_per_minute: u32,
    /// Requests per minute acting for one end user (one user token).
    pub user_per_minute: u32,
    /// Writes (POST/PATCH) per minute per key.
    pub writes_per_minute: u32,
    /// Payment completions per minute per key.
    pub completions_per_minute: u32,
    /// Checkouts created per day per key.
    pub checkouts_per_day: u32,
    /// Catalog reads per minute per client address without a key; `None` = no anonymous tier.
    pub anonymous_per_minute: Option<u32>,
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings {
            org_per_minute: 6_000,
            user_per_minute: 60,
            writes_per_minute: 120,
            completions_per_minute: 30,
            checkouts_per_day: 5_000,
            anonymous_per_minute: None,
        }
    }
}

/// How long a replica reuses the switches it read: well under the one second in which a
/// change must reach every replica.
const SWITCH_CACHE: StdDuration = StdDuration::from_millis(500);

/// How long before [`SWITCH_CACHE`] runs out one request reads the switches again while the
/// others are still served (see [`crate::refresh`]): long enough for a read that waits for a
/// connection of a busy pool.
const SWITCH_REFRESH_AHEAD: StdDuration = StdDuration::from_millis(400);

/// The switches a replica read: when, and whether a request is reading them again.
#[derive(Clone, Copy)]
struct CachedSwitches {
    read_at: Instant,
    switches: Switches,
    refreshing: bool,
}

/// A traffic count's minute (minutes since the epoch), key (by its id's bits, see
/// [`ApiKeyId::to_bits`]), route and status: copied, not allocated, for each answered
/// request.
type TrafficKey = (i64, Option<[u8; ID_RANDOM_BYTES]>, &'static str, u16);

/// A request refused by a guardrail before its handler ran (authentication, a scope, a limit,
/// a switch, the capacity, an unreadable body). Refusals are audited counted per source,
/// action, status and minute, so that a flood adds rows per minute, not per request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// When.
    pub at: DateTime<Utc>,
    /// The request id (the first one of a minute is kept).
    pub request_id: String,
    /// Who: `key:<id>` for a key that authenticated, else `ip:<address>`.
    pub source: String,
    /// The key, only when it authenticated.
    pub key_id: Option<ApiKeyId>,
    /// Its organisation.
    pub org: Option<String>,
    /// The route's action, e.g. `POST /checkout`.
    pub action: &'static str,
    /// The status answered.
    pub status: u16,
}

type RefusalKey = (DateTime<Utc>, String, &'static str, u16);

/// An answered request or tool call, for [`Guardrails::record_answer`]. It borrows what it
/// names: only an answer that is audited copies it.
#[derive(Debug)]
pub struct Answered<'a> {
    /// Who called.
    pub caller: &'a Caller,
    /// The route's action (a tool call's: the route it mirrors), e.g. `POST /checkout`.
    pub action: &'static str,
    /// The status answered.
    pub status: u16,
    /// The request id.
    pub request_id: &'a str,
    /// The resource acted on, when one was named.
    pub resource: Option<&'a str>,
    /// The end user, when a wallet token was introspected.
    pub subject: Option<&'a str>,
    /// Whether the route changes state (every answer is then audited).
    pub changes_state: bool,
    /// Whether its reads are audited too (the admin API's).
    pub audit_reads: bool,
}

impl Answered<'_> {
    /// Whether the answer is audited, not only counted: a route that changes state or audits
    /// its reads, or a refused credential. What only an audit event names (the resource, the
    /// end user, the request id) need not be found for an answer that is not.
    pub fn is_audited(&self) -> bool {
        self.changes_state || self.audit_reads || matches!(self.status, 401 | 403)
    }
}

/// Who a refusal is counted against: the key that authenticated, else the client address.
fn source_of(caller: Option<&Caller>, peer: Option<IpAddr>) -> String {
    match (caller, peer) {
        (Some(Caller::Key(principal)), _) => format!("key:{}", principal.key_id.as_str()),
        (_, Some(ip)) | (Some(&Caller::Anonymous(ip)), None) => format!("ip:{ip}"),
        _ => "ip:unknown".to_owned(),
    }
}

/// The guardrail use cases.
#[derive(Clone)]
pub struct Guardrails {
    ports: GuardPorts,
    clock: Arc<dyn Clock>,
    settings: LimitSettings,
    switch_cache: Arc<Mutex<Option<CachedSwitches>>>,
    /// Hashed with foldhash: its keys are a minute, a key's bits, a route and a status,
    /// none of them a caller's free choice, and every answer counts one.
    pending_traffic: Arc<Mutex<foldhash::HashMap<TrafficKey, u64>>>,
    pending_refusals: Arc<Mutex<HashMap<RefusalKey, AuditEvent>>>,
}

impl std::fmt::Debug for Guardrails {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guardrails")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// The start of the minute `at` falls in.
fn minute_of(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(TimeDelta::minutes(1)).unwrap_or(at)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Guardrails {
    /// Guardrails over these ports.
    pub fn new(ports: GuardPorts, clock: Arc<dyn Clock>, settings: LimitSettings) -> Guardrails {
        Guardrails {
            ports,
            clock,
            settings,
            switch_cache: Arc::default(),
            pending_traffic: Arc::default(),
            pending_refusals: Arc::default(),
        }
    }

    /// The gateway-wide limits.
    pub fn settings(&self) -> &LimitSettings {
        &self.settings
    }

    /// The current time.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Counts one request against every limit in `limits` and returns each one's usage (for
    /// the `RateLimit` headers). A refused request (see [`Guardrails::refusal`]) is taken
    /// back off every counter: refusals do not use up quota.
    ///
    /// With counters this process keeps ([`RateCounters::hit_now`]) and no more limits than a
    /// [`Decision`] holds in place, an admitted request allocates nothing here.
    pub async fn admit(&self, limits: &[Limit]) -> Result<Decision, AppError> {
        if limits.is_empty() {
            return Ok(Decision::none());
        }
        let now = self.clock.now();
        let decision = match self.counted_now(limits, now) {
            Some(counted) => counted?,
            // Shared counters are asked in a future of their own, so that the in-process
            // path's stays small.
            None => Box::pin(self.counted_shared(limits, now)).await?,
        };
        if decision.allowed() {
            return Ok(decision);
        }
        Ok(Box::pin(self.release(limits, now, decision)).await)
    }

    /// Counts at once, in place, when the counters are this process's (see
    /// [`RateCounters::hit_now`]); `None` when they must be asked.
    fn counted_now(
        &self,
        limits: &[Limit],
        now: DateTime<Utc>,
    ) -> Option<Result<Decision, AppError>> {
        let mut at_once = [CounterAt::default(); INLINE_USAGES];
        let mut counts = [0u64; INLINE_USAGES];
        let at_once = at_once.get_mut(..limits.len())?;
        let counts = counts.get_mut(..limits.len())?;
        let now = Moment::of(now);
        for (counter, limit) in at_once.iter_mut().zip(limits) {
            *counter = limit.counter_at(now);
        }
        let counted = self.ports.counters.hit_now(at_once, counts)?;
        Some(counted.map_err(AppError::from).map(|()| {
            limits
                .iter()
                .zip(at_once.iter())
                .zip(counts.iter())
                .map(|((limit, counter), &count)| {
                    Usage::at(*limit.policy(), count, counter.window_end, now)
                })
                .collect()
        }))
    }

    /// Counts with [`RateCounters::hit`].
    async fn counted_shared(
        &self,
        limits: &[Limit],
        now: DateTime<Utc>,
    ) -> Result<Decision, AppError> {
        let counters: Vec<_> = limits.iter().map(|l| l.counter(now)).collect();
        let counts = self.ports.counters.hit(&counters).await?;
        Ok(limits
            .iter()
            .zip(counts)
            .map(|(limit, count)| Usage::new(limit, count, now))
            .collect())
    }

    /// Takes a refused request back off every counter it was counted on.
    async fn release(&self, limits: &[Limit], now: DateTime<Utc>, decision: Decision) -> Decision {
        let counters: Vec<_> = limits.iter().map(|l| l.counter(now)).collect();
        if let Err(e) = self.ports.counters.release(&counters).await {
            tracing::warn!(error = %e, "could not release refused rate-limit counts");
            return decision;
        }
        decision.released()
    }

    /// The error refusing a request under `decision`, if any limit is exceeded.
    pub fn refusal(&self, decision: &Decision) -> Option<AppError> {
        let exceeded = decision.exceeded()?;
        metrics::counter!(telemetry::RATE_LIMIT_REFUSALS, "policy" => exceeded.policy.name)
            .increment(1);
        Some(AppError::RateLimited {
            policy: exceeded.policy.name,
            limit: exceeded.policy.limit,
            window_secs: exceeded.policy.window_secs,
            retry_after: decision.retry_after_secs().unwrap_or(1),
        })
    }

    /// The kill switches, served from memory for at most 500 ms per replica (read again
    /// by one request from 100 ms on while the switches are in use).
    pub async fn switches(&self) -> Result<Switches, AppError> {
        if let Some(cached) = lock(&self.switch_cache).as_mut()
            && serve(
                cached.read_at.elapsed(),
                SWITCH_CACHE,
                SWITCH_REFRESH_AHEAD,
                &mut cached.refreshing,
            ) == Serve::Cached
        {
            return Ok(cached.switches);
        }
        let read_at = Instant::now();
        let switches = self.ports.switches.switches().await?;
        self.keep_switches(read_at, switches);
        Ok(switches)
    }

    /// Refuses `operation` if a switch is off.
    pub async fn ensure_allowed(&self, operation: Operation) -> Result<(), AppError> {
        if operation == Operation::Read {
            return Ok(());
        }
        match self.switches().await?.refuses(operation) {
            Some(off) => {
                metrics::counter!(telemetry::KILL_SWITCH_REFUSALS, "switch" => off.name())
                    .increment(1);
                Err(AppError::SwitchedOff(off))
            }
            None => Ok(()),
        }
    }

    /// Sets the kill switches (every replica sees them within the cache period).
    pub async fn set_switches(&self, switches: Switches) -> Result<Switches, AppError> {
        self.ports.switches.set_switches(&switches).await?;
        self.keep_switches(Instant::now(), switches);
        Ok(switches)
    }

    fn keep_switches(&self, read_at: Instant, switches: Switches) {
        *lock(&self.switch_cache) = Some(CachedSwitches {
            read_at,
            switches,
            refreshing: false,
        });
    }

    /// Claims an idempotency scope for a request whose body has `fingerprint`.
    pub async fn begin_idempotent(
        &self,
        scope: &IdempotencyScope,
        fingerprint: &str,
    ) -> Result<Begin, AppError> {
        let begun = self
            .ports
            .idempotency
            .begin(scope, fingerprint, self.clock.now())
            .await?;
        match &begun {
            Begin::Started(_) => {}
            Begin::Replay(_) => {
                static REPLAYS: OnceLock<metrics::Counter> = OnceLock::new();
                REPLAYS
                    .get_or_init(|| metrics::counter!(telemetry::IDEMPOTENT_REPLAYS))
                    .increment(1);
            }
            Begin::Mismatch => {
                metrics::counter!(telemetry::IDEMPOTENCY_CONFLICTS, "reason" => "other_request")
                    .increment(1);
            }
            Begin::InFlight { .. } => {
                metrics::counter!(telemetry::IDEMPOTENCY_CONFLICTS, "reason" => "in_progress")
                    .increment(1);
            }
        }
        Ok(begun)
    }

    /// Stores the answer of a held claim for replay; `NotFound` storage error when the claim
    /// was taken over meanwhile (the new holder's record is left alone).
    pub async fn finish_idempotent(
        &self,
        claim: &Claim,
        response: &StoredResponse,
    ) -> Result<(), AppError> {
        Ok(self
            .ports
            .idempotency
            .finish(claim, response, self.clock.now())
            .await?)
    }

    /// Releases a held claim without an answer.
    pub async fn abandon_idempotent(&self, claim: &Claim) -> Result<(), AppError> {
        Ok(self.ports.idempotency.abandon(claim).await?)
    }

    /// Writes an audit event (durably, before the request is answered).
    pub async fn audit(&self, event: &AuditEvent) -> Result<(), AppError> {
        let started = Instant::now();
        let written = self.ports.audit.record(&event.clone().cleaned()).await;
        static DURATION: OnceLock<metrics::Histogram> = OnceLock::new();
        DURATION
            .get_or_init(|| metrics::histogram!(telemetry::AUDIT_WRITE_DURATION))
            .record(started.elapsed().as_secs_f64());
        Ok(written?)
    }

    /// Counts an answered request or tool call (traffic) and writes its audit event — before
    /// the answer leaves — when it changed state, was a read of an audited kind, or refused a
    /// credential. A failed write is logged; the answer stands. An answer that is only
    /// counted allocates nothing.
    pub async fn record_answer(&self, answer: Answered<'_>) {
        let principal = answer.caller.principal();
        self.count_request(principal, answer.action, answer.status);
        if answer.is_audited() {
            // In a future of its own: an answer that is only counted does not carry it.
            Box::pin(self.audit_answer(answer)).await;
        }
    }

    /// Writes the audit event of an answer (see [`Guardrails::record_answer`]).
    async fn audit_answer(&self, answer: Answered<'_>) {
        let principal = answer.caller.principal();
        let event = AuditEvent {
            at: self.now(),
            request_id: answer.request_id.to_owned(),
            key_id: principal.map(|p| p.key_id.clone()),
            org: principal.map(|p| p.org.clone()),
            subject: answer.subject.map(str::to_owned),
            action: answer.action.to_owned(),
            resource: answer.resource.map(str::to_owned),
            outcome: AuditOutcome::of_status(answer.status),
            status: answer.status,
            source: None,
            count: 1,
        };
        if let Err(error) = self.audit(&event).await {
            tracing::error!(%error, action = %event.action, "audit event not written");
        }
    }

    /// Counts a request or tool call refused before it ran (traffic) and notes it for the
    /// aggregated audit, against the key that authenticated, else the client address (`peer`,
    /// or the anonymous caller's): a secret that did not authenticate is never credited to
    /// the key it names.
    pub fn record_refusal(
        &self,
        caller: Option<&Caller>,
        peer: Option<IpAddr>,
        action: &'static str,
        status: u16,
        request_id: String,
    ) {
        let principal = caller.and_then(Caller::principal);
        self.count_request(principal, action, status);
        self.note_refusal(Refused {
            at: self.now(),
            request_id,
            source: source_of(caller, peer),
            key_id: principal.map(|p| p.key_id.clone()),
            org: principal.map(|p| p.org.clone()),
            action,
            status,
        });
    }

    /// Notes a refusal for the audit log, counted with the others of its source, action and
    /// status in the same minute (written by [`Guardrails::flush`]).
    pub fn note_refusal(&self, refused: Refused) {
        let minute = minute_of(refused.at);
        let key = (
            minute,
            refused.source.clone(),
            refused.action,
            refused.status,
        );
        lock(&self.pending_refusals)
            .entry(key)
            .and_modify(|event| event.count += 1)
            .or_insert_with(|| AuditEvent {
                at: minute,
                request_id: refused.request_id,
                key_id: refused.key_id,
                org: refused.org,
                subject: None,
                action: refused.action.to_owned(),
                resource: None,
                outcome: AuditOutcome::of_status(refused.status),
                status: refused.status,
                source: Some(refused.source),
                count: 1,
            });
    }

    /// Writes the counted refusals to the audit log.
    async fn flush_refusals(&self) -> Result<(), AppError> {
        let pending: Vec<(RefusalKey, AuditEvent)> = lock(&self.pending_refusals).drain().collect();
        if pending.is_empty() {
            return Ok(());
        }
        let events: Vec<AuditEvent> = pending.iter().map(|(_, e)| e.clone()).collect();
        if let Err(error) = self.ports.audit.add_refusals(&events).await {
            // Put them back: the next flush tries again.
            let mut map = lock(&self.pending_refusals);
            for (key, event) in pending {
                map.entry(key)
                    .and_modify(|e| e.count += event.count)
                    .or_insert(event);
            }
            return Err(error.into());
        }
        Ok(())
    }

    /// Audit events, newest first (this replica's counted refusals are written first).
    pub async fn audit_events(
        &self,
        key: Option<&ApiKeyId>,
        limit: usize,
    ) -> Result<Vec<AuditEvent>, AppError> {
        self.flush_refusals().await?;
        Ok(self.ports.audit.query(key, limit).await?)
    }

    /// Counts one answered request of `key`'s (kept in memory, written by
    /// [`Guardrails::flush`]).
    pub fn count_request(&self, key: Option<&Principal>, route: &'static str, status: u16) {
        let minute = self.clock.now().timestamp().div_euclid(60);
        let key = key.map(|principal| principal.key_bits);
        *lock(&self.pending_traffic)
            .entry((minute, key, route, status))
            .or_insert(0) += 1;
    }

    /// Writes what is counted in memory — traffic and refusals — to storage (the server
    /// calls this every second).
    pub async fn flush(&self) -> Result<(), AppError> {
        let refusals = self.flush_refusals().await;
        self.flush_traffic().await?;
        refusals
    }

    /// Writes the counted traffic to storage.
    async fn flush_traffic(&self) -> Result<(), AppError> {
        let pending: Vec<(TrafficKey, u64)> = lock(&self.pending_traffic).drain().collect();
        if pending.is_empty() {
            return Ok(());
        }
        let counts: Vec<TrafficCount> = pending
            .iter()
            .map(|&((minute, key, route, status), count)| TrafficCount {
                minute: DateTime::from_timestamp(minute.saturating_mul(60), 0).unwrap_or_default(),
                key_id: key.map(ApiKeyId::from_bits),
                route: route.to_owned(),
                status,
                count,
            })
            .collect();
        if let Err(error) = self.ports.traffic.add(&counts).await {
            // Put them back: the next flush tries again.
            let mut map = lock(&self.pending_traffic);
            for (key, count) in pending {
                *map.entry(key).or_insert(0) += count;
            }
            return Err(error.into());
        }
        Ok(())
    }

    /// Traffic per key, route, status and minute, newest first (this replica's counts are
    /// flushed first).
    pub async fn traffic(
        &self,
        key: Option<&ApiKeyId>,
        limit: usize,
    ) -> Result<Vec<TrafficCount>, AppError> {
        self.flush_traffic().await?;
        Ok(self.ports.traffic.traffic(key, limit).await?)
    }

    /// Deletes up to `limit` traffic counts of minutes before `before`.
    pub async fn retire_traffic(
        &self,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<u64, AppError> {
        Ok(self.ports.traffic.retire(before, limit).await?)
    }

    /// Deletes up to `limit` audit events recorded before `before`.
    pub async fn retire_audit(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, AppError> {
        Ok(self.ports.audit.retire(before, limit).await?)
    }

    /// Forgets ended rate-limit windows and expired idempotency records.
    pub async fn purge(&self) -> Result<u64, AppError> {
        let now = self.clock.now();
        let counters = self.ports.counters.purge(now).await?;
        let records = self.ports.idempotency.purge(now).await?;
        Ok(counters + records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_never_credited_to_a_key_that_did_not_authenticate() {
        let ip: IpAddr = [203, 0, 113, 9].into();
        assert_eq!(source_of(None, Some(ip)), "ip:203.0.113.9");
        assert_eq!(
            source_of(Some(&Caller::Anonymous(ip)), None),
            "ip:203.0.113.9"
        );
        assert_eq!(source_of(Some(&Caller::Public), None), "ip:unknown");
    }
}
