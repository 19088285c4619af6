//! Integration API keys: authenticate requests, and the operator's key management (shared by
//! the admin API and the `sacp-gateway keys` commands).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use sacp_domain::access::{
    ApiKey, ApiKeySecret, AuthFailure, KeyLimits, NewKey, Scope, key_bits_of,
};
use sacp_domain::ids::ID_RANDOM_BYTES;
use sacp_domain::{ApiKeyId, RandomSource};
use sacp_ports::{ApiKeyRepository, Clock, RepositoryError};
use tokio::sync::watch;

use super::refresh::{Serve, serve_at};
use super::{Answering, AppError, CAS_ATTEMPTS, LimitSettings};
use crate::limits::LimitPlan;

/// Who is calling: the integration behind an authenticated key.
///
/// Made once per cached copy of the key (see [`Keys::authenticate`]) and shared by the
/// requests it admits: what they need from the key is computed here, never per request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The key.
    pub key_id: ApiKeyId,
    /// The key id's bits ([`ApiKeyId::to_bits`]): its traffic is counted by them, and
    /// decoding them once per cached copy spares every request doing it.
    pub key_bits: [u8; ID_RANDOM_BYTES],
    /// Its organisation.
    pub org: String,
    /// What it may do.
    pub scopes: BTreeSet<Scope>,
    /// Its rate limit and daily quota.
    pub limits: KeyLimits,
    /// `org:<org>`: whose share of the in-flight requests and organisation limit it uses.
    pub tenant: Arc<str>,
    /// Its rate limits and quotas, per operation.
    pub plan: LimitPlan,
}

impl Principal {
    /// Checks the principal holds every scope in `needed`.
    pub fn require(&self, needed: &[Scope]) -> Result<(), AppError> {
        match needed.iter().find(|scope| !self.scopes.contains(scope)) {
            Some(missing) => Err(AppError::MissingScope(*missing)),
            None => Ok(()),
        }
    }
}

/// Who a request or tool call was admitted as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// Nobody had to be: a public route.
    Public,
    /// An integration, by its key (shared with the key's cached copy).
    Key(Arc<Principal>),
    /// The operator, by the admin token.
    Operator,
    /// A caller without a key, admitted by the anonymous tier (catalog reads only).
    Anonymous(std::net::IpAddr),
}

impl Caller {
    /// The integration's principal, when the caller is one.
    pub fn principal(&self) -> Option<&Principal> {
        match self {
            Caller::Key(principal) => Some(principal),
            _ => None,
        }
    }
}

/// Every scope but `admin`: what the bootstrap key gets.
pub fn integration_scopes() -> BTreeSet<Scope> {
    Scope::ALL
        .into_iter()
        .filter(|s| *s != Scope::Admin)
        .collect()
}

/// Name of the key `SACP_BOOTSTRAP_API_KEY` creates.
pub const BOOTSTRAP_KEY_NAME: &str = "bootstrap";

/// Longest rotation grace: 30 days.
pub const MAX_GRACE_SECS: i64 = 30 * 24 * 3600;

/// A change an operator makes to a key; `None` leaves a part as it is.
#[derive(Debug, Clone, Default)]
pub struct KeyChanges {
    /// New scopes.
    pub scopes: Option<BTreeSet<Scope>>,
    /// New per-minute limit.
    pub requests_per_minute: Option<u32>,
    /// New daily quota.
    pub daily_quota: Option<u32>,
    /// Switch the key off (or back on).
    pub disabled: Option<bool>,
}

/// How stale a key's recorded last use may get before a use is written again: uses are
/// recorded at most once a minute per key, in batches.
const LAST_USE_RESOLUTION: Duration = Duration::minutes(1);

/// Longest a key is served from memory without being read again. Notifications
/// ([`Keys::forget`]) drop a changed key at once; this bound keeps the promise that a
/// revocation is refused everywhere within a second even when they cannot arrive (the
/// listening connection silently dead, a change made by hand that no trigger saw). Under load
/// it costs one read per key per second per replica; an idle key costs nothing.
pub const KEY_CACHE_MAX_AGE: Duration = Duration::seconds(1);

/// Most keys held in memory; past it the cache starts afresh (only keys that exist are
/// cached, so this bounds what a flood of distinct valid keys can hold).
const KEY_CACHE_CAPACITY: usize = 100_000;

/// How long before [`KEY_CACHE_MAX_AGE`] a busy key is read again by one request while
/// the others are still served (see [`crate::refresh`]): long enough for a read that waits
/// for a connection of a busy pool.
const KEY_REFRESH_AHEAD: Duration = Duration::milliseconds(500);

/// How recently a read of a key must have started for a request that needs the same key to
/// wait for it rather than read it too. Under load a read waits for a connection of a busy
/// pool; without this, every request that finds the copy past its age reads on its own (in
/// the checkout benchmark, about 60 reads of one key a second instead of one). A request
/// that joins gets the key as of at most this much before it arrived, well inside
/// [`KEY_CACHE_MAX_AGE`].
const KEY_READ_JOIN: Duration = Duration::milliseconds(250);

/// A read of a key in progress, which requests needing the key join (see [`KEY_READ_JOIN`]).
struct Reading {
    started: DateTime<Utc>,
    /// The cache's generation when it started: a change since makes it unfit to join.
    generation: u64,
    /// Turns `true` when the read ended, however (its copy is then cached if it was read).
    done: watch::Receiver<bool>,
}

/// Ends a [`Reading`] when the read ends or is given up (its request went away): joined
/// requests wake, and read on their own if no copy was cached.
struct ReadingGuard<'a> {
    keys: &'a Keys,
    bits: [u8; ID_RANDOM_BYTES],
    done: watch::Sender<bool>,
    /// Tells this read's entry from a later one's.
    mine: watch::Receiver<bool>,
}

impl Drop for ReadingGuard<'_> {
    fn drop(&mut self) {
        let mut cache = self.keys.cache();
        if cache
            .reading
            .get(&self.bits)
            .is_some_and(|reading| self.mine.same_channel(&reading.done))
        {
            cache.reading.remove(&self.bits);
        }
        drop(cache);
        self.done.send_replace(true);
    }
}

/// A key read from storage: when, and whether a request is reading it again.
struct CachedKey {
    key: Arc<ApiKey>,
    /// The principal it authenticates as, made when it was read.
    principal: Arc<Principal>,
    /// Its last use as recorded here (uses are noted at most once a minute).
    last_used_at: Option<DateTime<Utc>>,
    /// When its next use is noted (see [`next_use_note`]).
    note_use_from: Option<DateTime<Utc>>,
    read_at: DateTime<Utc>,
    /// From when one request reads it again ([`KEY_REFRESH_AHEAD`] before it is stale).
    refresh_from: DateTime<Utc>,
    /// When it is no longer served ([`KEY_CACHE_MAX_AGE`] after it was read).
    stale_at: DateTime<Utc>,
    refreshing: bool,
}

/// From when a use of a key last used at `last` is noted ([`LAST_USE_RESOLUTION`] later);
/// `None` for a key never used (its first use is noted).
fn next_use_note(last: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    last.map(|last| {
        last.checked_add_signed(LAST_USE_RESOLUTION)
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    })
}

/// Keys read from storage, by their id's bits ([`ApiKeyId::to_bits`]): a presented secret
/// is looked up without an id being built. Hashed with foldhash, not SipHash: only ids the
/// gateway made and storage holds are ever inserted, so a caller choosing ids cannot
/// crowd a bucket, and each request looks its key up.
#[derive(Default)]
struct KeyCache {
    entries: foldhash::HashMap<[u8; ID_RANDOM_BYTES], CachedKey>,
    /// Moves on every forget: a read that started before a change must not put the key
    /// it read (perhaps from before the change) back into the cache.
    generation: u64,
    /// Reads in progress, by key.
    reading: HashMap<[u8; ID_RANDOM_BYTES], Reading>,
}

/// What the cache holds for one key.
struct Found {
    key: Arc<ApiKey>,
    principal: Arc<Principal>,
    /// See [`next_use_note`].
    note_use_from: Option<DateTime<Utc>>,
}

/// Key use cases: they need only the key repository, a clock and randomness.
#[derive(Clone)]
pub struct Keys {
    repo: Arc<dyn ApiKeyRepository>,
    clock: Arc<dyn Clock>,
    random: Arc<dyn RandomSource>,
    /// Uses not written yet, by key (the first use of a minute).
    pending_uses: Arc<Mutex<HashMap<ApiKeyId, DateTime<Utc>>>>,
    cache: Arc<Mutex<KeyCache>>,
    /// The gateway-wide limits, for each key's [`LimitPlan`].
    limits: LimitSettings,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys")
    }
}

fn not_found(error: RepositoryError) -> AppError {
    match error {
        RepositoryError::NotFound => AppError::NotFound("API key"),
        other => AppError::Storage(other),
    }
}

impl Keys {
    /// Key use cases over these ports; the keys' limit plans use the gateway-wide `limits`.
    pub fn new(
        repo: Arc<dyn ApiKeyRepository>,
        clock: Arc<dyn Clock>,
        random: Arc<dyn RandomSource>,
        limits: LimitSettings,
    ) -> Keys {
        Keys {
            repo,
            clock,
            random,
            pending_uses: Arc::default(),
            cache: Arc::default(),
            limits,
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, KeyCache> {
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Drops the cached copy of a key that changed (a change notification, or a change made
    /// here).
    pub fn forget(&self, id: &ApiKeyId) {
        let mut cache = self.cache();
        cache.generation = cache.generation.wrapping_add(1);
        cache.entries.remove(&id.to_bits());
    }

    /// Drops every cached key (changes may have been missed).
    pub fn forget_all(&self) {
        let mut cache = self.cache();
        cache.generation = cache.generation.wrapping_add(1);
        cache.entries.clear();
    }

    /// The principal a key authenticates as: made once per copy read from storage.
    fn principal_of(&self, key: &ApiKey) -> Principal {
        let tenant: Arc<str> = format!("org:{}", key.org()).into();
        Principal {
            key_id: key.id().clone(),
            key_bits: key.id().to_bits(),
            org: key.org().to_owned(),
            scopes: key.scopes().clone(),
            limits: key.limits(),
            plan: LimitPlan::new(key.id(), tenant.clone(), key.limits(), self.limits),
            tenant,
        }
    }

    /// The key whose id has `bits`, from memory when it was read less than
    /// [`KEY_CACHE_MAX_AGE`] ago and has not changed since, else from storage (then kept,
    /// with the principal it authenticates as).
    async fn cached(
        &self,
        bits: [u8; ID_RANDOM_BYTES],
        now: DateTime<Utc>,
    ) -> Result<Found, RepositoryError> {
        let joined = {
            let mut cache = self.cache();
            if let Some(cached) = cache.entries.get_mut(&bits)
                && cached.read_at <= now
                && serve_at(
                    now,
                    cached.refresh_from,
                    cached.stale_at,
                    &mut cached.refreshing,
                ) == Serve::Cached
            {
                return Ok(Found {
                    key: cached.key.clone(),
                    principal: cached.principal.clone(),
                    note_use_from: cached.note_use_from,
                });
            }
            let generation = cache.generation;
            cache.reading.get(&bits).and_then(|reading| {
                (reading.generation == generation
                    && reading.started <= now
                    && now - reading.started < KEY_READ_JOIN)
                    .then(|| (reading.done.clone(), reading.started, generation))
            })
        };
        if let Some((mut done, started, generation)) = joined
            && done.wait_for(|done| *done).await.is_ok()
        {
            let cache = self.cache();
            if let Some(cached) = cache.entries.get(&bits)
                && cache.generation == generation
                && cached.read_at >= started
            {
                return Ok(Found {
                    key: cached.key.clone(),
                    principal: cached.principal.clone(),
                    note_use_from: cached.note_use_from,
                });
            }
        }
        self.read(bits, now).await
    }

    /// Reads the key whose id has `bits` from storage and caches it, as the [`Reading`]
    /// other requests for it may join.
    async fn read(
        &self,
        bits: [u8; ID_RANDOM_BYTES],
        now: DateTime<Utc>,
    ) -> Result<Found, RepositoryError> {
        let (done, receiver) = watch::channel(false);
        let generation = {
            let mut cache = self.cache();
            let generation = cache.generation;
            let reading = Reading {
                started: now,
                generation,
                done: receiver.clone(),
            };
            cache.reading.insert(bits, reading);
            generation
        };
        let _reading = ReadingGuard {
            keys: self,
            bits,
            done,
            mine: receiver,
        };
        let key = Arc::new(self.repo.get(&ApiKeyId::from_bits(bits)).await?);
        let principal = Arc::new(self.principal_of(&key));
        let last_used_at = key.last_used_at();
        let mut cache = self.cache();
        if cache.generation == generation {
            if cache.entries.len() >= KEY_CACHE_CAPACITY {
                cache.entries.clear();
            }
            let stale_at = now
                .checked_add_signed(KEY_CACHE_MAX_AGE)
                .unwrap_or(DateTime::<Utc>::MAX_UTC);
            let cached = CachedKey {
                key: key.clone(),
                principal: principal.clone(),
                last_used_at,
                note_use_from: next_use_note(last_used_at),
                read_at: now,
                refresh_from: stale_at
                    .checked_sub_signed(KEY_REFRESH_AHEAD)
                    .unwrap_or(stale_at),
                stale_at,
                refreshing: false,
            };
            cache.entries.insert(bits, cached);
        }
        Ok(Found {
            key,
            principal,
            note_use_from: next_use_note(last_used_at),
        })
    }

    /// The current time.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Authenticates the secret of an `X-API-Key` header. The key is served from memory (see
    /// [`Keys::cached`]); a change to it anywhere drops that copy at once, through
    /// [`Keys::forget`], so a revocation takes effect on every replica within the change
    /// listener's delay. A key served from memory is authenticated without allocating: its
    /// principal is the copy's own.
    pub async fn authenticate(&self, presented: Option<&str>) -> Result<Arc<Principal>, AppError> {
        let presented = presented
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .ok_or(AppError::ApiKeyRequired)?;
        let bits = key_bits_of(presented).ok_or(AppError::ApiKeyRefused(AuthFailure::Invalid))?;
        let now = self.clock.now();
        let found = self.cached(bits, now).await.map_err(|e| match e {
            RepositoryError::NotFound => AppError::ApiKeyRefused(AuthFailure::Invalid),
            other => AppError::Storage(other),
        })?;
        found
            .key
            .authenticate(presented, now)
            .map_err(AppError::ApiKeyRefused)?;
        if found.note_use_from.is_none_or(|from| now >= from) {
            self.uses().entry(found.key.id().clone()).or_insert(now);
            // The cached copy learns of the use too, or every request until it is read
            // again would note one.
            if let Some(cached) = self.cache().entries.get_mut(&bits)
                && cached.last_used_at.is_none_or(|last| last < now)
            {
                cached.last_used_at = Some(now);
                cached.note_use_from = next_use_note(Some(now));
            }
        }
        Ok(found.principal)
    }

    fn uses(&self) -> std::sync::MutexGuard<'_, HashMap<ApiKeyId, DateTime<Utc>>> {
        self.pending_uses
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Writes the keys' last uses noted since the last call (the server calls this every
    /// second; each key is written at most once a minute).
    pub async fn flush_uses(&self) -> Result<(), AppError> {
        let uses: Vec<(ApiKeyId, DateTime<Utc>)> = self.uses().drain().collect();
        if uses.is_empty() {
            return Ok(());
        }
        if let Err(error) = self.repo.record_uses(&uses).await {
            let mut pending = self.uses();
            for (id, at) in uses {
                pending.entry(id).or_insert(at);
            }
            return Err(error.into());
        }
        Ok(())
    }

    /// Creates a key; the secret is returned once and never stored.
    ///
    /// With `answering`, the idempotent answer (without the secret) is stored in the same
    /// transaction as the key.
    pub async fn create(
        &self,
        new: NewKey,
        answering: Option<Answering<'_, ApiKey>>,
    ) -> Result<(ApiKey, ApiKeySecret), AppError> {
        let now = self.clock.now();
        let (mut key, secret) = ApiKey::create(new, now, self.random.as_ref())?;
        match answering {
            Some(answering) => {
                let answer = answering.answer(&key, now);
                self.repo
                    .insert_answering(&mut key, &answer)
                    .await
                    .map_err(super::lost_claim)?;
            }
            None => self.repo.insert(&mut key).await?,
        }
        Ok((key, secret))
    }

    /// Every key, oldest first.
    pub async fn list(&self) -> Result<Vec<ApiKey>, AppError> {
        Ok(self.repo.list().await?)
    }

    /// One key.
    pub async fn get(&self, id: &str) -> Result<ApiKey, AppError> {
        let id = ApiKeyId::parse(id).map_err(|_| AppError::NotFound("API key"))?;
        self.repo.get(&id).await.map_err(not_found)
    }

    /// Loads a key, applies `change`, saves with compare-and-swap (retrying on conflict).
    async fn modify<T>(
        &self,
        id: &str,
        mut change: impl FnMut(&mut ApiKey, DateTime<Utc>) -> Result<T, AppError>,
    ) -> Result<(ApiKey, T), AppError> {
        for _ in 0..CAS_ATTEMPTS {
            let mut key = self.get(id).await?;
            let value = change(&mut key, self.clock.now())?;
            let updated = self.repo.update(&mut key).await;
            self.forget(key.id());
            match updated {
                Ok(()) => return Ok((key, value)),
                Err(RepositoryError::Conflict) => continue,
                Err(other) => return Err(AppError::Storage(other)),
            }
        }
        Err(AppError::Busy)
    }

    /// Changes scopes, limits or the disable switch. Refused (`KeyEnded`) once the key is
    /// revoked or expired.
    pub async fn update(&self, id: &str, changes: &KeyChanges) -> Result<ApiKey, AppError> {
        let (key, ()) = self
            .modify(id, |key, now| {
                key.ensure_changeable(now).map_err(AppError::KeyEnded)?;
                let limits = (changes.requests_per_minute.is_some()
                    || changes.daily_quota.is_some())
                .then(|| KeyLimits {
                    requests_per_minute: changes
                        .requests_per_minute
                        .unwrap_or(key.limits().requests_per_minute),
                    daily_quota: changes.daily_quota.unwrap_or(key.limits().daily_quota),
                });
                Ok(key.update(changes.scopes.clone(), limits, changes.disabled)?)
            })
            .await?;
        Ok(key)
    }

    /// Issues a new secret; the old one keeps working for `grace_seconds` (0 to 30 days). A
    /// key keeps one previous secret: rotating again ends the earlier one's grace at once.
    /// Refused (`KeyEnded`) once the key is revoked or expired.
    pub async fn rotate(
        &self,
        id: &str,
        grace_seconds: i64,
    ) -> Result<(ApiKey, ApiKeySecret), AppError> {
        if !(0..=MAX_GRACE_SECS).contains(&grace_seconds) {
            let mut errors = sacp_domain::ValidationErrors::default();
            errors.push(
                "grace_seconds",
                "out_of_range",
                format!("must be between 0 and {MAX_GRACE_SECS}"),
            );
            return Err(errors.into());
        }
        self.modify(id, |key, now| {
            key.ensure_changeable(now).map_err(AppError::KeyEnded)?;
            key.rotate(Duration::seconds(grace_seconds), now, self.random.as_ref())
                .map_err(AppError::ApiKeyRefused)
        })
        .await
    }

    /// Revokes a key at once (idempotent).
    pub async fn revoke(&self, id: &str) -> Result<ApiKey, AppError> {
        let (key, ()) = self
            .modify(id, |key, now| {
                key.revoke(now);
                Ok(())
            })
            .await?;
        Ok(key)
    }

    /// Makes sure the operator's bootstrap secret works: creates its key (every scope but
    /// `admin`, the read tier's limits) unless it exists. Safe when several replicas start
    /// together.
    pub async fn ensure_bootstrap(&self, secret: &str) -> Result<ApiKey, AppError> {
        let new = NewKey {
            name: BOOTSTRAP_KEY_NAME.into(),
            org: "default".into(),
            scopes: integration_scopes(),
            limits: KeyLimits::READ_TIER,
            expires_at: None,
        };
        let mut key = ApiKey::with_operator_secret(new, secret, self.clock.now())?;
        match self.repo.insert(&mut key).await {
            Ok(()) => Ok(key),
            Err(RepositoryError::AlreadyExists) => Ok(self.repo.get(key.id()).await?),
            Err(other) => Err(AppError::Storage(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;
    use futures_util::future::join_all;
    use sacp_domain::idempotency::Answer;
    use sacp_ports::contract::CountingRandom;

    use super::*;

    /// One key, read slowly (as from a busy pool), reads counted.
    struct SlowKeys {
        key: Mutex<ApiKey>,
        reads: AtomicUsize,
    }

    #[async_trait]
    impl ApiKeyRepository for SlowKeys {
        async fn insert(&self, _key: &mut ApiKey) -> Result<(), RepositoryError> {
            Err(RepositoryError::AlreadyExists)
        }
        async fn insert_answering(
            &self,
            _key: &mut ApiKey,
            _answer: &Answer,
        ) -> Result<(), RepositoryError> {
            Err(RepositoryError::AlreadyExists)
        }
        async fn get(&self, _id: &ApiKeyId) -> Result<ApiKey, RepositoryError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            Ok(self.key.lock().unwrap().clone())
        }
        async fn list(&self) -> Result<Vec<ApiKey>, RepositoryError> {
            Ok(vec![self.key.lock().unwrap().clone()])
        }
        async fn update(&self, _key: &mut ApiKey) -> Result<(), RepositoryError> {
            Err(RepositoryError::Conflict)
        }
        async fn record_uses(
            &self,
            _uses: &[(ApiKeyId, DateTime<Utc>)],
        ) -> Result<(), RepositoryError> {
            Ok(())
        }
    }

    struct Now(Mutex<DateTime<Utc>>);

    impl Clock for Now {
        fn now(&self) -> DateTime<Utc> {
            *self.0.lock().unwrap()
        }
    }

    fn keys_with_one() -> (Keys, Arc<SlowKeys>, Arc<Now>, String) {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let random = Arc::new(CountingRandom::default());
        let new = NewKey {
            name: "agent".into(),
            org: "acme".into(),
            scopes: integration_scopes(),
            limits: KeyLimits {
                requests_per_minute: 600,
                daily_quota: 100_000,
            },
            expires_at: None,
        };
        let (key, secret) = ApiKey::create(new, now, random.as_ref()).unwrap();
        let repo = Arc::new(SlowKeys {
            key: Mutex::new(key),
            reads: AtomicUsize::new(0),
        });
        let clock = Arc::new(Now(Mutex::new(now)));
        let keys = Keys::new(
            repo.clone(),
            clock.clone(),
            random,
            LimitSettings::default(),
        );
        (keys, repo, clock, secret.expose().to_owned())
    }

    #[tokio::test]
    async fn requests_that_find_a_key_expired_share_one_read_of_it() {
        let (keys, repo, clock, secret) = keys_with_one();
        let many = (0..50).map(|_| keys.authenticate(Some(&secret)));
        for answer in join_all(many).await {
            assert!(answer.is_ok());
        }
        assert_eq!(
            repo.reads.load(Ordering::SeqCst),
            1,
            "one read for 50 requests"
        );

        // Past the copy's age everyone needs the key again: still one read between them.
        *clock.0.lock().unwrap() += KEY_CACHE_MAX_AGE + Duration::milliseconds(1);
        let many = (0..50).map(|_| keys.authenticate(Some(&secret)));
        for answer in join_all(many).await {
            assert!(answer.is_ok());
        }
        assert_eq!(repo.reads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_change_heard_during_a_read_makes_the_waiting_requests_read_again() {
        let (keys, repo, _clock, secret) = keys_with_one();
        let first = keys.authenticate(Some(&secret));
        let second = async {
            // Joins the first request's read, then hears that the key changed.
            tokio::task::yield_now().await;
            let waiting = keys.authenticate(Some(&secret));
            let forget = async {
                tokio::task::yield_now().await;
                keys.forget_all();
            };
            tokio::join!(waiting, forget).0
        };
        let (first, second) = tokio::join!(first, second);
        assert!(first.is_ok() && second.is_ok());
        assert_eq!(
            repo.reads.load(Ordering::SeqCst),
            2,
            "a read from before the change is not shared after it"
        );
    }

    #[tokio::test]
    async fn a_read_given_up_lets_the_requests_waiting_for_it_read() {
        let (keys, repo, _clock, secret) = keys_with_one();
        let abandoned = tokio::time::timeout(
            std::time::Duration::from_millis(10),
            keys.authenticate(Some(&secret)),
        );
        let waiting = async {
            tokio::task::yield_now().await;
            keys.authenticate(Some(&secret)).await
        };
        let (abandoned, waiting) = tokio::join!(abandoned, waiting);
        assert!(abandoned.is_err(), "the first request went away mid-read");
        assert!(
            waiting.is_ok(),
            "the one waiting for it read the key itself"
        );
        assert_eq!(repo.reads.load(Ordering::SeqCst), 2);
    }
}
