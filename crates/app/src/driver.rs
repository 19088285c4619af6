//! The background driver: advances every pending payment authorization, so an order
//! completes even when no agent polls. It calls the same use case whatever replica it runs
//! on; claims make concurrent drivers safe.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sacp_domain::{PaymentAuthorization, PaymentAuthorizationId};
use tokio::sync::Semaphore;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::{ClaimedWork, Gateway};

/// How the driver paces itself.
#[derive(Debug, Clone, Copy)]
pub struct DriverConfig {
    /// Shortest pause between scans while work is in flight (its outcome moves due times
    /// that only a scan reads back).
    pub tick: Duration,
    /// Longest sleep with nothing due: the safety net should a change notification be
    /// lost. Work added by this replica, or announced by storage, wakes the driver sooner.
    pub idle: Duration,
    /// Largest number of authorizations taken per scan.
    pub batch: usize,
    /// Most authorizations advanced at once.
    pub concurrency: usize,
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            tick: Duration::from_millis(250),
            idle: IDLE_SLEEP,
            batch: 256,
            concurrency: 256,
        }
    }
}

/// Longest sleep of an idle worker (see [`DriverConfig::idle`]).
pub const IDLE_SLEEP: Duration = Duration::from_secs(30);

/// How long from `now` until `at`, at most `cap` (zero when `at` has passed).
fn until(now: DateTime<Utc>, at: Option<DateTime<Utc>>, cap: Duration) -> Duration {
    at.map_or(cap, |at| {
        (at - now).to_std().unwrap_or(Duration::ZERO).min(cap)
    })
}

fn earliest(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Runs until `shutdown` turns true.
///
/// A pipeline, not rounds: each due authorization is advanced as soon as a slot is free,
/// and the next scan starts at once when the last one filled its batch (so a backlog drains
/// at the speed of the work, not one batch per tick). Authorizations still being advanced
/// are skipped by later scans. With nothing in flight the driver sleeps until the next due
/// time the scan reported, or until its alarm says work falls due sooner (a payment started
/// here, an agent watching, another replica's notification), at most [`DriverConfig::idle`].
pub async fn run(gateway: Gateway, config: DriverConfig, mut shutdown: watch::Receiver<bool>) {
    tracing::info!(
        tick_ms = config.tick.as_millis(),
        idle_ms = config.idle.as_millis(),
        concurrency = config.concurrency,
        "payment authorization driver started"
    );
    let slots = Arc::new(Semaphore::new(config.concurrency.max(1)));
    let busy: Arc<Mutex<HashSet<PaymentAuthorizationId>>> = Arc::default();
    let mut work = JoinSet::new();
    let alarm = &gateway.alarms().authorizations;
    // When to scan next; the first scan is at once.
    let mut next_scan = Some(gateway.now());
    let mut failures: u32 = 0;
    loop {
        next_scan = earliest(next_scan, alarm.take());
        let pause = until(gateway.now(), next_scan, config.idle);
        if !pause.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = alarm.rung() => continue,
                _ = shutdown.changed() => {}
            }
        }
        if *shutdown.borrow() {
            break;
        }
        // Reap finished work so the set does not grow.
        while work.try_join_next().is_some() {}
        let found = match gateway.due_authorizations(config.batch).await {
            Ok(found) => found,
            Err(error) => {
                tracing::warn!(error = %error, "cannot list due payment authorizations");
                // While storage is down, back off (up to 5 s) instead of failing four times
                // a second.
                failures = failures.saturating_add(1);
                let backoff = config.tick * 2u32.saturating_pow(failures.min(5));
                next_scan = Some(gateway.now() + chrono_of(backoff.min(MAX_BACKOFF)));
                continue;
            }
        };
        failures = 0;
        let full = found.due.len() >= config.batch;
        let fresh: Vec<PaymentAuthorization> = {
            let busy = lock(&busy);
            found
                .due
                .into_iter()
                .filter(|a| !busy.contains(a.id()))
                .collect()
        };
        // The scan's claims are written together; each claimed piece of work then runs as
        // soon as a slot is free. Work not claimed (another replica's, or a failed write)
        // is looked at again after a tick: a failed claim left it due, and due work is not
        // in the scan's next time.
        let wanted = fresh.len();
        let claims = gateway.claim_all(fresh).await;
        let unclaimed = claims.len() < wanted;
        for claimed in claims {
            let id = claimed.id().clone();
            if !lock(&busy).insert(id.clone()) {
                continue;
            }
            let Ok(slot) = slots.clone().acquire_owned().await else {
                break;
            };
            let gateway = gateway.clone();
            let busy = busy.clone();
            work.spawn(async move {
                advance(&gateway, claimed).await;
                lock(&busy).remove(&id);
                drop(slot);
            });
        }
        let now = gateway.now();
        next_scan = if full {
            Some(now)
        } else if unclaimed || !lock(&busy).is_empty() {
            earliest(found.next_at, Some(now + chrono_of(config.tick)))
        } else {
            found.next_at
        };
    }
    // Let work in progress finish: each step is a claimed unit that should not be cut.
    while work.join_next().await.is_some() {}
    tracing::info!("payment authorization driver stopped");
}

fn chrono_of(duration: Duration) -> chrono::Duration {
    chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Longest pause between scans while storage fails.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// One scan: advances every due authorization concurrently and waits for all. Returns
/// whether the due work could be listed.
pub async fn scan(gateway: &Gateway, batch: usize) -> bool {
    let found = match gateway.due_authorizations(batch).await {
        Ok(found) => found,
        Err(error) => {
            tracing::warn!(error = %error, "cannot list due payment authorizations");
            return false;
        }
    };
    let mut work = JoinSet::new();
    for claimed in gateway.claim_all(found.due).await {
        let gateway = gateway.clone();
        work.spawn(async move { advance(&gateway, claimed).await });
    }
    while work.join_next().await.is_some() {}
    true
}

/// Advances one authorization; a failure is logged, and the next scan retries it.
async fn advance(gateway: &Gateway, claimed: ClaimedWork) {
    let id = claimed.id().clone();
    if let Err(error) = gateway.advance_claimed(claimed).await {
        tracing::warn!(authorization = %id, error = %error, "advancing a payment authorization failed");
    }
}

/// Watches the step-ups this replica started (user-token path): asks the wallet about each
/// one every few seconds and places the order once the person approves, so the order
/// completes even when the agent stops polling. Sleeps while none is due: woken by a watch
/// stored here or announced by storage, else every [`IDLE_SLEEP`]. Runs until `shutdown`
/// turns true.
pub async fn watch_step_ups(gateway: Gateway, mut shutdown: watch::Receiver<bool>) {
    let alarm = &gateway.alarms().step_ups;
    let mut next = Some(gateway.now());
    loop {
        next = earliest(next, alarm.take());
        let pause = until(gateway.now(), next, IDLE_SLEEP);
        if !pause.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = alarm.rung() => continue,
                _ = shutdown.changed() => {}
            }
        }
        if *shutdown.borrow() {
            break;
        }
        next = gateway.advance_step_ups().await;
    }
}

/// How often traffic counts are written.
const TRAFFIC_FLUSH: Duration = Duration::from_secs(1);
/// How often ended rate windows and expired idempotency records are purged.
const PURGE_EVERY: Duration = Duration::from_secs(300);

/// Writes traffic counts, counted refusals and keys' last uses every second, purges expired
/// guardrail records every five minutes and retires what ended past its retention
/// ([`crate::Retention::round_every`]), until `shutdown` turns true (then writes the last
/// counts).
pub async fn housekeeping(gateway: Gateway, mut shutdown: watch::Receiver<bool>) {
    let guard = gateway.guard();
    let retire_every = gateway.retention().round_every();
    let started = tokio::time::Instant::now();
    let (mut purged, mut retired) = (started, started);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TRAFFIC_FLUSH) => {}
            _ = shutdown.changed() => break,
        }
        if *shutdown.borrow() {
            break;
        }
        if let Err(error) = guard.flush().await {
            tracing::warn!(%error, "traffic counts not written; will retry");
        }
        if let Err(error) = gateway.keys().flush_uses().await {
            tracing::warn!(%error, "keys' last uses not written; will retry");
        }
        if purged.elapsed() >= PURGE_EVERY {
            purged = tokio::time::Instant::now();
            if let Err(error) = guard.purge().await {
                tracing::warn!(%error, "purging expired guardrail records failed");
            }
        }
        if retired.elapsed() >= retire_every {
            retired = tokio::time::Instant::now();
            if let Err(error) = gateway.retire_ended().await {
                tracing::warn!(%error, "retiring what ended failed; next round retries");
            }
        }
    }
    if let Err(error) = guard.flush().await {
        tracing::warn!(%error, "last traffic counts not written");
    }
    if let Err(error) = gateway.keys().flush_uses().await {
        tracing::warn!(%error, "last key uses not written");
    }
}
