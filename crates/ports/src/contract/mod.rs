//! Contract-test suites: one reusable suite per port that every implementation must pass.
//!
//! The same [`upstream::store_contract`] and [`upstream::wallet_contract`] run against the
//! in-process fakes and against the HTTP adapters talking to the simulators over loopback;
//! [`repository::checkout_repository_contract`] and
//! [`repository::authorization_repository_contract`] run against every storage adapter.
//! Suites panic with a message naming the broken rule, like any test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod guard;
pub mod repository;
pub mod step_up;
pub mod upstream;

use std::sync::atomic::{AtomicU64, Ordering};

use sacp_domain::validation::{AddressInput, BuyerInput, FulfillmentInput};
use sacp_domain::{Buyer, Fulfillment, RandomSource};

/// A deterministic-enough random source for building test fixtures: a counter mixed into
/// every byte, plus the process id so that separate processes do not collide.
#[derive(Debug, Default)]
pub struct CountingRandom(AtomicU64);

impl RandomSource for CountingRandom {
    fn fill_bytes(&self, dest: &mut [u8]) {
        let n = self.0.fetch_add(1, Ordering::Relaxed);
        let seed = n
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(u64::from(std::process::id()) << 32)
            .wrapping_add(nanos());
        let bytes = seed.to_le_bytes();
        for (i, byte) in dest.iter_mut().enumerate() {
            *byte = bytes[i % 8] ^ u8::try_from(i % 251).unwrap_or(0).wrapping_mul(31);
        }
    }
}

/// The buyer of the seed conversation.
pub fn buyer() -> Buyer {
    Buyer::parse(&BuyerInput {
        name: Some("John Doe".into()),
        email: Some("john@example.com".into()),
        phone: Some("+1 416 555 0100".into()),
    })
    .unwrap()
}

/// The shipping address of the seed conversation.
pub fn shipping() -> Fulfillment {
    Fulfillment::parse(&FulfillmentInput {
        kind: Some("shipping".into()),
        address: Some(AddressInput {
            street: Some("123 Main St".into()),
            city: Some("Toronto".into()),
            state: Some("ON".into()),
            postal_code: Some("M5V 1A1".into()),
            country: Some("CA".into()),
        }),
    })
    .unwrap()
}

fn nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_nanos()) ^ d.as_secs())
        .unwrap_or(0)
}
