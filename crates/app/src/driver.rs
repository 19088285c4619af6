//! The background driver: advances every pending payment authorization, so an order
//! completes even when no agent polls. It calls the same use case whatever replica it runs
//! on; claims make concurrent drivers safe.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sacp_domain::PaymentAuthorizationId;
use tokio::sync::Semaphore;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::Gateway;

/// How the driver paces itself.
#[derive(Debug, Clone, Copy)]
pub struct DriverConfig {
    /// Pause between scans when the last one found less than a full batch.
    pub tick: Duration,
    /// Largest number of authorizations taken per scan.
    pub batch: usize,
    /// Most authorizations advanced at once.
    pub concurrency: usize,
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            tick: Duration::from_millis(250),
            batch: 256,
            concurrency: 256,
        }
    }
}

/// Runs until `shutdown` turns true.
///
/// A pipeline, not rounds: each due authorization is advanced as soon as a slot is free,
/// and the next scan starts at once when the last one filled its batch (so a backlog drains
/// at the speed of the work, not one batch per tick). Authorizations still being advanced
/// are skipped by later scans.
pub async fn run(gateway: Gateway, config: DriverConfig, mut shutdown: watch::Receiver<bool>) {
    tracing::info!(
        tick_ms = config.tick.as_millis(),
        concurrency = config.concurrency,
        "payment authorization driver started"
    );
    let slots = Arc::new(Semaphore::new(config.concurrency.max(1)));
    let busy: Arc<Mutex<HashSet<PaymentAuthorizationId>>> = Arc::default();
    let mut work = JoinSet::new();
    let mut pause = Duration::ZERO;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.changed() => break,
        }
        if *shutdown.borrow() {
            break;
        }
        // Reap finished work so the set does not grow.
        while work.try_join_next().is_some() {}
        let due = match gateway.due_authorizations(config.batch).await {
            Ok(due) => due,
            Err(error) => {
                tracing::warn!(error = %error, "cannot list due payment authorizations");
                // While storage is down, back off (up to 5 s) instead of failing four times
                // a second.
                pause = (pause * 2).clamp(config.tick, MAX_BACKOFF);
                continue;
            }
        };
        let full = due.len() >= config.batch;
        for id in due {
            if !lock(&busy).insert(id.clone()) {
                continue;
            }
            let Ok(slot) = slots.clone().acquire_owned().await else {
                break;
            };
            let gateway = gateway.clone();
            let busy = busy.clone();
            work.spawn(async move {
                advance(&gateway, &id).await;
                lock(&busy).remove(&id);
                drop(slot);
            });
        }
        pause = if full { Duration::ZERO } else { config.tick };
    }
    // Let work in progress finish: each step is a claimed unit that should not be cut.
    while work.join_next().await.is_some() {}
    tracing::info!("payment authorization driver stopped");
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
    let due = match gateway.due_authorizations(batch).await {
        Ok(due) => due,
        Err(error) => {
            tracing::warn!(error = %error, "cannot list due payment authorizations");
            return false;
        }
    };
    let mut work = JoinSet::new();
    for id in due {
        let gateway = gateway.clone();
        work.spawn(async move { advance(&gateway, &id).await });
    }
    while work.join_next().await.is_some() {}
    true
}

/// Advances one authorization; a failure is logged, and the next scan retries it.
async fn advance(gateway: &Gateway, id: &PaymentAuthorizationId) {
    if let Err(error) = gateway.advance_authorization(id).await {
        tracing::warn!(authorization = %id, error = %error, "advancing a payment authorization failed");
    }
}

/// How often the watched step-ups are looked at (each is asked about every few seconds).
const STEP_UP_TICK: Duration = Duration::from_secs(1);

/// Watches the step-ups this replica started (user-token path): asks the wallet about each
/// one every few seconds and places the order once the person approves, so the order
/// completes even when the agent stops polling. Runs until `shutdown` turns true.
pub async fn watch_step_ups(gateway: Gateway, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(STEP_UP_TICK) => {}
            _ = shutdown.changed() => break,
        }
        if *shutdown.borrow() {
            break;
        }
        gateway.advance_step_ups().await;
    }
}

/// How often traffic counts are written.
const TRAFFIC_FLUSH: Duration = Duration::from_secs(1);
/// How often ended rate windows and expired idempotency records are purged.
const PURGE_EVERY: u32 = 300;

/// Writes traffic counts, counted refusals and keys' last uses every second and purges
/// expired guardrail records every five minutes, until `shutdown` turns true (then writes
/// the last counts).
pub async fn housekeeping(gateway: Gateway, mut shutdown: watch::Receiver<bool>) {
    let guard = gateway.guard();
    let mut ticks: u32 = 0;
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
        ticks = ticks.wrapping_add(1);
        if ticks.is_multiple_of(PURGE_EVERY)
            && let Err(error) = guard.purge().await
        {
            tracing::warn!(%error, "purging expired guardrail records failed");
        }
    }
    if let Err(error) = guard.flush().await {
        tracing::warn!(%error, "last traffic counts not written");
    }
    if let Err(error) = gateway.keys().flush_uses().await {
        tracing::warn!(%error, "last key uses not written");
    }
}
