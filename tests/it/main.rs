//! The workspace's one integration-test binary. Each module is a feature.

// The whole crate is test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;
mod upstream_contracts;
