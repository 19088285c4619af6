//! What the gateway keeps to finish a step-up without the agent: the person's token, sealed,
//! for the step-up's lifetime only.
//!
//! On the user-token path the wallet asks the person to approve a payment above the token's
//! limits. To notice the approval and place the order without the agent polling, the gateway
//! needs the person's token until the step-up ends. It is stored only sealed
//! ([`TokenSealer`]: authenticated encryption bound to its checkout and step-up), in a
//! [`StepUpWatches`] store any replica reads, and deleted when the step-up ends or expires.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sacp_domain::CheckoutId;

use crate::repository::RepositoryError;
use crate::token::BearerToken;

/// A step-up the gateway watches on the person's behalf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepUpWatch {
    /// The checkout the step-up pays for (one watch per checkout).
    pub checkout_id: CheckoutId,
    /// The wallet's step-up id.
    pub step_up_id: String,
    /// The person's token, sealed by a [`TokenSealer`].
    pub sealed_token: Vec<u8>,
    /// Which sealing key sealed it ([`TokenSealer::key_id`]); only a replica holding that key
    /// can open it.
    pub key_id: String,
    /// The wallet user the token acts for, when introspection told (bound into the seal):
    /// the payer of the order, should the token be inactive by the time it is placed.
    pub subject: Option<String>,
    /// When the step-up ends at the latest: the watch is dropped then, token and all.
    pub until: DateTime<Utc>,
    /// When the wallet should next be asked.
    pub next_at: DateTime<Utc>,
}

/// The step-ups being watched, shared by every replica.
///
/// Error contract: [`RepositoryError::Unavailable`] when the storage cannot be reached
/// (nothing changed; retry later); [`RepositoryError::Corrupt`] when a stored watch cannot
/// be read back. Nothing else: an unknown checkout is no error.
#[async_trait]
pub trait StepUpWatches: Send + Sync {
    /// Stores the watch of a checkout, replacing any earlier one of that checkout.
    async fn put(&self, watch: &StepUpWatch) -> Result<(), RepositoryError>;

    /// Claims up to `limit` watches sealed under `key_id` that are due at `now` (`next_at`
    /// passed, `until` not yet), soonest first: each claimed watch's `next_at` becomes
    /// `claimed_until`, so that no other caller claims it before then. Watches whose `until`
    /// has passed are deleted, whatever their key, and so are stored watches that cannot be
    /// read back (they are skipped, never returned).
    async fn claim_due(
        &self,
        key_id: &str,
        now: DateTime<Utc>,
        claimed_until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<StepUpWatch>, RepositoryError>;

    /// Deletes the watch of `checkout` if it is still the one of `step_up_id` (a newer
    /// step-up of the same checkout keeps its own). Deleting what is not there is no error.
    async fn remove(&self, checkout: &CheckoutId, step_up_id: &str) -> Result<(), RepositoryError>;
}

/// Why a sealed token could not be opened or a token sealed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The sealed bytes were not made by this key for this context, or were changed.
    #[error("the sealed token cannot be opened with this key for this context")]
    Unopenable,
    /// Sealing failed (no randomness for a nonce).
    #[error("sealing failed: {0}")]
    Failed(String),
}

/// Seals tokens for storage: authenticated encryption under a key the operator configures
/// (the same on every replica), bound to a `context` (the checkout and step-up ids) so that
/// a sealed token moved to another row does not open.
///
/// Contract: `open(seal(t, c), c) == t`; opening with another context, another key or
/// changed bytes is [`SealError::Unopenable`]; sealing the same token twice gives different
/// bytes; the sealed bytes do not contain the token.
pub trait TokenSealer: Send + Sync {
    /// A short public fingerprint of the key (never the key itself).
    fn key_id(&self) -> &str;

    /// Seals `token` for `context`.
    fn seal(&self, token: &BearerToken, context: &[u8]) -> Result<Vec<u8>, SealError>;

    /// Opens what [`TokenSealer::seal`] sealed for `context`.
    fn open(&self, sealed: &[u8], context: &[u8]) -> Result<BearerToken, SealError>;
}
