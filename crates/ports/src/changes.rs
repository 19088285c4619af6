//! Changes to shared storage that every replica must hear of at once, delivered by the
//! storage adapter to whoever keeps copies or waits for due work.
//!
//! A replica caches API keys and sleeps until its next due work; another replica (or an
//! operator's command) changing a key or adding work must reach it without it asking the
//! database again and again. The storage that can tell (PostgreSQL's `LISTEN`/`NOTIFY`)
//! calls a [`ChangeListener`]; storage that lives in one process needs none, since the use
//! cases there see every change themselves.

use chrono::{DateTime, Utc};
use sacp_domain::ApiKeyId;

/// One change, as the storage announces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageChange {
    /// An API key changed (revoked, rotated, updated, disabled) or was deleted: any copy of
    /// it is stale.
    Key(ApiKeyId),
    /// A payment authorization falls due at this time (it is new, or was pulled in).
    AuthorizationDue(DateTime<Utc>),
    /// A watched step-up falls due at this time.
    StepUpDue(DateTime<Utc>),
    /// Changes may have been missed (the listening connection was lost and is back, or was
    /// just opened): drop every copy and look for due work now.
    Missed,
}

/// Receives the storage's changes. Called from the adapter's own thread or task: it must
/// not block (note the change and wake whoever acts on it).
pub trait ChangeListener: Send + Sync {
    /// One change happened.
    fn changed(&self, change: StorageChange);
}
