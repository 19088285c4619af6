//! ADR 019 guardrails over HTTP: rate limits and quotas (with their headers), the anonymous
//! tier, idempotent writes, kill switches, the in-flight cap, the upstream circuit breaker,
//! audit and traffic — and their reach across replicas sharing PostgreSQL.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use reqwest::{Method, StatusCode};
use sacp_adapters::memory::MemoryAuditLog;
use sacp_adapters::memory_guard::{
    MemoryIdempotency, MemoryRateCounters, MemorySwitchBoard, MemoryTrafficLog,
};
use sacp_app::{GuardPorts, Guardrails, LimitSettings};
use sacp_domain::ratelimit::{Limit, Policy};
use sacp_sim::faults::Faults;
use serde_json::{Value, json};

use crate::admin::{admin, as_key};
use crate::app::{ADMIN_TOKEN, Answer, TEST_KEY, TestApp, settings, spawn_app, spawn_app_with};
use crate::database::TestDatabase;
use crate::support::ManualClock;

fn header(answer: &Answer, name: &str) -> String {
    answer
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_owned()
}

fn checkout_body(quantity: u32) -> Value {
    json!({"items": [{"product_id": sacp_sim::catalog::ETHIOPIAN_YIRGACHEFFE, "quantity": quantity}]})
}

/// Creates a key through the admin API; returns (secret, id).
async fn key(app: &TestApp, body: Value) -> (String, String) {
    let created = admin(app, Method::POST, "/admin/keys", Some(body)).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    (created.str("/key"), created.str("/id"))
}

async fn with_idempotency(
    app: &TestApp,
    secret: &str,
    method: Method,
    path: &str,
    idempotency_key: &str,
    body: Value,
) -> Answer {
    let request = crate::app::anonymous_client()
        .request(method.clone(), format!("{}{path}", app.url))
        .header("x-api-key", secret)
        .header("idempotency-key", idempotency_key)
        .json(&body);
    app.finish(method, path, request).await
}

#[tokio::test]
async fn a_key_over_its_rate_is_refused_with_429_and_the_ietf_headers() {
    crate::support::within_one_minute_window().await;
    let app = spawn_app().await;
    let (secret, id) = key(
        &app,
        json!({"name": "tiny", "org": "tiny-org", "scopes": ["catalog:read"], "requests_per_minute": 3}),
    )
    .await;
    for left in (0..3).rev() {
        let ok = as_key(&app, &secret, Method::GET, "/products", None).await;
        assert_eq!(ok.status, StatusCode::OK);
        let policy = header(&ok, "ratelimit-policy");
        assert!(
            policy.contains("\"key-minute\";q=3;w=60"),
            "successful answers carry the policy: {policy}"
        );
        assert!(policy.contains("\"key-day\";q=100000;w=86400"), "{policy}");
        assert!(policy.contains("\"org-minute\""), "{policy}");
        let remaining = header(&ok, "ratelimit");
        assert!(
            remaining.contains(&format!("\"key-minute\";r={left};t=")),
            "{remaining}"
        );
    }
    let refused = as_key(&app, &secret, Method::GET, "/products", None).await;
    refused.assert_problem(429, "rate_limited");
    assert_eq!(refused.body["policy"], "key-minute");
    let retry: u64 = header(&refused, "retry-after").parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert!(header(&refused, "ratelimit").contains("\"key-minute\";r=0;"));

    // Refusals use up nothing: once the operator raises the limit, the next call passes.
    let raised = admin(
        &app,
        Method::PATCH,
        &format!("/admin/keys/{id}"),
        Some(json!({"requests_per_minute": 5})),
    )
    .await;
    assert_eq!(raised.status, StatusCode::OK);
    let ok = as_key(&app, &secret, Method::GET, "/products", None).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert!(header(&ok, "ratelimit").contains("\"key-minute\";r=1;"));
    app.stop().await;
}

#[tokio::test]
async fn the_daily_quota_runs_out_until_midnight_utc() {
    let app = spawn_app().await;
    let (secret, _) = key(
        &app,
        json!({"name": "quota", "org": "q", "scopes": ["catalog:read"], "daily_quota": 2}),
    )
    .await;
    for _ in 0..2 {
        let ok = as_key(&app, &secret, Method::GET, "/products", None).await;
        assert_eq!(ok.status, StatusCode::OK);
    }
    let refused = as_key(&app, &secret, Method::GET, "/products", None).await;
    refused.assert_problem(429, "rate_limited");
    assert_eq!(refused.body["policy"], "key-day");
    let retry: i64 = header(&refused, "retry-after").parse().unwrap();
    let now = Utc::now();
    let midnight = Utc.from_utc_datetime(
        &(now.date_naive() + chrono::Days::new(1))
            .and_hms_opt(0, 0, 0)
            .unwrap(),
    );
    assert!(
        (retry - (midnight - now).num_seconds()).abs() <= 2,
        "Retry-After points at the next UTC midnight: {retry}"
    );
    app.stop().await;
}

#[tokio::test]
async fn quotas_reset_when_their_window_ends() {
    let clock = Arc::new(ManualClock::default());
    clock.0.store(1_800_000_030, Ordering::SeqCst);
    let guard = Guardrails::new(
        GuardPorts {
            counters: Arc::new(MemoryRateCounters::default()),
            switches: Arc::new(MemorySwitchBoard::default()),
            idempotency: Arc::new(MemoryIdempotency::default()),
            traffic: Arc::new(MemoryTrafficLog::default()),
            audit: Arc::new(MemoryAuditLog::default()),
        },
        clock.clone(),
        LimitSettings::default(),
    );
    let limits = [
        Limit::new(Policy::per_minute("key-minute", 2), "key:k"),
        Limit::new(Policy::per_day("key-day", 3), "key:k"),
    ];
    for _ in 0..2 {
        assert!(guard.admit(&limits).await.unwrap().allowed());
    }
    let refused = guard.admit(&limits).await.unwrap();
    assert!(!refused.allowed());
    assert_eq!(
        refused.retry_after_secs(),
        Some(30),
        "the minute ends in 30 s"
    );
    clock.0.fetch_add(30, Ordering::SeqCst);
    assert!(
        guard.admit(&limits).await.unwrap().allowed(),
        "a new minute: allowed (the refusal used nothing up)"
    );
    let day_spent = guard.admit(&limits).await.unwrap();
    assert_eq!(day_spent.exceeded().unwrap().policy.name, "key-day");
    clock.0.fetch_add(86_400, Ordering::SeqCst);
    assert!(guard.admit(&limits).await.unwrap().allowed(), "a new day");
}

#[tokio::test]
async fn writes_and_organisations_have_their_own_limits() {
    crate::support::within_one_minute_window().await;
    let mut strict = settings();
    strict.limits.writes_per_minute = 2;
    strict.limits.org_per_minute = 5;
    let app = spawn_app_with(strict, Faults::default()).await;
    let scopes = json!([
        "catalog:read",
        "checkout:read",
        "checkout:write",
        "orders:read"
    ]);
    let (first, _) = key(
        &app,
        json!({"name": "a", "org": "shared-org", "scopes": scopes}),
    )
    .await;
    let (second, _) = key(
        &app,
        json!({"name": "b", "org": "shared-org", "scopes": scopes}),
    )
    .await;

    // Writes: two per minute, then 429 while reads go on.
    for _ in 0..2 {
        let created = as_key(
            &app,
            &first,
            Method::POST,
            "/checkout",
            Some(checkout_body(1)),
        )
        .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    }
    let refused = as_key(
        &app,
        &first,
        Method::POST,
        "/checkout",
        Some(checkout_body(1)),
    )
    .await;
    refused.assert_problem(429, "rate_limited");
    assert_eq!(refused.body["policy"], "key-writes");
    assert_eq!(
        as_key(&app, &first, Method::GET, "/products", None)
            .await
            .status,
        StatusCode::OK
    );

    // The organisation: both keys together, 5 per minute (the refused write counted
    // nothing, so 3 so far).
    for _ in 0..2 {
        let ok = as_key(&app, &second, Method::GET, "/products", None).await;
        assert_eq!(ok.status, StatusCode::OK);
    }
    let org = as_key(&app, &second, Method::GET, "/products", None).await;
    org.assert_problem(429, "rate_limited");
    assert_eq!(org.body["policy"], "org-minute");
    app.stop().await;
}

#[tokio::test]
async fn payment_completion_and_end_users_are_limited_separately() {
    crate::support::within_one_minute_window().await;
    let mut strict = settings();
    strict.limits.completions_per_minute = 1;
    strict.limits.user_per_minute = 1;
    let app = spawn_app_with(strict, Faults::default()).await;
    let first = app.ready_checkout(1).await;
    let second = app.ready_checkout(1).await;
    let started = app.complete_as_guest(&first).await;
    assert_eq!(started.status, StatusCode::ACCEPTED);
    let refused = app
        .call(Method::POST, &format!("/checkout/{second}/complete"), None)
        .await;
    refused.assert_problem(429, "rate_limited");
    assert_eq!(refused.body["policy"], "key-payments");

    // One request per minute per end user (user token), whatever the key allows.
    let token = app.user_token(None);
    let auth = format!("Bearer {token}");
    let headers = [("authorization", auth.as_str())];
    let first_read = app
        .call_with(Method::GET, "/orders/ord_unknown", None, &headers)
        .await;
    assert_eq!(first_read.status, StatusCode::NOT_FOUND);
    let second_read = app
        .call_with(Method::GET, "/orders/ord_unknown", None, &headers)
        .await;
    second_read.assert_problem(429, "rate_limited");
    assert_eq!(second_read.body["policy"], "user-minute");
    app.stop().await;
}

#[tokio::test]
async fn the_anonymous_tier_reads_the_catalog_only_limited_per_address() {
    let app = spawn_app().await;
    let anonymous = crate::app::anonymous_client();
    let status = anonymous
        .get(format!("{}/products", app.url))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::UNAUTHORIZED, "off by default");
    app.stop().await;

    let mut open = settings();
    open.limits.anonymous_per_minute = Some(2);
    let app = spawn_app_with(open, Faults::default()).await;
    let get = |path: &'static str| {
        let request = anonymous.get(format!("{}{path}", app.url));
        app.finish(Method::GET, path, request)
    };
    for _ in 0..2 {
        let ok = get("/products").await;
        assert_eq!(ok.status, StatusCode::OK);
        assert!(header(&ok, "ratelimit-policy").contains("\"anonymous-minute\";q=2;w=60"));
    }
    get("/products").await.assert_problem(429, "rate_limited");
    get("/products?q=coffee")
        .await
        .assert_problem(401, "api_key_required");
    let write = anonymous
        .post(format!("{}/checkout", app.url))
        .json(&checkout_body(1));
    app.finish(Method::POST, "/checkout", write)
        .await
        .assert_problem(401, "api_key_required");
    // Keys are unaffected by the anonymous budget.
    assert_eq!(app.get("/products").await.status, StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn an_idempotency_key_replays_the_first_answer_and_refuses_another_body() {
    let app = spawn_app().await;
    let sessions = || app.sims.store.stats().sessions_created;
    let before = sessions();
    let first = with_idempotency(
        &app,
        TEST_KEY,
        Method::POST,
        "/checkout",
        "order-1",
        checkout_body(2),
    )
    .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    assert!(first.headers.get("idempotent-replayed").is_none());
    // The same key, quoted this time, with the same body in another member order.
    let replayed = with_idempotency(
        &app,
        TEST_KEY,
        Method::POST,
        "/checkout",
        "\"order-1\"",
        json!({"items": [{"quantity": 2, "product_id": sacp_sim::catalog::ETHIOPIAN_YIRGACHEFFE}]}),
    )
    .await;
    assert_eq!(replayed.status, StatusCode::CREATED);
    assert_eq!(header(&replayed, "idempotent-replayed"), "true");
    assert_eq!(
        replayed.body, first.body,
        "the stored answer, byte for byte"
    );
    assert_eq!(header(&replayed, "location"), header(&first, "location"));
    assert_eq!(sessions() - before, 1, "one checkout, one store session");

    let other = with_idempotency(
        &app,
        TEST_KEY,
        Method::POST,
        "/checkout",
        "order-1",
        checkout_body(3),
    )
    .await;
    other.assert_problem(422, "idempotency_key_reused");

    // Another integration's identical key is its own.
    let (secret, _) = key(
        &app,
        json!({"name": "other", "org": "o", "scopes": ["checkout:write", "checkout:read"]}),
    )
    .await;
    let theirs = with_idempotency(
        &app,
        &secret,
        Method::POST,
        "/checkout",
        "order-1",
        checkout_body(2),
    )
    .await;
    assert_eq!(theirs.status, StatusCode::CREATED);
    assert!(theirs.headers.get("idempotent-replayed").is_none());
    assert_ne!(theirs.body["id"], first.body["id"]);

    // PATCH is idempotent too.
    let id = first.str("/id");
    let path = format!("/checkout/{id}");
    let patched = with_idempotency(
        &app,
        TEST_KEY,
        Method::PATCH,
        &path,
        "p-1",
        crate::app::seed_details(),
    )
    .await;
    assert_eq!(patched.status, StatusCode::OK);
    let again = with_idempotency(
        &app,
        TEST_KEY,
        Method::PATCH,
        &path,
        "p-1",
        crate::app::seed_details(),
    )
    .await;
    assert_eq!(header(&again, "idempotent-replayed"), "true");
    assert_eq!(again.body, patched.body);

    // So is starting the payment: the retry gets the first answer, and the wallet was asked
    // for one approval only.
    let complete = format!("{path}/complete");
    let grants = || app.sims.wallet.stats().device_authorizations;
    let before_grants = grants();
    let paying = with_idempotency(&app, TEST_KEY, Method::POST, &complete, "c-1", json!({})).await;
    assert_eq!(paying.status, StatusCode::ACCEPTED, "{}", paying.body);
    assert!(paying.headers.get("idempotent-replayed").is_none());
    let retried = with_idempotency(&app, TEST_KEY, Method::POST, &complete, "c-1", json!({})).await;
    assert_eq!(retried.status, StatusCode::ACCEPTED);
    assert_eq!(header(&retried, "idempotent-replayed"), "true");
    assert_eq!(
        retried.body, paying.body,
        "the stored answer, byte for byte"
    );
    assert_eq!(grants() - before_grants, 1, "one approval asked for");

    // Bad keys are refused before anything happens.
    let long = "k".repeat(256);
    with_idempotency(
        &app,
        TEST_KEY,
        Method::POST,
        "/checkout",
        &long,
        checkout_body(1),
    )
    .await
    .assert_problem(400, "idempotency_key_invalid");
    with_idempotency(
        &app,
        TEST_KEY,
        Method::POST,
        "/checkout",
        "\"unclosed",
        checkout_body(1),
    )
    .await
    .assert_problem(400, "idempotency_key_invalid");
    assert_eq!(
        sessions() - before,
        2,
        "only the two real creations reached the store"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_repeat_while_the_first_runs_gets_409_and_a_5xx_is_not_kept() {
    let app = spawn_app().await;
    app.sims.store.set_faults(Faults {
        latency_ms: 1_500,
        ..Faults::default()
    });
    let slow = with_idempotency(
        &app,
        TEST_KEY,
        Method::POST,
        "/checkout",
        "slow-1",
        checkout_body(1),
    );
    let repeat = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        with_idempotency(
            &app,
            TEST_KEY,
            Method::POST,
            "/checkout",
            "slow-1",
            checkout_body(1),
        )
        .await
    };
    let (first, second) = tokio::join!(slow, repeat);
    assert_eq!(first.status, StatusCode::CREATED);
    second.assert_problem(409, "idempotency_key_in_flight");
    assert!(header(&second, "retry-after").parse::<u64>().unwrap() >= 1);

    // A failed request (502) may be retried with the same key and then succeeds.
    app.sims.store.set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    let failed = with_idempotency(
        &app,
        TEST_KEY,
        Method::POST,
        "/checkout",
        "flaky-1",
        checkout_body(1),
    )
    .await;
    assert_eq!(failed.status.as_u16(), 502, "{}", failed.body);
    app.sims.store.set_faults(Faults::default());
    let retried = with_idempotency(
        &app,
        TEST_KEY,
        Method::POST,
        "/checkout",
        "flaky-1",
        checkout_body(1),
    )
    .await;
    assert_eq!(retried.status, StatusCode::CREATED);
    assert!(
        retried.headers.get("idempotent-replayed").is_none(),
        "the 502 was not stored"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_admin_replay_never_shows_the_secret_again() {
    let app = spawn_app().await;
    let body = json!({"name": "replayed", "org": "acme", "scopes": ["catalog:read"]});
    let send = || {
        let request = crate::app::anonymous_client()
            .post(format!("{}/admin/keys", app.url))
            .bearer_auth(ADMIN_TOKEN)
            .header("idempotency-key", "make-key-1")
            .json(&body);
        app.finish(Method::POST, "/admin/keys", request)
    };
    let first = send().await;
    assert_eq!(first.status, StatusCode::CREATED);
    let secret = first.str("/key");
    let again = send().await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(header(&again, "idempotent-replayed"), "true");
    assert_eq!(again.body["id"], first.body["id"], "no second key");
    assert!(
        again.body.get("key").is_none_or(Value::is_null),
        "{}",
        again.body
    );
    assert!(!again.body.to_string().contains(&secret));
    let listed = admin(&app, Method::GET, "/admin/keys", None).await;
    let named = listed.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["name"] == "replayed")
        .count();
    assert_eq!(named, 1);
    app.stop().await;
}

#[tokio::test]
async fn kill_switches_refuse_what_they_name_with_503() {
    let app = spawn_app().await;
    let current = admin(&app, Method::GET, "/admin/switches", None).await;
    assert_eq!(
        current.body,
        json!({"read_only": false, "checkout_creation": true, "payments": true})
    );
    let id = app.ready_checkout(1).await;

    let set = |value: Value| admin(&app, Method::PUT, "/admin/switches", Some(value));
    set(json!({"read_only": false, "checkout_creation": false, "payments": true})).await;
    let refused = app.post("/checkout", checkout_body(1)).await;
    refused.assert_problem(503, "switched_off");
    assert!(refused.str("/detail").contains("checkout creation"));
    assert!(header(&refused, "retry-after").parse::<u64>().is_ok());
    assert_eq!(
        app.patch(&format!("/checkout/{id}"), crate::app::seed_details())
            .await
            .status,
        StatusCode::OK,
        "other writes go on"
    );

    set(json!({"read_only": false, "checkout_creation": true, "payments": false})).await;
    let no_pay = app
        .call(Method::POST, &format!("/checkout/{id}/complete"), None)
        .await;
    no_pay.assert_problem(503, "switched_off");
    assert!(no_pay.str("/detail").contains("payment"));
    assert_eq!(
        app.post("/checkout", checkout_body(1)).await.status,
        StatusCode::CREATED
    );

    set(json!({"read_only": true, "checkout_creation": true, "payments": true})).await;
    app.post("/checkout", checkout_body(1))
        .await
        .assert_problem(503, "switched_off");
    app.call(Method::POST, &format!("/checkout/{id}/cancel"), None)
        .await
        .assert_problem(503, "switched_off");
    assert_eq!(
        app.get(&format!("/checkout/{id}")).await.status,
        StatusCode::OK,
        "reads work"
    );
    assert_eq!(app.get("/products").await.status, StatusCode::OK);

    // The operator can always switch back; then everything works again.
    let back = set(json!({"read_only": false, "checkout_creation": true, "payments": true})).await;
    assert_eq!(back.status, StatusCode::OK);
    assert_eq!(
        app.complete_as_guest(&id).await.status,
        StatusCode::ACCEPTED
    );

    let bad = set(json!({"read_only": "yes"})).await;
    bad.assert_problem(400, "bad_request");
    app.stop().await;
}

#[tokio::test]
async fn switches_and_quotas_hold_across_replicas_sharing_the_database() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let mut shared = settings();
    shared.database_url = Some(db.url.clone().into());
    let a = spawn_app_with(shared.clone(), Faults::default()).await;
    let b = spawn_app_with(shared, Faults::default()).await;

    // One key, limit 4 per minute, spent across both replicas — within one minute window
    // (the limits are fixed windows: a request after the minute turns is counted afresh).
    crate::support::within_one_minute_window().await;
    let (secret, _) = key(
        &a,
        json!({"name": "spread", "org": "s", "scopes": ["catalog:read"], "requests_per_minute": 4}),
    )
    .await;
    for app in [&a, &b, &a, &b] {
        assert_eq!(
            as_key(app, &secret, Method::GET, "/products", None)
                .await
                .status,
            StatusCode::OK
        );
    }
    as_key(&b, &secret, Method::GET, "/products", None)
        .await
        .assert_problem(429, "rate_limited");
    as_key(&a, &secret, Method::GET, "/products", None)
        .await
        .assert_problem(429, "rate_limited");

    // A switch set on one replica is obeyed by the other within a second.
    let set_at = Instant::now();
    admin(
        &a,
        Method::PUT,
        "/admin/switches",
        Some(json!({"read_only": true, "checkout_creation": true, "payments": true})),
    )
    .await;
    loop {
        let answer = b.post("/checkout", checkout_body(1)).await;
        if answer.status.as_u16() == 503 {
            answer.assert_problem(503, "switched_off");
            break;
        }
        assert!(
            set_at.elapsed() < Duration::from_secs(1),
            "not seen within a second"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn beyond_the_in_flight_cap_requests_get_503_at_once() {
    let mut capped = settings();
    capped.limits.max_in_flight = 1;
    let app = spawn_app_with(capped, Faults::default()).await;
    app.sims.store.set_faults(Faults {
        latency_ms: 1_000,
        ..Faults::default()
    });
    let slow = app.get("/products");
    let crowded = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        app.get("/products").await
    };
    let (first, second) = tokio::join!(slow, crowded);
    assert_eq!(first.status, StatusCode::OK);
    // Refused, not queued behind the slow request.
    second.assert_problem(503, "overloaded");
    assert_eq!(header(&second, "retry-after"), "1");
    let health = app.get("/healthz").await;
    assert_eq!(health.status, StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn a_dead_store_is_answered_fast_once_its_circuit_opens() {
    let mut fragile = settings();
    fragile.breaker_failures = 3;
    fragile.breaker_cool_down_ms = 1_000;
    let app = spawn_app_with(fragile, Faults::default()).await;
    app.sims.store.set_faults(Faults {
        error_rate: 1.0,
        latency_ms: 1_200,
        ..Faults::default()
    });
    for _ in 0..3 {
        let failed = app.get("/products").await;
        assert_eq!(failed.status.as_u16(), 502, "{}", failed.body);
    }
    let started = Instant::now();
    let fast = app.get("/products").await;
    fast.assert_problem(502, "upstream_unavailable");
    assert!(
        started.elapsed() < Duration::from_millis(800),
        "answered without calling the store (which takes 1.2 s): {:?}",
        started.elapsed()
    );
    // After the cool-down one trial goes through; the store is back, so the circuit closes.
    app.sims.store.set_faults(Faults::default());
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(app.get("/products").await.status, StatusCode::OK);
    assert_eq!(app.get("/products").await.status, StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn every_change_failure_and_admin_call_is_audited_without_secrets() {
    let app = spawn_app().await;
    let id = app.create_checkout(1).await;
    let bogus = format!("sacp_{}_{}", "a".repeat(26), "b".repeat(52));
    let bogus = bogus.as_str();
    as_key(&app, bogus, Method::GET, "/products", None)
        .await
        .assert_problem(401, "api_key_invalid");
    let (reader, reader_id) = key(
        &app,
        json!({"name": "reader", "org": "acme", "scopes": ["catalog:read"]}),
    )
    .await;
    as_key(
        &app,
        &reader,
        Method::POST,
        "/checkout",
        Some(checkout_body(1)),
    )
    .await
    .assert_problem(403, "insufficient_scope");
    // A payment with a user token records the end user it acted for.
    let ready = app.ready_checkout(1).await;
    let token = app.user_token(None);
    let auth = format!("Bearer {token}");
    let paid = app
        .call_with(
            Method::POST,
            &format!("/checkout/{ready}/complete"),
            None,
            &[("authorization", auth.as_str())],
        )
        .await;
    assert_eq!(paid.status, StatusCode::OK, "{}", paid.body);

    let audit = admin(&app, Method::GET, "/admin/audit?limit=1000", None).await;
    assert_eq!(audit.status, StatusCode::OK);
    let events = audit.body["events"].as_array().unwrap().clone();
    let find = |action: &str, status: u16| {
        events
            .iter()
            .find(|e| e["action"] == action && e["status"] == status)
            .unwrap_or_else(|| panic!("no {action} {status} in {events:#?}"))
            .clone()
    };
    let test_key_id = sacp_domain::access::key_id_of(TEST_KEY).unwrap();
    let created = events
        .iter()
        .find(|e| e["action"] == "POST /checkout" && e["resource"] == id.as_str())
        .unwrap_or_else(|| panic!("creation of {id} not audited: {events:#?}"))
        .clone();
    assert_eq!(created["status"], 201);
    assert_eq!(created["key_id"], test_key_id.as_str());
    assert_eq!(created["outcome"], "success");
    assert!(
        created["request_id"]
            .as_str()
            .is_some_and(|r| !r.is_empty())
    );
    let unknown = find("GET /products", 401);
    assert_eq!(unknown["outcome"], "denied");
    assert_eq!(
        unknown["key_id"],
        Value::Null,
        "a secret that did not authenticate is credited to no key, not even the one it names"
    );
    assert!(
        unknown["source"]
            .as_str()
            .is_some_and(|s| s.starts_with("ip:")),
        "refusals are counted per client address: {unknown}"
    );
    assert_eq!(unknown["count"], 1);
    let scope = find("POST /checkout", 403);
    assert_eq!(scope["key_id"], reader_id.as_str());
    assert_eq!(scope["org"], "acme");
    assert_eq!(scope["source"], format!("key:{}", reader_id.as_str()));
    let admin_call = find("POST /admin/keys", 201);
    assert_eq!(admin_call["resource"], reader_id.as_str());
    let payment = find("POST /checkout/{id}/complete", 200);
    assert_eq!(payment["resource"], ready.as_str());
    assert!(
        payment["subject"].as_str().is_some_and(|s| !s.is_empty()),
        "{payment}"
    );
    assert!(
        events.iter().all(|e| e["action"] != "GET /checkout/{id}"
            || e["status"] == 401
            || e["status"] == 403),
        "successful reads are counted, not audited"
    );
    let text = audit.body.to_string();
    for secret in [
        TEST_KEY,
        reader.as_str(),
        ADMIN_TOKEN,
        bogus,
        token.as_str(),
    ] {
        assert!(!text.contains(secret), "a secret reached the audit log");
    }
    let mine = admin(
        &app,
        Method::GET,
        &format!("/admin/audit?key_id={reader_id}"),
        None,
    )
    .await;
    assert!(
        mine.body["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["key_id"] == reader_id.as_str())
    );
    admin(&app, Method::GET, "/admin/audit?limit=0", None)
        .await
        .assert_problem(400, "bad_request");
    admin(&app, Method::GET, "/admin/audit?key_id=nope", None)
        .await
        .assert_problem(400, "bad_request");
    app.stop().await;
}

#[tokio::test]
async fn traffic_is_counted_per_key_route_status_and_minute() {
    let app = spawn_app().await;
    let (reader, reader_id) = key(
        &app,
        json!({"name": "counted", "org": "acme", "scopes": ["catalog:read"]}),
    )
    .await;
    for _ in 0..3 {
        as_key(&app, &reader, Method::GET, "/products", None).await;
    }
    as_key(&app, &reader, Method::GET, "/products/nope", None).await;
    as_key(&app, &reader, Method::GET, "/checkout/cs_x", None).await;
    let traffic = admin(
        &app,
        Method::GET,
        &format!("/admin/traffic?key_id={reader_id}"),
        None,
    )
    .await;
    assert_eq!(traffic.status, StatusCode::OK);
    let rows = traffic.body["traffic"].as_array().unwrap();
    let count = |route: &str, status: u16| {
        rows.iter()
            .filter(|r| r["route"] == route && r["status"] == status)
            .map(|r| r["count"].as_u64().unwrap())
            .sum::<u64>()
    };
    assert_eq!(count("GET /products", 200), 3, "{rows:#?}");
    assert_eq!(count("GET /products/{id}", 404), 1);
    assert_eq!(count("GET /checkout/{id}", 403), 1);
    assert!(rows.iter().all(|r| r["key_id"] == reader_id.as_str()));
    assert!(
        rows[0]["minute"].as_str().unwrap().ends_with(":00Z"),
        "{}",
        rows[0]
    );
    app.stop().await;
}
