//! In-memory repositories: the embedded storage of the sandbox and of tests. State lives
//! as long as the process.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sacp_domain::access::ApiKey;
use sacp_domain::audit::AuditEvent;
use sacp_domain::authorization::AuthorizationStatus;
use sacp_domain::idempotency::Answer;
use sacp_domain::{ApiKeyId, Checkout, CheckoutId, PaymentAuthorization, PaymentAuthorizationId};
use sacp_ports::{
    ApiKeyRepository, AuditLog, AuthorizationRepository, CheckoutRepository, DueAuthorizations,
    LiveCounts, RepositoryError,
};

use crate::memory_compact::{CompactCheckout, CompactKey, Products, key_of};
use crate::memory_guard::MemoryIdempotency;

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section below is a single map operation, so a panic elsewhere cannot
    // leave the map half-updated: keep serving after a poisoned lock.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Checkouts in a map, each in its compact form (see [`crate::memory_compact`]).
#[derive(Debug, Default)]
pub struct MemoryCheckouts {
    // Boxed: a hash map keeps up to half its slots empty after growing; slots of a pointer
    // waste little and growth copies little.
    map: Mutex<HashMap<CompactKey, Box<CompactCheckout>>>,
    products: Products,
    idempotency: Arc<MemoryIdempotency>,
}

impl MemoryCheckouts {
    /// Checkouts whose [`CheckoutRepository::insert_answering`] finishes records of
    /// `idempotency`.
    pub fn sharing(idempotency: Arc<MemoryIdempotency>) -> MemoryCheckouts {
        MemoryCheckouts {
            map: Mutex::default(),
            products: Products::default(),
            idempotency,
        }
    }

    /// Replaces the stored checkout if its version is still `checkout`'s (then moves that on).
    fn update_stored(&self, checkout: &mut Checkout) -> Result<(), RepositoryError> {
        let next = self.compact(checkout, checkout.version() + 1);
        let mut map = lock(&self.map);
        let stored = map
            .get_mut(&key_of(checkout.id()))
            .ok_or(RepositoryError::NotFound)?;
        if stored.version() != checkout.version() {
            return Err(RepositoryError::Conflict);
        }
        *stored = next;
        drop(map);
        checkout.set_version(checkout.version() + 1);
        Ok(())
    }

    /// `checkout` in its stored form at `version`.
    fn compact(&self, checkout: &Checkout, version: u64) -> Box<CompactCheckout> {
        Box::new(CompactCheckout::of(checkout, version, &self.products))
    }

    /// Stores `stored`, the compact form of `checkout` at version 1, refusing a duplicate or
    /// an already stored checkout. (Built by the caller: no allocation under the locks.)
    fn insert_stored(
        &self,
        checkout: &Checkout,
        stored: Box<CompactCheckout>,
    ) -> Result<(), RepositoryError> {
        let key = key_of(checkout.id());
        let mut map = lock(&self.map);
        if checkout.version() != 0 || map.contains_key(&key) {
            return Err(RepositoryError::AlreadyExists);
        }
        map.insert(key, stored);
        Ok(())
    }
}

/// Inserts `value` under `id` at version 1, refusing duplicates.
fn insert_new<K: std::hash::Hash + Eq + Clone, V: Clone>(
    map: &Mutex<HashMap<K, V>>,
    id: &K,
    version: u64,
    value: &V,
) -> Result<(), RepositoryError> {
    let mut map = lock(map);
    if version != 0 || map.contains_key(id) {
        return Err(RepositoryError::AlreadyExists);
    }
    map.insert(id.clone(), value.clone());
    Ok(())
}

#[async_trait]
impl CheckoutRepository for MemoryCheckouts {
    async fn insert(&self, checkout: &mut Checkout) -> Result<(), RepositoryError> {
        self.insert_stored(checkout, self.compact(checkout, 1))?;
        checkout.set_version(1);
        Ok(())
    }

    async fn insert_answering(
        &self,
        checkout: &mut Checkout,
        answer: &Answer,
    ) -> Result<(), RepositoryError> {
        let stored = self.compact(checkout, 1);
        self.idempotency
            .finish_with(answer, || self.insert_stored(checkout, stored))?;
        checkout.set_version(1);
        Ok(())
    }

    async fn get(&self, id: &CheckoutId) -> Result<Checkout, RepositoryError> {
        let key = key_of(id);
        lock(&self.map)
            .get(&key)
            .ok_or(RepositoryError::NotFound)?
            .restore(key)
    }

    async fn with_order(&self, order_id: &str) -> Result<Checkout, RepositoryError> {
        // Orders are read rarely; a scan of the compact records keeps every checkout lean.
        let map = lock(&self.map);
        let (key, stored) = map
            .iter()
            .find(|(_, stored)| stored.order_id() == Some(order_id))
            .ok_or(RepositoryError::NotFound)?;
        stored.restore(*key)
    }

    async fn update(&self, checkout: &mut Checkout) -> Result<(), RepositoryError> {
        self.update_stored(checkout)
    }

    async fn update_answering(
        &self,
        checkout: &mut Checkout,
        answer: &Answer,
    ) -> Result<(), RepositoryError> {
        self.idempotency
            .finish_with(answer, || self.update_stored(checkout))
    }

    async fn ping(&self) -> Result<(), RepositoryError> {
        Ok(())
    }

    async fn retire(&self, cutoff: DateTime<Utc>, limit: usize) -> Result<u64, RepositoryError> {
        // A walk of every checkout, but only every few minutes (the housekeeping round),
        // never on a request's path.
        let mut map = lock(&self.map);
        let doomed: Vec<CompactKey> = map
            .iter()
            .filter(|(_, stored)| stored.retirable(cutoff))
            .map(|(key, _)| *key)
            .take(limit)
            .collect();
        for key in &doomed {
            map.remove(key);
        }
        Ok(doomed.len() as u64)
    }
}

fn one_live_authorization() -> RepositoryError {
    RepositoryError::Constraint("one_active_authorization_per_checkout".into())
}

/// Payment authorizations in memory, indexed by what they are looked up by: their id, their
/// checkout, and — while live — their next poll and (pending) their expiry, so no lookup
/// scans every authorization ever made.
#[derive(Debug, Default)]
pub struct MemoryAuthorizations {
    index: Mutex<AuthorizationIndex>,
}

#[derive(Debug, Default)]
struct AuthorizationIndex {
    by_id: HashMap<PaymentAuthorizationId, PaymentAuthorization>,
    /// Every authorization of a checkout, in the order they were made.
    by_checkout: HashMap<CheckoutId, Vec<PaymentAuthorizationId>>,
    /// Live ones (pending, approved, charging) by their next poll or attempt.
    by_next_poll: BTreeSet<(DateTime<Utc>, PaymentAuthorizationId)>,
    /// Pending ones by the expiry of their code.
    by_expiry: BTreeSet<(DateTime<Utc>, PaymentAuthorizationId)>,
    /// Ended ones by when they ended (their last change): what retirement takes first.
    by_end: BTreeSet<(DateTime<Utc>, PaymentAuthorizationId)>,
    counts: LiveCounts,
}

impl AuthorizationIndex {
    fn live_of(&self, checkout: &CheckoutId) -> Option<&PaymentAuthorization> {
        self.by_checkout
            .get(checkout)?
            .iter()
            .filter_map(|id| self.by_id.get(id))
            .find(|a| !a.status().is_terminal())
    }

    /// Adds `authorization` to the time indexes and the counts (the id and checkout
    /// indexes are kept by the caller).
    fn enter(&mut self, authorization: &PaymentAuthorization) {
        let id = authorization.id().clone();
        match authorization.status() {
            AuthorizationStatus::Pending => {
                self.counts.pending += 1;
                self.by_expiry
                    .insert((authorization.expires_at(), id.clone()));
            }
            AuthorizationStatus::Approved => self.counts.approved += 1,
            AuthorizationStatus::Charging => self.counts.charging += 1,
            _ => {
                self.by_end.insert((authorization.updated_at(), id));
                return;
            }
        }
        self.by_next_poll.insert((authorization.next_poll_at(), id));
    }

    /// Takes `authorization` out of the time indexes and the counts.
    fn leave(&mut self, authorization: &PaymentAuthorization) {
        let id = authorization.id().clone();
        match authorization.status() {
            AuthorizationStatus::Pending => {
                self.counts.pending -= 1;
                self.by_expiry
                    .remove(&(authorization.expires_at(), id.clone()));
            }
            AuthorizationStatus::Approved => self.counts.approved -= 1,
            AuthorizationStatus::Charging => self.counts.charging -= 1,
            _ => {
                self.by_end.remove(&(authorization.updated_at(), id));
                return;
            }
        }
        self.by_next_poll
            .remove(&(authorization.next_poll_at(), id));
    }
}

#[async_trait]
impl AuthorizationRepository for MemoryAuthorizations {
    async fn insert(
        &self,
        authorization: &mut PaymentAuthorization,
    ) -> Result<(), RepositoryError> {
        let mut index = lock(&self.index);
        if authorization.version() != 0 || index.by_id.contains_key(authorization.id()) {
            return Err(RepositoryError::AlreadyExists);
        }
        if !authorization.status().is_terminal()
            && index.live_of(authorization.checkout_id()).is_some()
        {
            return Err(one_live_authorization());
        }
        authorization.set_version(1);
        let id = authorization.id().clone();
        index.enter(authorization);
        index
            .by_checkout
            .entry(authorization.checkout_id().clone())
            .or_default()
            .push(id.clone());
        index.by_id.insert(id, authorization.clone());
        Ok(())
    }

    async fn active_for_checkout(
        &self,
        checkout: &CheckoutId,
    ) -> Result<Option<PaymentAuthorization>, RepositoryError> {
        Ok(lock(&self.index).live_of(checkout).cloned())
    }

    async fn latest_for_checkout(
        &self,
        checkout: &CheckoutId,
    ) -> Result<Option<PaymentAuthorization>, RepositoryError> {
        let index = lock(&self.index);
        Ok(index
            .by_checkout
            .get(checkout)
            .into_iter()
            .flatten()
            .filter_map(|id| index.by_id.get(id))
            .max_by_key(|a| a.created_at())
            .cloned())
    }

    async fn get(
        &self,
        id: &PaymentAuthorizationId,
    ) -> Result<PaymentAuthorization, RepositoryError> {
        lock(&self.index)
            .by_id
            .get(id)
            .cloned()
            .ok_or(RepositoryError::NotFound)
    }

    async fn update(
        &self,
        authorization: &mut PaymentAuthorization,
    ) -> Result<(), RepositoryError> {
        let mut index = lock(&self.index);
        let stored = index
            .by_id
            .get(authorization.id())
            .ok_or(RepositoryError::NotFound)?;
        if stored.version() != authorization.version() {
            return Err(RepositoryError::Conflict);
        }
        let previous = stored.clone();
        let mut next = authorization.clone();
        next.set_version(authorization.version() + 1);
        index.leave(&previous);
        index.enter(&next);
        index.by_id.insert(next.id().clone(), next);
        authorization.set_version(authorization.version() + 1);
        Ok(())
    }

    async fn live_counts(&self) -> Result<LiveCounts, RepositoryError> {
        Ok(lock(&self.index).counts)
    }

    async fn retire(&self, cutoff: DateTime<Utc>, limit: usize) -> Result<u64, RepositoryError> {
        let mut index = lock(&self.index);
        let doomed: Vec<(DateTime<Utc>, PaymentAuthorizationId)> = index
            .by_end
            .iter()
            .take_while(|(ended, _)| *ended < cutoff)
            .take(limit)
            .cloned()
            .collect();
        for entry in &doomed {
            index.by_end.remove(entry);
            let Some(gone) = index.by_id.remove(&entry.1) else {
                continue;
            };
            if let Some(ids) = index.by_checkout.get_mut(gone.checkout_id()) {
                ids.retain(|id| id != gone.id());
                if ids.is_empty() {
                    index.by_checkout.remove(gone.checkout_id());
                }
            }
        }
        Ok(doomed.len() as u64)
    }

    async fn due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<DueAuthorizations, RepositoryError> {
        let index = lock(&self.index);
        let polls = index
            .by_next_poll
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, id)| id);
        let expired = index
            .by_expiry
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, id)| id);
        let ids: BTreeSet<&PaymentAuthorizationId> = polls.chain(expired).collect();
        let mut due: Vec<PaymentAuthorization> = ids
            .into_iter()
            .filter_map(|id| index.by_id.get(id))
            .filter(|a| a.is_due(now))
            .cloned()
            .collect();
        due.sort_by_key(PaymentAuthorization::next_poll_at);
        due.truncate(limit);
        let after = |set: &BTreeSet<(DateTime<Utc>, PaymentAuthorizationId)>| {
            set.iter().map(|(at, _)| *at).find(|at| *at > now)
        };
        let next_at = match (after(&index.by_next_poll), after(&index.by_expiry)) {
            (Some(poll), Some(expiry)) => Some(poll.min(expiry)),
            (poll, expiry) => poll.or(expiry),
        };
        Ok(DueAuthorizations { due, next_at })
    }
}

/// API keys in a map.
#[derive(Debug, Default)]
pub struct MemoryApiKeys {
    map: Mutex<HashMap<ApiKeyId, ApiKey>>,
    idempotency: Arc<MemoryIdempotency>,
}

impl MemoryApiKeys {
    /// Keys whose [`ApiKeyRepository::insert_answering`] finishes records of `idempotency`.
    pub fn sharing(idempotency: Arc<MemoryIdempotency>) -> MemoryApiKeys {
        MemoryApiKeys {
            map: Mutex::default(),
            idempotency,
        }
    }
}

#[async_trait]
impl ApiKeyRepository for MemoryApiKeys {
    async fn insert(&self, key: &mut ApiKey) -> Result<(), RepositoryError> {
        let version = key.version();
        key.set_version(1);
        insert_new(&self.map, key.id(), version, key).inspect_err(|_| key.set_version(version))
    }

    async fn insert_answering(
        &self,
        key: &mut ApiKey,
        answer: &Answer,
    ) -> Result<(), RepositoryError> {
        let version = key.version();
        key.set_version(1);
        let stored = key.clone();
        self.idempotency
            .finish_with(answer, || {
                insert_new(&self.map, stored.id(), version, &stored)
            })
            .inspect_err(|_| key.set_version(version))
    }

    async fn get(&self, id: &ApiKeyId) -> Result<ApiKey, RepositoryError> {
        lock(&self.map)
            .get(id)
            .cloned()
            .ok_or(RepositoryError::NotFound)
    }

    async fn list(&self) -> Result<Vec<ApiKey>, RepositoryError> {
        let mut keys: Vec<ApiKey> = lock(&self.map).values().cloned().collect();
        keys.sort_by_key(|k| (k.record().created_at, k.id().clone()));
        Ok(keys)
    }

    async fn update(&self, key: &mut ApiKey) -> Result<(), RepositoryError> {
        let mut map = lock(&self.map);
        let stored = map.get_mut(key.id()).ok_or(RepositoryError::NotFound)?;
        if stored.version() != key.version() {
            return Err(RepositoryError::Conflict);
        }
        let mut next = key.clone();
        next.set_version(key.version() + 1);
        if let Some(used) = stored.last_used_at() {
            next.note_use(used);
        }
        *stored = next;
        key.set_version(key.version() + 1);
        Ok(())
    }

    async fn record_uses(&self, uses: &[(ApiKeyId, DateTime<Utc>)]) -> Result<(), RepositoryError> {
        let mut map = lock(&self.map);
        for (id, at) in uses {
            if let Some(key) = map.get_mut(id) {
                key.note_use(*at);
            }
        }
        Ok(())
    }
}

/// Largest number of events the in-memory audit log keeps (oldest dropped first).
pub const MEMORY_AUDIT_CAPACITY: usize = 10_000;

/// The audit log in memory (bounded to [`MEMORY_AUDIT_CAPACITY`] events).
#[derive(Debug, Default)]
pub struct MemoryAuditLog {
    events: Mutex<std::collections::VecDeque<AuditEvent>>,
}

#[async_trait]
impl AuditLog for MemoryAuditLog {
    async fn record(&self, event: &AuditEvent) -> Result<(), RepositoryError> {
        let mut events = lock(&self.events);
        if events.len() == MEMORY_AUDIT_CAPACITY {
            events.pop_front();
        }
        events.push_back(event.clone());
        Ok(())
    }

    async fn add_refusals(&self, refusals: &[AuditEvent]) -> Result<(), RepositoryError> {
        let mut events = lock(&self.events);
        for refusal in refusals {
            // Counted rows of a minute are recent: look back only over the last few minutes.
            let counted = events
                .iter_mut()
                .rev()
                .take_while(|e| e.at >= refusal.at - chrono::Duration::minutes(5))
                .find(|e| {
                    e.source.is_some()
                        && e.source == refusal.source
                        && e.at == refusal.at
                        && e.action == refusal.action
                        && e.status == refusal.status
                });
            match counted {
                Some(event) => event.count += refusal.count,
                None => {
                    if events.len() == MEMORY_AUDIT_CAPACITY {
                        events.pop_front();
                    }
                    events.push_back(refusal.clone());
                }
            }
        }
        Ok(())
    }

    async fn query(
        &self,
        key: Option<&ApiKeyId>,
        limit: usize,
    ) -> Result<Vec<AuditEvent>, RepositoryError> {
        Ok(lock(&self.events)
            .iter()
            .rev()
            .filter(|e| key.is_none_or(|k| e.key_id.as_ref() == Some(k)))
            .take(limit)
            .cloned()
            .collect())
    }

    async fn retire(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, RepositoryError> {
        // Recorded in time order: the oldest are at the front.
        let mut events = lock(&self.events);
        let mut gone = 0;
        while gone < limit && events.front().is_some_and(|e| e.at < before) {
            events.pop_front();
            gone += 1;
        }
        Ok(gone as u64)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sacp_ports::contract::repository::{
        authorization_repository_contract, checkout_repository_contract,
    };

    use super::*;

    #[tokio::test]
    async fn memory_checkouts_pass_the_contract() {
        checkout_repository_contract(Arc::new(MemoryCheckouts::default())).await;
    }

    #[tokio::test]
    async fn memory_guardrails_pass_their_contracts() {
        use crate::memory_guard::{
            MemoryIdempotency, MemoryRateCounters, MemorySwitchBoard, MemoryTrafficLog,
        };
        use sacp_ports::contract::guard::{
            idempotency_store_contract, insert_answering_contract, insert_holding_contract,
            rate_counters_contract, switch_board_contract, traffic_log_contract,
        };
        rate_counters_contract(Arc::new(MemoryRateCounters::default())).await;
        switch_board_contract(Arc::new(MemorySwitchBoard::default())).await;
        idempotency_store_contract(Arc::new(MemoryIdempotency::default())).await;
        let shared = Arc::new(MemoryIdempotency::default());
        insert_answering_contract(
            Arc::new(MemoryCheckouts::sharing(shared.clone())),
            shared.clone(),
        )
        .await;
        insert_holding_contract(
            Arc::new(MemoryCheckouts::sharing(shared.clone())),
            Arc::new(MemoryAuthorizations::default()),
            shared,
        )
        .await;
        traffic_log_contract(Arc::new(MemoryTrafficLog::default())).await;
    }

    #[tokio::test]
    async fn memory_audit_log_passes_the_contract() {
        sacp_ports::contract::repository::audit_log_contract(Arc::new(MemoryAuditLog::default()))
            .await;
    }

    #[tokio::test]
    async fn memory_api_keys_pass_the_contract() {
        sacp_ports::contract::repository::api_key_repository_contract(Arc::new(
            MemoryApiKeys::default(),
        ))
        .await;
    }

    #[tokio::test]
    async fn ended_authorizations_leave_the_time_indexes_and_counts_stay_exact() {
        use chrono::TimeZone;
        use sacp_ports::contract::CountingRandom;
        use sacp_ports::contract::repository::sample_authorization;
        let at = |s: i64| Utc.timestamp_opt(1_800_000_000 + s, 0).single().unwrap();
        let random = CountingRandom::default();
        let repo = MemoryAuthorizations::default();
        let mut live = None;
        for n in 0..500 {
            let checkout = CheckoutId::generate(&random);
            let mut authorization = sample_authorization(&random, &checkout, at(0));
            repo.insert(&mut authorization).await.unwrap();
            if n == 250 {
                live = Some(authorization);
            } else {
                authorization.cancel(at(1)).unwrap();
                repo.update(&mut authorization).await.unwrap();
            }
        }
        let live = live.unwrap();
        assert_eq!(
            repo.live_counts().await.unwrap(),
            LiveCounts {
                pending: 1,
                ..LiveCounts::default()
            }
        );
        let (scheduled, expiring) = {
            let index = lock(&repo.index);
            (index.by_next_poll.len(), index.by_expiry.len())
        };
        assert_eq!(
            (scheduled, expiring),
            (1, 1),
            "only the live one is scheduled"
        );
        assert!(repo.due(at(4), 10).await.unwrap().due.is_empty());
        let due = repo.due(at(5), 10).await.unwrap().due;
        assert_eq!(due.iter().map(|a| a.id()).collect::<Vec<_>>(), [live.id()]);
        // Past its expiry it is due (to be expired), whenever its next poll was set for.
        let mut later = live.clone();
        later.claim(at(5)).unwrap();
        repo.update(&mut later).await.unwrap();
        assert_eq!(repo.due(at(6), 10).await.unwrap().due.len(), 0);
        assert_eq!(repo.due(later.expires_at(), 10).await.unwrap().due.len(), 1);
    }

    #[tokio::test]
    async fn memory_retirement_passes_the_contract() {
        sacp_ports::contract::repository::retirement_contract(
            Arc::new(MemoryCheckouts::default()),
            Arc::new(MemoryAuthorizations::default()),
        )
        .await;
    }

    #[tokio::test]
    async fn memory_authorizations_pass_the_contract() {
        authorization_repository_contract(
            Arc::new(MemoryCheckouts::default()),
            Arc::new(MemoryAuthorizations::default()),
        )
        .await;
    }
}
