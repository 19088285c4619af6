//! Ports of the SACP gateway: the traits the application needs from the outside world.
//!
//! - [`store::Store`]: the merchant's store (SSIM): catalog, checkout sessions, orders.
//! - [`wallet::Wallet`]: the person's wallet (WSIM): device authorization, tokens,
//!   introspection, payment tokens, step-up.
//! - [`repository`]: durable state of checkouts and payment authorizations, with
//!   compare-and-swap on version.
//! - [`step_up`]: step-ups watched on the person's behalf, their tokens sealed at rest.
//! - [`changes`]: changes to shared storage other replicas must hear of at once.
//! - [`guard`]: rate-limit counters, kill switches, idempotency records, traffic counts.
//! - [`telemetry`]: the names and labels of the metrics every layer records.
//! - [`clock::Clock`]: the current time, so that use cases never read the clock directly.
//!
//! With the `contract` feature, [`contract`] holds the suites every implementation must pass.

pub mod changes;
pub mod clock;
pub mod error;
pub mod guard;
pub mod repository;
pub mod step_up;
pub mod store;
pub mod telemetry;
pub mod token;
pub mod wallet;

#[cfg(feature = "contract")]
pub mod contract;

pub use changes::{ChangeListener, StorageChange};
pub use clock::Clock;
pub use error::UpstreamError;
pub use guard::{IdempotencyStore, RateCounters, SwitchBoard, TrafficLog};
pub use repository::{
    ApiKeyRepository, AuditLog, AuthorizationRepository, CheckoutEdit, CheckoutRepository,
    DueAuthorizations, LiveCounts, RepositoryError,
};
pub use step_up::{StepUpWatch, StepUpWatches, TokenSealer};
pub use store::Store;
pub use token::BearerToken;
pub use wallet::Wallet;
