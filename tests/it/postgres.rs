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
async fn postgres_retirement_passes_the_contract() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let storage = Arc::new(storage(&db).await);
    sacp_ports::contract::repository::retirement_contract(storage.clone(), storage).await;
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
async fn an_audit_row_the_database_refuses_costs_no_other_event_of_its_batch() {
    use sacp_domain::audit::{AuditEvent, AuditOutcome};
    use sacp_ports::AuditLog;
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let log = Arc::new(storage(&db).await);
    let event = |n: usize, resource: &str| AuditEvent {
        at: chrono::Utc::now(),
        request_id: format!("req_{n}"),
        key_id: None,
        org: Some("victim".into()),
        subject: None,
        action: "POST /checkout".into(),
        resource: Some(resource.to_owned()),
        outcome: AuditOutcome::Success,
        status: 201,
        source: None,
        count: 1,
    };
    // Submitted together, so they share group-commit batches; every fifth one carries a NUL
    // byte, which PostgreSQL's text refuses.
    let writes = (0..40).map(|n| {
        let log = log.clone();
        let resource = if n % 5 == 0 {
            "cs_\0x".to_owned()
        } else {
            format!("cs_{n}")
        };
        let event = event(n, &resource);
        tokio::spawn(async move { log.record(&event).await })
    });
    let results: Vec<_> = futures::future::join_all(writes)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        results.iter().filter(|r| r.is_err()).count(),
        8,
        "{results:?}"
    );
    assert_eq!(
        log.query(None, 100).await.unwrap().len(),
        32,
        "every other event is written"
    );
}

#[tokio::test]
async fn postgres_guardrails_pass_their_contracts() {
    use sacp_ports::contract::guard::{
        idempotency_store_contract, insert_answering_contract, insert_holding_contract,
        rate_counters_contract, switch_board_contract, traffic_log_contract,
    };
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let storage = Arc::new(storage(&db).await);
    rate_counters_contract(storage.clone()).await;
    switch_board_contract(storage.clone()).await;
    idempotency_store_contract(storage.clone()).await;
    insert_answering_contract(storage.clone(), storage.clone()).await;
    insert_holding_contract(storage.clone(), storage.clone(), storage.clone()).await;
    traffic_log_contract(storage).await;
}

#[tokio::test]
async fn postgres_step_up_watches_pass_the_contract() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    sacp_ports::contract::step_up::step_up_watches_contract(Arc::new(storage(&db).await)).await;
}

#[tokio::test]
async fn a_stored_step_up_watch_that_cannot_be_read_is_dropped_without_stopping_the_others() {
    use diesel::{Connection, RunQueryDsl};
    use sacp_ports::StepUpWatches;
    use sacp_ports::step_up::StepUpWatch;

    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let storage = storage(&db).await;
    let now = chrono::Utc::now();
    let good = StepUpWatch {
        checkout_id: sacp_domain::CheckoutId::generate(&sacp_adapters::random::OsRandom),
        step_up_id: "su_good".into(),
        sealed_token: vec![1, 2, 3],
        key_id: "k".into(),
        subject: None,
        until: now + chrono::Duration::minutes(10),
        next_at: now - chrono::Duration::seconds(1),
    };
    storage.put(&good).await.unwrap();
    let url = db.url.clone();
    tokio::task::spawn_blocking(move || {
        let mut conn = diesel::PgConnection::establish(&url).unwrap();
        diesel::sql_query(
            "INSERT INTO step_up_watches (checkout_id, step_up_id, sealed_token, key_id, until, next_at)
             VALUES ('not-a-checkout-id', 'su_bad', '\\x00', 'k', now() + interval '10 minutes', now() - interval '2 seconds')",
        )
        .execute(&mut conn)
        .unwrap();
    })
    .await
    .unwrap();

    let claimed = storage
        .claim_due("k", now, now + chrono::Duration::seconds(5), 10)
        .await
        .expect("a bad row is no error for the others");
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].checkout_id, good.checkout_id);
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        checkout_id: String,
    }
    let url = db.url.clone();
    let left = tokio::task::spawn_blocking(move || {
        let mut conn = diesel::PgConnection::establish(&url).unwrap();
        diesel::sql_query("SELECT checkout_id FROM step_up_watches")
            .load::<Row>(&mut conn)
            .unwrap()
    })
    .await
    .unwrap();
    let left: Vec<&str> = left.iter().map(|r| r.checkout_id.as_str()).collect();
    assert_eq!(
        left,
        [good.checkout_id.as_str()],
        "the bad row was deleted, the good one kept"
    );
}

#[tokio::test]
async fn retirement_keeps_an_ended_checkout_whose_authorization_is_still_live() {
    use chrono::{Duration, Utc};
    use sacp_ports::contract::CountingRandom;
    use sacp_ports::contract::repository::{sample_authorization, sample_checkout};
    use sacp_ports::{AuthorizationRepository, CheckoutRepository};
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let storage = storage(&db).await;
    let random = CountingRandom::default();
    // What a cancel leaves behind when its second write (ending the authorization) failed.
    let mut checkout = sample_checkout(&random);
    CheckoutRepository::insert(&storage, &mut checkout)
        .await
        .unwrap();
    let mut live = sample_authorization(&random, checkout.id(), checkout.created_at());
    AuthorizationRepository::insert(&storage, &mut live)
        .await
        .unwrap();
    checkout.cancel(checkout.created_at()).unwrap();
    CheckoutRepository::update(&storage, &mut checkout)
        .await
        .unwrap();
    let long_after = Utc::now() + Duration::days(3650);
    assert_eq!(
        CheckoutRepository::retire(&storage, long_after, 100)
            .await
            .unwrap(),
        0,
        "a checkout holding a live authorization is kept"
    );
    assert_eq!(
        AuthorizationRepository::get(&storage, live.id())
            .await
            .unwrap(),
        live
    );
    live.cancel(checkout.created_at()).unwrap();
    AuthorizationRepository::update(&storage, &mut live)
        .await
        .unwrap();
    assert_eq!(
        CheckoutRepository::retire(&storage, long_after, 100)
            .await
            .unwrap(),
        1,
        "once it ended, both go"
    );
    assert!(
        AuthorizationRepository::get(&storage, live.id())
            .await
            .is_err()
    );
}

/// Whether the storage's connections to `db` are encrypted, as the server sees them (one
/// answer for all of them; `None` when it has none open).
async fn connections_encrypted(db: &TestDatabase) -> Option<bool> {
    use diesel::{Connection, RunQueryDsl};
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Bool>)]
        all: Option<bool>,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Bool>)]
        any: Option<bool>,
    }
    let (url, name) = (db.url.clone(), db.name().to_owned());
    let row = tokio::task::spawn_blocking(move || {
        let mut conn = diesel::PgConnection::establish(&url).unwrap();
        diesel::sql_query(
            "SELECT bool_and(s.ssl) AS all, bool_or(s.ssl) AS any
               FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
              WHERE a.datname = $1 AND a.pid <> pg_backend_pid()",
        )
        .bind::<diesel::sql_types::Text, _>(name)
        .get_result::<Row>(&mut conn)
        .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(row.all, row.any, "all of one storage's connections alike");
    row.all
}

/// Waits until a dropped storage's connections to `db` are gone.
async fn wait_closed(db: &TestDatabase) {
    for _ in 0..100 {
        if connections_encrypted(db).await.is_none() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("a dropped storage's connections stayed open");
}

#[tokio::test]
async fn the_database_urls_sslmode_decides_tls_as_libpq_would() {
    use sacp_ports::CheckoutRepository;

    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let with_mode = |mode: &str| {
        let separator = if db.url.contains('?') { '&' } else { '?' };
        format!("{}{separator}sslmode={mode}", db.url)
    };
    let server_offers_tls = {
        let storage = PgStorage::connect(&with_mode("prefer"), PgConfig::default()).unwrap();
        storage.ping().await.expect("prefer connects either way");
        connections_encrypted(&db)
            .await
            .expect("a connection is open")
    };
    wait_closed(&db).await;
    let storage = PgStorage::connect(&with_mode("disable"), PgConfig::default()).unwrap();
    storage.ping().await.expect("disable connects");
    assert_eq!(connections_encrypted(&db).await, Some(false));
    drop(storage);
    wait_closed(&db).await;

    let storage = PgStorage::connect(&with_mode("require"), PgConfig::default()).unwrap();
    let required = storage.ping().await;
    if server_offers_tls {
        required.expect("require connects over TLS, the certificate unchecked as with libpq");
        assert_eq!(connections_encrypted(&db).await, Some(true));
    } else {
        assert!(
            matches!(required, Err(sacp_ports::RepositoryError::Unavailable(_))),
            "require refuses a server without TLS: {required:?}"
        );
    }
    drop(storage);

    // The test server's certificate (Debian's self-signed one, or none) is not one the
    // platform trusts: verification must refuse it, never fall back to plain text.
    let storage = PgStorage::connect(&with_mode("verify-full"), PgConfig::default()).unwrap();
    let verified = storage.ping().await;
    assert!(
        matches!(verified, Err(sacp_ports::RepositoryError::Unavailable(_))),
        "verify-full refuses an untrusted certificate: {verified:?}"
    );

    let bad = PgStorage::connect(&with_mode("sometimes"), PgConfig::default()).unwrap();
    assert!(
        matches!(
            bad.ping().await,
            Err(sacp_ports::RepositoryError::Unavailable(_))
        ),
        "an unknown sslmode is refused, not ignored"
    );
}
