//! Durable state: checkouts and payment authorizations, updated by compare-and-swap.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sacp_domain::access::ApiKey;
use sacp_domain::idempotency::Answer;
use sacp_domain::{ApiKeyId, Checkout, CheckoutId, PaymentAuthorization, PaymentAuthorizationId};

/// Why a repository call did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RepositoryError {
    /// No record with that id.
    #[error("not found")]
    NotFound,
    /// The record changed since it was read (its version moved on): reload and retry.
    #[error("concurrent update: the record changed since it was read")]
    Conflict,
    /// A record with that id already exists.
    #[error("already exists")]
    AlreadyExists,
    /// A uniqueness rule of the domain would be broken (e.g. a second active
    /// authorization for one checkout).
    #[error("constraint violated: {0}")]
    Constraint(String),
    /// The storage cannot be reached now; retry later.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A stored record cannot be read back as a valid domain value.
    #[error("corrupt record: {0}")]
    Corrupt(String),
}

/// Checkouts.
///
/// Versioning contract: [`CheckoutRepository::insert`] requires version 0 and stores
/// version 1; [`CheckoutRepository::update`] succeeds only when the stored version equals the
/// given checkout's version, stores version + 1 and sets it on the checkout. Otherwise
/// [`RepositoryError::Conflict`] and nothing changes.
#[async_trait]
pub trait CheckoutRepository: Send + Sync {
    /// Stores a new checkout. [`RepositoryError::AlreadyExists`] for a duplicate id.
    async fn insert(&self, checkout: &mut Checkout) -> Result<(), RepositoryError>;

    /// [`CheckoutRepository::insert`], and in the same transaction finishes the idempotency
    /// record of `answer.claim` (see [`crate::IdempotencyStore::finish`]): both are stored
    /// or neither, so a crash cannot leave a checkout whose creation a retry would repeat.
    async fn insert_answering(
        &self,
        checkout: &mut Checkout,
        answer: &Answer,
    ) -> Result<(), RepositoryError>;

    /// Reads a checkout. [`RepositoryError::NotFound`] for unknown ids.
    async fn get(&self, id: &CheckoutId) -> Result<Checkout, RepositoryError>;

    /// The checkout whose placed order has this store order id.
    /// [`RepositoryError::NotFound`] when no checkout of this gateway placed it.
    async fn with_order(&self, order_id: &str) -> Result<Checkout, RepositoryError>;

    /// Replaces a checkout if nobody changed it since it was read.
    /// [`RepositoryError::NotFound`], [`RepositoryError::Conflict`].
    async fn update(&self, checkout: &mut Checkout) -> Result<(), RepositoryError>;

    /// Reads checkout `id`, applies `edit` and, when `edit` returns `true`, saves the result
    /// in the same transaction as the read: no other writer comes between them. Returns the
    /// checkout as saved and `true`, or as read and `false` when `edit` declined (nothing is
    /// written then, whatever `edit` did to its copy). [`RepositoryError::NotFound`] for an
    /// unknown id. The default reads, then updates with compare-and-swap, reading again on
    /// a conflict; after five conflicts it answers [`RepositoryError::Conflict`].
    async fn read_and_update(
        &self,
        id: &CheckoutId,
        mut edit: CheckoutEdit,
    ) -> Result<(Checkout, bool), RepositoryError> {
        for _ in 0..5 {
            let read = self.get(id).await?;
            let mut edited = read.clone();
            if !edit(&mut edited) {
                return Ok((read, false));
            }
            match self.update(&mut edited).await {
                Ok(()) => return Ok((edited, true)),
                Err(RepositoryError::Conflict) => {}
                Err(other) => return Err(other),
            }
        }
        Err(RepositoryError::Conflict)
    }

    /// [`CheckoutRepository::update`], and in the same transaction finishes the idempotency
    /// record of `answer.claim`: both are stored or neither, so a retry after a crash gets
    /// the answer instead of repeating the change, at no extra transaction.
    /// [`RepositoryError::Conflict`] when the checkout changed since it was read;
    /// [`RepositoryError::NotFound`] when it is gone or the claim was lost (its lease ran
    /// out and a retry took it over). Nothing is stored on any error.
    async fn update_answering(
        &self,
        checkout: &mut Checkout,
        answer: &Answer,
    ) -> Result<(), RepositoryError>;

    /// Whether the storage answers now (for readiness probes).
    /// [`RepositoryError::Unavailable`] when it does not.
    async fn ping(&self) -> Result<(), RepositoryError>;

    /// Deletes up to `limit` checkouts that [`sacp_domain::checkout::retirable`] says may go
    /// at `cutoff` (with any authorizations of theirs the storage keeps beside them); returns
    /// how many went. Nothing else is touched.
    async fn retire(&self, cutoff: DateTime<Utc>, limit: usize) -> Result<u64, RepositoryError>;
}

/// What [`CheckoutRepository::read_and_update`] does to the checkout it read: `true` to
/// save the edited copy, `false` to write nothing.
pub type CheckoutEdit = Box<dyn FnMut(&mut Checkout) -> bool + Send>;

/// Payment authorizations, with the same versioning contract as [`CheckoutRepository`].
///
/// A checkout has at most one live (pending or approved) authorization: inserting or
/// updating into a second one is [`RepositoryError::Constraint`].
#[async_trait]
pub trait AuthorizationRepository: Send + Sync {
    /// Stores a new authorization. [`RepositoryError::AlreadyExists`] for a duplicate id;
    /// [`RepositoryError::Constraint`] when its checkout already has a live one.
    async fn insert(&self, authorization: &mut PaymentAuthorization)
    -> Result<(), RepositoryError>;

    /// The live (pending or approved) authorization of a checkout, if any.
    async fn active_for_checkout(
        &self,
        checkout: &CheckoutId,
    ) -> Result<Option<PaymentAuthorization>, RepositoryError>;

    /// The checkout's most recent authorization (by creation time), live or ended; `None`
    /// if it never had one.
    async fn latest_for_checkout(
        &self,
        checkout: &CheckoutId,
    ) -> Result<Option<PaymentAuthorization>, RepositoryError>;

    /// Starts a payment: inserts `authorization` and saves `checkout` (compare-and-swap; the
    /// caller has put the authorization's hold on it) with, when given, the request's
    /// idempotent `answer` — in one transaction, so that no reader ever sees an authorization
    /// its checkout does not hold, or a held checkout without its answer.
    /// [`RepositoryError::Constraint`] when the checkout already has a live authorization;
    /// [`RepositoryError::Conflict`] when the checkout changed since it was read;
    /// [`RepositoryError::NotFound`] when it is gone or the answer's claim was lost. On any
    /// error nothing live is left: no authorization pending, the checkout and the claim as
    /// they were. The default writes in turn through `checkouts` and, when the checkout is
    /// refused, ends the authorization it inserted as cancelled; storage that keeps both
    /// (and is wired as both) writes all in one transaction.
    async fn insert_holding(
        &self,
        authorization: &mut PaymentAuthorization,
        checkout: &mut Checkout,
        answer: Option<&Answer>,
        checkouts: &dyn CheckoutRepository,
    ) -> Result<(), RepositoryError> {
        self.insert(authorization).await?;
        let held = match answer {
            Some(answer) => checkouts.update_answering(checkout, answer).await,
            None => checkouts.update(checkout).await,
        };
        if let Err(refused) = held {
            let mut ended = authorization.clone();
            if ended.cancel(authorization.created_at()).is_ok() {
                self.update(&mut ended).await?;
            }
            return Err(refused);
        }
        Ok(())
    }

    /// Reads an authorization. [`RepositoryError::NotFound`] for unknown ids.
    async fn get(
        &self,
        id: &PaymentAuthorizationId,
    ) -> Result<PaymentAuthorization, RepositoryError>;

    /// Replaces an authorization if nobody changed it since it was read.
    async fn update(&self, authorization: &mut PaymentAuthorization)
    -> Result<(), RepositoryError>;

    /// [`AuthorizationRepository::update`] of several authorizations at once (the driver's
    /// claims of one scan), each with its own compare-and-swap: one result per
    /// authorization, in order, and a conflict on one changes nothing of the others. Storage
    /// with transactions writes them in one; the default updates one by one.
    async fn update_all(
        &self,
        authorizations: &mut [PaymentAuthorization],
    ) -> Vec<Result<(), RepositoryError>> {
        let mut results = Vec::with_capacity(authorizations.len());
        for authorization in authorizations {
            results.push(self.update(authorization).await);
        }
        results
    }

    /// An authorization and its checkout, read together — what a payment-status poll
    /// needs. [`RepositoryError::NotFound`] when the authorization is unknown. The default
    /// reads the authorization, then its checkout from `checkouts`; storage that keeps both
    /// (and is wired as both) answers in one read of its own tables.
    async fn with_checkout(
        &self,
        id: &PaymentAuthorizationId,
        checkouts: &dyn CheckoutRepository,
    ) -> Result<(PaymentAuthorization, Checkout), RepositoryError> {
        let authorization = self.get(id).await?;
        let checkout = checkouts.get(authorization.checkout_id()).await?;
        Ok((authorization, checkout))
    }

    /// Writes `authorization` (compare-and-swap) and, once written, reads its checkout
    /// from `checkouts` — what the driver does when an approval arrives. The outer result is
    /// the write's; the inner one the read's. The default does the two in turn; storage that
    /// keeps both (and is wired as both) does them in one transaction.
    async fn update_reading_checkout(
        &self,
        authorization: &mut PaymentAuthorization,
        checkouts: &dyn CheckoutRepository,
    ) -> Result<Result<Checkout, RepositoryError>, RepositoryError> {
        self.update(authorization).await?;
        Ok(checkouts.get(authorization.checkout_id()).await)
    }

    /// The two writes that end a payment with its checkout's change: `checkout` (a
    /// compare-and-swap through `checkouts`), then, only if that was written,
    /// `authorization` (a compare-and-swap of its own). Returns the checkout's result and,
    /// when it was written, the authorization's: a refused checkout writes nothing; a
    /// refused authorization leaves the checkout written. The default makes the two writes
    /// in turn; storage that keeps both (and is wired as both) commits them together.
    async fn update_after_checkout(
        &self,
        checkout: &mut Checkout,
        authorization: &mut PaymentAuthorization,
        checkouts: &dyn CheckoutRepository,
    ) -> (
        Result<(), RepositoryError>,
        Option<Result<(), RepositoryError>>,
    ) {
        if let Err(refused) = checkouts.update(checkout).await {
            return (Err(refused), None);
        }
        (Ok(()), Some(self.update(authorization).await))
    }

    /// Deletes up to `limit` authorizations that ended (no longer pending, approved or
    /// charging) and were last changed before `cutoff`; returns how many went. Live ones are
    /// never touched.
    async fn retire(&self, cutoff: DateTime<Utc>, limit: usize) -> Result<u64, RepositoryError>;

    /// How many authorizations are live now, by status (for the operator's gauges; read
    /// when metrics are scraped, not on the request path).
    async fn live_counts(&self) -> Result<LiveCounts, RepositoryError>;

    /// Up to `limit` authorizations with work due at `now` (see
    /// [`PaymentAuthorization::is_due`]), soonest first, and when the next live one falls
    /// due after `now` — what the driver sleeps until when nothing else wakes it.
    async fn due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<DueAuthorizations, RepositoryError>;
}

/// What [`AuthorizationRepository::due`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DueAuthorizations {
    /// Due at the time asked, soonest first (at most the limit asked).
    pub due: Vec<PaymentAuthorization>,
    /// The earliest time after the time asked at which a live authorization falls due (its
    /// next poll or attempt, or a pending one's expiry); `None` when none is live. It may be
    /// earlier than that (waking early costs one empty scan), never later. Authorizations due
    /// now but left out by the limit are not reflected here: a full batch means "ask again".
    pub next_at: Option<DateTime<Utc>>,
}

/// Live payment authorizations by status ([`AuthorizationRepository::live_counts`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LiveCounts {
    /// Waiting for the person.
    pub pending: u64,
    /// Approved, the order not yet being placed.
    pub approved: u64,
    /// An attempt to place the order holds the lease.
    pub charging: u64,
}

/// Integration API keys, with the versioning contract of [`CheckoutRepository`].
///
/// Reads must see every committed write at once (no caching beyond one request), so that a
/// revocation takes effect on every replica immediately.
#[async_trait]
pub trait ApiKeyRepository: Send + Sync {
    /// Stores a new key. [`RepositoryError::AlreadyExists`] for a duplicate id.
    async fn insert(&self, key: &mut ApiKey) -> Result<(), RepositoryError>;

    /// [`ApiKeyRepository::insert`] and the idempotency answer in one transaction, like
    /// [`CheckoutRepository::insert_answering`].
    async fn insert_answering(
        &self,
        key: &mut ApiKey,
        answer: &Answer,
    ) -> Result<(), RepositoryError>;

    /// Reads a key. [`RepositoryError::NotFound`] for unknown ids.
    async fn get(&self, id: &ApiKeyId) -> Result<ApiKey, RepositoryError>;

    /// Every key, oldest first.
    async fn list(&self) -> Result<Vec<ApiKey>, RepositoryError>;

    /// Replaces a key if nobody changed it since it was read. Its `last_used_at` is kept
    /// if the stored one is later (uses are recorded apart, see
    /// [`ApiKeyRepository::record_uses`]).
    async fn update(&self, key: &mut ApiKey) -> Result<(), RepositoryError>;

    /// Records when keys were used: each key's `last_used_at` becomes the later of the
    /// stored time and the given one. The version does not change (a concurrent operator
    /// change is neither disturbed nor disturbs this); unknown ids are skipped.
    async fn record_uses(&self, uses: &[(ApiKeyId, DateTime<Utc>)]) -> Result<(), RepositoryError>;
}

/// The durable audit log.
#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Appends an event. [`RepositoryError::Unavailable`] when it cannot be stored.
    async fn record(&self, event: &sacp_domain::audit::AuditEvent) -> Result<(), RepositoryError>;

    /// Adds counted refusals (events with a `source`, `at` on a minute): an event with the
    /// same `at`, source, action and status as a stored one adds its `count` to it (on every
    /// replica), any other is appended. [`RepositoryError::Unavailable`] when they cannot be
    /// stored; nothing is then added.
    async fn add_refusals(
        &self,
        events: &[sacp_domain::audit::AuditEvent],
    ) -> Result<(), RepositoryError>;

    /// Up to `limit` events, newest first, optionally of one key only.
    async fn query(
        &self,
        key: Option<&ApiKeyId>,
        limit: usize,
    ) -> Result<Vec<sacp_domain::audit::AuditEvent>, RepositoryError>;

    /// Deletes up to `limit` events recorded before `before`; returns how many went.
    async fn retire(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, RepositoryError>;
}
