//! Adapters: real implementations of the ports.
//!
//! - [`http_store::HttpStore`] and [`http_wallet::HttpWallet`]: reqwest (rustls) clients that
//!   speak the SSIM and WSIM contracts of `UPSTREAMS.md`.
//! - [`memory`]: in-memory repositories (embedded storage and tests).
//! - [`random::OsRandom`]: the operating system's randomness for ids.

mod http;
pub mod http_store;
pub mod http_wallet;
pub mod memory;
pub mod pg;
pub mod random;

pub use http::HttpConfig;
