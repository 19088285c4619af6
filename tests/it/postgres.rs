//! The repository contract suites on PostgreSQL.

use std::sync::Arc;

use sacp_adapters::pg::{PgConfig, PgStorage};
use sacp_ports::contract::repository::{
    api_key_repository_contract, audit_log_contract, authorization_repository_contract,
    checkout_repository_contract,
};

use crate::database::TestDatabase;

async fn storage(db: &TestDatabase) -> PgStorage {
    let storage = PgStorage::connect(&db.url, PgConfig::default()).unwrap();
    let applied = storage.migrate().await.expect("migrations run");
    assert!(!applied.is_empty(), "a fresh database gets every migration");
    assert!(
        storage.migrate().await.unwrap().is_empty(),
        "migrations run once"
    );
    storage
}

#[tokio::test]
async fn postgres_checkouts_pass_the_contract() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    checkout_repository_contract(Arc::new(storage(&db).await)).await;
}

#[tokio::test]
async fn postgres_authorizations_pass_the_contract() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let storage = Arc::new(storage(&db).await);
    authorization_repository_contract(storage.clone(), storage).await;
}

#[tokio::test]
async fn postgres_api_keys_pass_the_contract() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    api_key_repository_contract(Arc::new(storage(&db).await)).await;
}

#[tokio::test]
async fn postgres_audit_log_passes_the_contract() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    audit_log_contract(Arc::new(storage(&db).await)).await;
}

#[tokio::test]
async fn postgres_guardrails_pass_their_contracts() {
    use sacp_ports::contract::guard::{
        idempotency_store_contract, insert_answering_contract, rate_counters_contract,
        switch_board_contract, traffic_log_contract,
    };
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let storage = Arc::new(storage(&db).await);
    rate_counters_contract(storage.clone()).await;
    switch_board_contract(storage.clone()).await;
    idempotency_store_contract(storage.clone()).await;
    insert_answering_contract(storage.clone(), storage.clone()).await;
    traffic_log_contract(storage).await;
}

#[tokio::test]
async fn postgres_step_up_watches_pass_the_contract() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    sacp_ports::contract::step_up::step_up_watches_contract(Arc::new(storage(&db).await)).await;
}
