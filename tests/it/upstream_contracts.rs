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

/// Input that cannot become an upstream request is the caller's error: refused before
/// anything is sent, and never counted by the circuit breaker that every caller shares.
#[tokio::test]
async fn requests_that_cannot_be_built_never_open_the_circuit() {
    use std::time::Duration;

    use sacp_adapters::http_store::HttpStore;
    use sacp_adapters::{BreakerConfig, HttpConfig};
    use sacp_ports::store::{ProductQuery, SearchQuery};
    use sacp_ports::{BearerToken, Store, UpstreamError};

    let server = crate::support::SimServer::start().await;
    let store = HttpStore::new(
        &server.store_url(),
        HttpConfig {
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(2),
            breaker: BreakerConfig {
                failure_threshold: 2,
                cool_down: Duration::from_secs(60),
            },
        },
        None,
    )
    .unwrap();
    let too_long = SearchQuery {
        q: "c".repeat(70_000),
        limit: 10,
        offset: 0,
    };
    let reads = server.simulators.store.stats().catalog_reads;
    for _ in 0..5 {
        assert!(matches!(
            store.search_products(&too_long).await,
            Err(UpstreamError::InvalidRequest(_))
        ));
        assert!(matches!(
            store.order("ord_x", &BearerToken::new("x\ny")).await,
            Err(UpstreamError::InvalidRequest(_))
        ));
        assert!(matches!(
            store.order("..", &BearerToken::new("token")).await,
            Err(UpstreamError::InvalidRequest(_))
        ));
    }
    assert_eq!(
        server.simulators.store.stats().catalog_reads,
        reads,
        "nothing reached the store"
    );
    let page = store
        .list_products(&ProductQuery {
            category: None,
            limit: 5,
            offset: 0,
        })
        .await;
    assert!(page.is_ok(), "the circuit is still closed: {page:?}");
}
