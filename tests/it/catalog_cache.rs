//! The catalog cache: answers kept for the TTL, `ETag` / `If-None-Match` revalidation,
//! forgotten when the store reports an item unavailable, bounded to catalog reads.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use sacp_sim::catalog::SOLD_OUT_GRINDER;
use sacp_sim::faults::Faults;
use serde_json::json;

use crate::app::{TestApp, settings, spawn_app_with};

const ETHIOPIAN: &str = "7f3c9a52-1d8e-4b6a-9c2f-0e5d8b1a4c71";

async fn cached_app(ttl_ms: u64) -> TestApp {
    let mut settings = settings();
    settings.catalog_cache_ttl_ms = ttl_ms;
    spawn_app_with(settings, Faults::default()).await
}

fn store_reads(app: &TestApp) -> u64 {
    app.sims.store.stats().catalog_reads
}

fn etag(answer: &crate::app::Answer) -> String {
    answer
        .headers
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .expect("catalog answers carry an ETag")
        .to_owned()
}

#[tokio::test]
async fn repeated_reads_are_answered_from_the_cache_until_the_ttl_passes() {
    let app = cached_app(1_500).await;
    let first = app.get("/products?limit=5").await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let second = app.get("/products?limit=5").await;
    assert_eq!(second.body, first.body);
    assert_eq!(etag(&second), etag(&first));
    assert_eq!(store_reads(&app), 1, "the second read came from the cache");

    // Another page, and one product, are answers of their own.
    app.get("/products?limit=6").await;
    app.get(&format!("/products/{ETHIOPIAN}")).await;
    app.get(&format!("/products/{ETHIOPIAN}")).await;
    assert_eq!(store_reads(&app), 3);

    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let later = app.get("/products?limit=5").await;
    assert_eq!(later.status, StatusCode::OK);
    assert_eq!(
        store_reads(&app),
        4,
        "after the TTL the store is asked again"
    );
}

#[tokio::test]
async fn if_none_match_with_the_current_tag_gets_304_without_a_body() {
    let app = cached_app(60_000).await;
    let first = app.get("/products?category=coffee").await;
    let tag = etag(&first);
    let revalidated = app
        .call_with(
            Method::GET,
            "/products?category=coffee",
            None,
            &[("if-none-match", tag.as_str())],
        )
        .await;
    assert_eq!(revalidated.status, StatusCode::NOT_MODIFIED);
    assert_eq!(
        revalidated.body,
        serde_json::Value::Null,
        "a 304 has no body"
    );
    assert_eq!(etag(&revalidated), tag);
    // Rate-limit headers are still there: a revalidation counts as a request.
    assert!(revalidated.headers.contains_key("ratelimit"));

    let stale = app
        .call_with(
            Method::GET,
            "/products?category=coffee",
            None,
            &[("if-none-match", "\"0000000000000000\"")],
        )
        .await;
    assert_eq!(stale.status, StatusCode::OK);
    assert_eq!(stale.body, first.body);
}

#[tokio::test]
async fn an_unavailable_item_at_checkout_drops_the_cached_catalog() {
    let app = cached_app(60_000).await;
    app.get("/products?limit=20").await;
    app.get("/products?limit=20").await;
    assert_eq!(store_reads(&app), 1);

    let refused = app
        .post(
            "/checkout",
            json!({"items": [{"product_id": SOLD_OUT_GRINDER, "quantity": 1}]}),
        )
        .await;
    refused.assert_problem(422, "items_unavailable");

    app.get("/products?limit=20").await;
    assert_eq!(
        store_reads(&app),
        2,
        "the store said the catalog changed: the next read asks it again"
    );
}

#[tokio::test]
async fn without_a_cache_every_read_asks_the_store_and_tags_still_work() {
    let app = cached_app(0).await;
    let first = app.get("/products?limit=5").await;
    let tag = etag(&first);
    let revalidated = app
        .call_with(
            Method::GET,
            "/products?limit=5",
            None,
            &[("if-none-match", tag.as_str())],
        )
        .await;
    assert_eq!(revalidated.status, StatusCode::NOT_MODIFIED);
    assert_eq!(store_reads(&app), 2);
}

#[tokio::test]
async fn failures_are_not_cached() {
    let app = cached_app(60_000).await;
    app.sims.store.set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    let failed = app.get("/products?limit=7").await;
    assert_eq!(failed.status, StatusCode::BAD_GATEWAY, "{}", failed.body);
    app.sims.store.set_faults(Faults::default());
    let recovered = app.get("/products?limit=7").await;
    assert_eq!(recovered.status, StatusCode::OK, "{}", recovered.body);
}
