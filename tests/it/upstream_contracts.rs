//! The Store and Wallet contract suites, run against the in-process fakes and against the
//! HTTP adapters talking to the simulators over loopback.

use sacp_ports::contract::upstream::{fault_contract, store_contract, wallet_contract};

use crate::support::{FakeHarness, HttpHarness};

#[tokio::test]
async fn fake_store_passes_the_store_contract() {
    store_contract(&FakeHarness::new()).await;
}

#[tokio::test]
async fn fake_wallet_passes_the_wallet_contract() {
    wallet_contract(&FakeHarness::new()).await;
}

#[tokio::test]
async fn fakes_fail_like_the_upstreams() {
    fault_contract(&FakeHarness::new()).await;
}

#[tokio::test]
async fn http_store_over_the_simulator_passes_the_store_contract() {
    store_contract(&HttpHarness::start().await).await;
}

#[tokio::test]
async fn http_wallet_over_the_simulator_passes_the_wallet_contract() {
    wallet_contract(&HttpHarness::start().await).await;
}

#[tokio::test]
async fn http_adapters_map_every_upstream_fault() {
    fault_contract(&HttpHarness::start().await).await;
}
