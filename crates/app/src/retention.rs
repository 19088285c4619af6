//! Retirement of what ended: checkouts, payment authorizations, traffic counts and audit
//! events past their retention are deleted in batches by the housekeeping worker, so storage
//! (and an embedded replica's memory) stays flat however long the gateway runs. Idempotency
//! records and rate windows expire on their own clock ([`crate::Guardrails::purge`]).

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::{AppError, Gateway, Guardrails};

/// How long what ended is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Checkouts, payment authorizations and traffic counts, after they ended (a checkout
    /// left open: after its expiry).
    pub ended: Duration,
    /// Audit events, after they were recorded.
    pub audit: Duration,
}

/// Thirty days for what ended, a year for the audit trail.
impl Default for Retention {
    fn default() -> Self {
        Retention {
            ended: Duration::from_secs(30 * 24 * 3600),
            audit: Duration::from_secs(365 * 24 * 3600),
        }
    }
}

impl Retention {
    /// How often a housekeeping round retires: a quarter of the shorter retention, between
    /// one second and five minutes, so nothing outlives its retention by more than a quarter.
    pub fn round_every(&self) -> Duration {
        (self.ended.min(self.audit) / 4).clamp(Duration::from_secs(1), Duration::from_secs(300))
    }
}

/// What one round retired.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retired {
    /// Checkouts deleted.
    pub checkouts: u64,
    /// Payment authorizations deleted.
    pub authorizations: u64,
    /// Traffic counts (per key, route, status and minute) deleted.
    pub traffic: u64,
    /// Audit events deleted.
    pub audit: u64,
}

/// Rows deleted per statement: small enough that no lock is held for long.
const BATCH: usize = 1_000;
/// Statements per table per round; what is left waits for the next round, so a backlog
/// (a lowered retention, a long outage) drains without monopolising the database.
const BATCHES_PER_ROUND: usize = 50;

impl Gateway {
    /// Deletes what ended before its retention, oldest first, in batches.
    pub async fn retire_ended(&self) -> Result<Retired, AppError> {
        let now = self.now();
        let retention = self.config.retention;
        let ended = cutoff(now, retention.ended);
        let audit = cutoff(now, retention.audit);
        // Authorizations first: in storage that keeps them beside their checkout, a checkout
        // then finds none of its own left to take with it.
        let authorizations = drain(|| self.authorizations.retire(ended, BATCH)).await?;
        let checkouts = drain(|| self.checkouts.retire(ended, BATCH)).await?;
        let guard: &Guardrails = self.guard();
        let traffic = drain(|| guard.retire_traffic(ended, BATCH)).await?;
        let audit = drain(|| guard.retire_audit(audit, BATCH)).await?;
        let retired = Retired {
            checkouts,
            authorizations,
            traffic,
            audit,
        };
        if retired != Retired::default() {
            tracing::info!(?retired, "retired what ended before its retention");
        }
        Ok(retired)
    }
}

fn cutoff(now: DateTime<Utc>, keep: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(keep)
        .ok()
        .and_then(|keep| now.checked_sub_signed(keep))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Runs `batch` until it deletes less than a full batch, or the round's budget is spent.
async fn drain<F, Fut, E>(mut batch: F) -> Result<u64, AppError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<u64, E>>,
    AppError: From<E>,
{
    let mut total = 0;
    for _ in 0..BATCHES_PER_ROUND {
        let deleted = batch().await?;
        total += deleted;
        if deleted < BATCH as u64 {
            break;
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_comes_at_least_four_times_per_retention_and_at_most_every_second() {
        let of = |ended: u64, audit: u64| Retention {
            ended: Duration::from_secs(ended),
            audit: Duration::from_secs(audit),
        };
        assert_eq!(Retention::default().round_every(), Duration::from_secs(300));
        assert_eq!(of(60, 3600).round_every(), Duration::from_secs(15));
        assert_eq!(of(3600, 2).round_every(), Duration::from_secs(1));
        assert_eq!(of(0, 0).round_every(), Duration::from_secs(1));
    }

    #[test]
    fn a_retention_longer_than_history_keeps_everything() {
        let now = DateTime::<Utc>::from_timestamp(1_900_000_000, 0).unwrap();
        assert_eq!(
            cutoff(now, Duration::from_secs(u64::MAX)),
            DateTime::<Utc>::MIN_UTC
        );
        assert_eq!(
            cutoff(now, Duration::from_secs(60)),
            now - chrono::Duration::seconds(60)
        );
    }
}
