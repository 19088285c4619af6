//! The workspace's integration-test binary. Each module is a feature. (The guard's
//! allocation count has a binary of its own, `guard_alloc.rs`: it needs its own allocator.)

// The whole crate is test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod access_matrix;
mod admin;
mod after_approval;
mod app;
mod attacker;
mod bad_inputs;
mod browser;
mod catalog_cache;
mod checkout_flow;
mod crash_windows;
mod database;
mod exactly_once;
mod guardrails;
mod mcp;
mod mcp_client;
mod metrics;
mod persistence;
mod postgres;
mod raw;
mod retention;
mod support;
mod upstream_contracts;
mod upstream_failures;
mod user_token;
