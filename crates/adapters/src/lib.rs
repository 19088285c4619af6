//! Adapters: real implementations of the ports.
//!
//! - [`http_store::HttpStore`] and [`http_wallet::HttpWallet`]: reqwest (rustls) clients that
//!   speak the SSIM and WSIM contracts of `UPSTREAMS.md`.
//! - [`memory`], [`memory_guard`]: in-memory repositories and guardrail storage (embedded
//!   storage and tests).
//! - [`memory_step_up`]: watched step-ups in memory.
//! - [`pg`]: PostgreSQL storage of everything durable; [`pg_listen`]: the changes other
//!   replicas make, heard through `LISTEN`.
//! - [`sealing::AesGcmSealer`]: tokens sealed at rest (AES-256-GCM).
//! - [`random::OsRandom`]: the operating system's randomness for ids.

pub mod breaker;
mod http;
pub mod http_store;
pub mod http_wallet;
pub mod memory;
mod memory_compact;
pub mod memory_guard;
pub mod memory_step_up;
pub mod pg;
mod pg_batch;
mod pg_guard;
mod pg_guard_batch;
pub mod pg_listen;
mod pg_pool;
mod pg_prepared;
mod pg_reads;
mod pg_step_up;
pub mod random;
pub mod sealing;
pub mod trace;

pub use breaker::BreakerConfig;
pub use http::HttpConfig;
