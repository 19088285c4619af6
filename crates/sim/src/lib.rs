//! Simulated SSIM (store) and WSIM (wallet).
//!
//! Each simulator is a core (state and rules: [`store_core`], [`wallet_core`]) with two faces:
//! an HTTP service speaking the upstream contract of `UPSTREAMS.md` ([`http`]), and an
//! in-process implementation of the matching port ([`fake`]). Both faces share the core and
//! its fault knobs ([`faults`]), so the fake fails exactly as the HTTP adapter over the
//! simulator does.

pub mod catalog;
pub mod fake;
pub mod faults;
pub mod http;
pub mod store_core;
pub mod wallet_core;

use std::sync::Arc;

use sacp_ports::Clock;

use crate::store_core::{StoreConfig, StoreCore};
use crate::wallet_core::{WalletConfig, WalletCore};

/// How an error body is shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorStyle {
    /// Store style: `{"error": ..., "message": ...}`.
    Store,
    /// OAuth style: `{"error": ..., "error_description": ...}`.
    OAuth,
}

/// An error a simulator answers with: HTTP status, error code and description.
#[derive(Debug, Clone, PartialEq)]
pub struct SimError {
    /// HTTP status.
    pub status: u16,
    /// The `error` field.
    pub code: String,
    /// The description.
    pub message: String,
    /// Body shape.
    pub style: ErrorStyle,
    /// Extra fields merged into the body (e.g. `unavailable_items`); boxed, as it is rare.
    pub extra: Option<Box<serde_json::Value>>,
}

impl SimError {
    /// A store-style error.
    pub fn store(status: u16, code: &str, message: &str) -> SimError {
        SimError {
            status,
            code: code.to_owned(),
            message: message.to_owned(),
            style: ErrorStyle::Store,
            extra: None,
        }
    }

    /// An OAuth-style error.
    pub fn oauth(status: u16, code: &str, description: &str) -> SimError {
        SimError {
            status,
            code: code.to_owned(),
            message: description.to_owned(),
            style: ErrorStyle::OAuth,
            extra: None,
        }
    }

    /// Adds fields to the body.
    pub fn with_extra(mut self, extra: serde_json::Value) -> SimError {
        self.extra = Some(Box::new(extra));
        self
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        let mut body = match self.style {
            ErrorStyle::Store => serde_json::json!({"error": self.code, "message": self.message}),
            ErrorStyle::OAuth => {
                serde_json::json!({"error": self.code, "error_description": self.message})
            }
        };
        if let (Some(map), Some(serde_json::Value::Object(extra))) =
            (body.as_object_mut(), self.extra.as_deref())
        {
            for (key, value) in extra {
                map.insert(key.clone(), value.clone());
            }
        }
        body
    }
}

/// A simulated store and wallet that know each other (the store checks user tokens and
/// redeems payment tokens at the wallet, as the real store introspects at the real wallet).
#[derive(Debug, Clone)]
pub struct Simulators {
    /// The store.
    pub store: Arc<StoreCore>,
    /// The wallet.
    pub wallet: Arc<WalletCore>,
}

impl Simulators {
    /// Sandbox simulators whose public URLs are `store_base` and `wallet_base` (e.g.
    /// `http://127.0.0.1:8090/ssim` and `http://127.0.0.1:8090/wsim`).
    pub fn sandbox(store_base: &str, wallet_base: &str, clock: Arc<dyn Clock>) -> Simulators {
        let wallet = Arc::new(WalletCore::new(
            WalletConfig::sandbox(wallet_base.trim_end_matches('/')),
            clock.clone(),
        ));
        let store = Arc::new(StoreCore::new(
            StoreConfig::sandbox(store_base.trim_end_matches('/')),
            wallet.clone(),
            clock,
        ));
        Simulators { store, wallet }
    }
}
