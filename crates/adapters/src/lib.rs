//! Adapters: real implementations of the ports.
//!
//! - [`http_store::HttpStore`] and [`http_wallet::HttpWallet`]: reqwest (rustls) clients that
//!   speak the SSIM and WSIM contracts of `UPSTREAMS.md`.
//! - [`memory`], [`memory_guard`]: in-memory repositories and guardrail storage (embedded
//!   storage and tests).
//! - [`pg`]: PostgreSQL storage of everything durable.
//! - [`random::OsRandom`]: the operating system's randomness for ids.

pub mod breaker;
mod http;
pub mod http_store;
pub mod http_wallet;
pub mod memory;
mod memory_compact;
pub mod memory_guard;
pub mod pg;
mod pg_batch;
mod pg_guard;
pub mod random;

pub use breaker::BreakerConfig;
pub use http::HttpConfig;
