//! The gateway as an attacker sees it: another organisation's ids, respelled paths, input
//! built to trip the shared circuit breakers, slow bodies, floods of forged keys, tokens
//! sent every way the API accepts them, oversized inputs, headers no client library sends.
//! Each test states the guarantee it attacks; `access_matrix` walks every route with every
//! wrong credential and respelling.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use sacp_sim::faults::Faults;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::admin::{admin, as_key};
use crate::app::{TEST_KEY, TestApp, seed_details, settings, spawn_app, spawn_app_with};
use crate::raw;

fn checkout_body() -> Value {
    json!({"items": [{"product_id": sacp_sim::catalog::ETHIOPIAN_YIRGACHEFFE, "quantity": 1}]})
}

/// A key of organisation `org` with every integration scope; returns (secret, id).
pub(crate) async fn org_key(app: &TestApp, org: &str) -> (String, String) {
    let created = admin(
        app,
        Method::POST,
        "/admin/keys",
        Some(json!({
            "name": format!("{org} agent"), "org": org,
            "scopes": ["catalog:read", "search:read", "checkout:read", "checkout:write", "orders:read"],
            "requests_per_minute": 100_000,
        })),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    (created.str("/key"), created.str("/id"))
}

#[tokio::test]
async fn another_organisation_cannot_see_or_touch_a_checkout() {
    let app = spawn_app().await;
    // The test key's organisation opens a checkout and starts paying.
    let id = app.ready_checkout(1).await;
    let started = app.complete_as_guest(&id).await;
    let request_id = started.str("/request_id");
    let (rival, _) = org_key(&app, "rival").await;
    let (colleague, _) = {
        // Another key of the same organisation as the test key ("default").
        let created = admin(
            &app,
            Method::POST,
            "/admin/keys",
            Some(json!({"name": "colleague", "org": "default", "scopes": ["checkout:read"]})),
        )
        .await;
        (created.str("/key"), created.str("/id"))
    };

    let attempts: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, format!("/checkout/{id}"), None),
        (
            Method::PATCH,
            format!("/checkout/{id}"),
            Some(json!({"buyer": {"name": "Mallory", "email": "m@evil.example"}})),
        ),
        (Method::POST, format!("/checkout/{id}/complete"), None),
        (Method::POST, format!("/checkout/{id}/cancel"), None),
        (
            Method::GET,
            format!("/checkout/{id}/payment-status/{request_id}"),
            None,
        ),
        (
            Method::GET,
            format!("/checkout/{id}/step-up/stepup_x"),
            None,
        ),
    ];
    for (method, path, body) in &attempts {
        let answer = as_key(&app, &rival, method.clone(), path, body.clone()).await;
        answer.assert_problem(404, "not_found");
    }
    // The same answer as for an id that does not exist: nothing is confirmed.
    let unknown = as_key(
        &app,
        &rival,
        Method::GET,
        "/checkout/cs_aaaaaaaaaaaaaaaaaaaaaaaaaa",
        None,
    )
    .await;
    assert_eq!(unknown.body["detail"], "no such checkout");

    // Nothing changed, and the owner's organisation still sees it through any of its keys.
    let seen = as_key(
        &app,
        &colleague,
        Method::GET,
        &format!("/checkout/{id}"),
        None,
    )
    .await;
    assert_eq!(seen.status, StatusCode::OK);
    assert_eq!(seen.body["status"], "authorizing");
    assert_eq!(seen.body["buyer"]["name"], "John Doe");
    let status = app
        .get(&format!("/checkout/{id}/payment-status/{request_id}"))
        .await;
    assert_eq!(status.body["status"], "pending");
    app.stop().await;
}

#[tokio::test]
async fn orders_are_shown_only_to_the_person_who_paid() {
    let app = spawn_app().await;
    let id = app.ready_checkout(1).await;
    let payer = app.user_token(None);
    let paid = app
        .as_user(Method::POST, &format!("/checkout/{id}/complete"), &payer)
        .await;
    assert_eq!(paid.status, StatusCode::OK, "{}", paid.body);
    let order = paid.str("/order_id");
    let path = format!("/orders/{order}");
    let mine = app.as_user(Method::GET, &path, &payer).await;
    assert_eq!(mine.status, StatusCode::OK, "{}", mine.body);
    assert_eq!(mine.body["order_id"], order.as_str());
    // Another wallet user with a perfectly valid token gets nothing.
    let stranger = app.user_token_of("usr_someone_else");
    app.as_user(Method::GET, &path, &stranger)
        .await
        .assert_problem(404, "not_found");
    // An order the store has but this gateway never placed is nobody's here.
    app.as_user(Method::GET, "/orders/ord_placedelsewhere", &payer)
        .await
        .assert_problem(404, "not_found");

    // The guest path records who approved, too.
    let guest = app.ready_checkout(1).await;
    let started = app.complete_as_guest(&guest).await;
    app.decide_in_wallet(&started.str("/authorization_url"), true)
        .await;
    let settled = app.poll_until_settled(&started.str("/poll_endpoint")).await;
    assert_eq!(settled.body["status"], "completed", "{}", settled.body);
    let guest_order = format!("/orders/{}", settled.str("/order_id"));
    let approver = app.user_token(None);
    let read = app.as_user(Method::GET, &guest_order, &approver).await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.body);
    app.as_user(Method::GET, &guest_order, &stranger)
        .await
        .assert_problem(404, "not_found");
    app.stop().await;
}

#[tokio::test]
async fn what_a_caller_sends_never_opens_a_shared_circuit() {
    let mut config = settings();
    config.breaker_failures = 2;
    config.breaker_cool_down_ms = 60_000;
    config.limits.anonymous_per_minute = Some(1_000);
    let app = spawn_app_with(config, Faults::default()).await;
    let reads_before = app.sims.store.stats().catalog_reads;
    let long = "c".repeat(5_000);

    // Without any key (the anonymous tier), then with one.
    for _ in 0..5 {
        let answer = raw::send(
            &app.url,
            "GET",
            &format!("/products?category={long}"),
            &[],
            b"",
        )
        .await;
        assert_eq!(answer.status, 400, "{:?}", answer.json());
        let answer = app.get(&format!("/products?q={long}")).await;
        answer.assert_problem(400, "bad_request");
    }
    assert_eq!(
        app.sims.store.stats().catalog_reads,
        reads_before,
        "nothing was sent to the store"
    );
    assert_eq!(app.get("/products?q=coffee").await.status, StatusCode::OK);
    assert_eq!(app.get("/products").await.status, StatusCode::OK);

    // User tokens that are not tokens: the caller's 401, the wallet never asked.
    let checkout = app.ready_checkout(1).await;
    for _ in 0..5 {
        app.get("/orders/ord_x?access_token=x%0Ay")
            .await
            .assert_problem(401, "user_token_invalid");
        let bad_header = format!(
            "GET /checkout/{checkout}/step-up/stepup_x HTTP/1.1\r\nhost: x\r\nx-api-key: {TEST_KEY}\r\nauthorization: Bearer tok\u{e9}n\r\nconnection: close\r\n\r\n"
        );
        let mut bytes = bad_header.into_bytes();
        // The 0xE9 byte (obs-text), as a client could send it.
        let at = bytes.windows(2).position(|w| w == "é".as_bytes()).unwrap();
        bytes.splice(at..at + 2, [0xE9]);
        let answer = raw::send_bytes(&app.url, &bytes).await;
        assert_eq!(answer.status, 401, "{:?}", answer.json());
        assert_eq!(answer.code(), "user_token_invalid");
        let completed = app
            .call_with(
                Method::POST,
                &format!("/checkout/{checkout}/complete?access_token=a%20b"),
                None,
                &[],
            )
            .await;
        completed.assert_problem(401, "user_token_invalid");
    }
    // Every upstream still answers everybody.
    let token = app.user_token(None);
    let paid = app
        .as_user(
            Method::POST,
            &format!("/checkout/{checkout}/complete"),
            &token,
        )
        .await;
    assert_eq!(paid.status, StatusCode::OK, "{}", paid.body);

    // Product ids that are path segments naming something else never reach the store.
    let reads_before = app.sims.store.stats().catalog_reads;
    for target in [
        "/products/..",
        "/products/%2e%2e",
        "/products/...",
        "/products/.",
    ] {
        let answer = raw::send(&app.url, "GET", target, &[("x-api-key", TEST_KEY)], b"").await;
        assert_eq!(answer.status, 404, "{target}: {:?}", answer.json());
    }
    assert_eq!(app.sims.store.stats().catalog_reads, reads_before);
    app.stop().await;
}

/// Opens a connection that sends a request head promising `length` bytes of body, and only
/// `sent` of them.
async fn stalled_body(
    app: &TestApp,
    key: &str,
    length: usize,
    sent: usize,
) -> tokio::net::TcpStream {
    let mut stream = tokio::net::TcpStream::connect(raw::address(&app.url))
        .await
        .unwrap();
    let head = format!(
        "POST /checkout HTTP/1.1\r\nhost: x\r\nx-api-key: {key}\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&vec![b' '; sent]).await.unwrap();
    stream
}

#[tokio::test]
async fn a_stalled_body_is_cut_off_and_one_organisation_cannot_take_the_replica() {
    let mut config = settings();
    config.limits.max_in_flight = 8;
    config.limits.max_in_flight_per_org = Some(2);
    config.limits.body_timeout_ms = 1_500;
    let app = spawn_app_with(config, Faults::default()).await;
    let (rival, _) = org_key(&app, "rival").await;

    let started = Instant::now();
    let mut stalled = Vec::new();
    for _ in 0..2 {
        stalled.push(stalled_body(&app, TEST_KEY, 100, 10).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The stalling organisation has used its share...
    let refused = app.get("/products").await;
    refused.assert_problem(503, "overloaded");
    assert!(
        refused.body["detail"]
            .as_str()
            .unwrap()
            .contains("organisation")
    );
    // ...and everybody else is served.
    let other = as_key(&app, &rival, Method::GET, "/products", None).await;
    assert_eq!(other.status, StatusCode::OK);
    let created = as_key(
        &app,
        &rival,
        Method::POST,
        "/checkout",
        Some(checkout_body()),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED);

    // The stalled bodies end in 408 and a closed connection, and the share comes back.
    for mut stream in stalled {
        let answer = raw::read_answer(&mut stream, false).await;
        assert_eq!(answer.status, 408, "{:?}", answer.json());
        assert_eq!(answer.code(), "request_timeout");
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest))
            .await
            .expect("the connection is closed after a 408");
        assert!(closed.is_ok());
    }
    assert!(started.elapsed() >= Duration::from_millis(1_400));
    assert_eq!(app.get("/products").await.status, StatusCode::OK);

    // Organisations together can fill the replica, but never lock the operator out.
    let (third, _) = org_key(&app, "third").await;
    let (fourth, _) = org_key(&app, "fourth").await;
    let (fifth, _) = org_key(&app, "fifth").await;
    let mut filling = Vec::new();
    for key in [TEST_KEY, rival.as_str(), third.as_str(), fourth.as_str()] {
        for _ in 0..2 {
            filling.push(stalled_body(&app, key, 100, 10).await);
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    as_key(&app, &fifth, Method::GET, "/products", None)
        .await
        .assert_problem(503, "overloaded");
    let switches = admin(&app, Method::GET, "/admin/switches", None).await;
    assert_eq!(switches.status, StatusCode::OK, "{}", switches.body);
    assert_eq!(app.get("/healthz").await.status, StatusCode::OK);
    drop(filling);

    // Bodies stall elsewhere on the listener too — the sandbox wallet's pages, a path with
    // no route — and are cut off just the same.
    for target in ["/sim/wsim/m/device", "/nowhere"] {
        let mut stream = tokio::net::TcpStream::connect(raw::address(&app.url))
            .await
            .unwrap();
        let head = format!(
            "POST {target} HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: 100\r\n\r\nuser_code="
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut rest = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(6), stream.read_to_end(&mut rest)).await;
        assert!(
            closed.is_ok(),
            "{target}: the connection is closed, not held open by the stalled body"
        );
    }

    // A declared body over the limit is refused before it is read, and the connection closed.
    let head = format!(
        "POST /checkout HTTP/1.1\r\nhost: x\r\nx-api-key: {TEST_KEY}\r\ncontent-type: application/json\r\ncontent-length: 10000000\r\n\r\n"
    );
    let answer = raw::send_bytes(&app.url, head.as_bytes()).await;
    assert_eq!(answer.status, 413, "{:?}", answer.json());
    assert_eq!(answer.code(), "payload_too_large");
    assert_eq!(answer.header("connection"), Some("close"));
    app.stop().await;
}

#[tokio::test]
async fn a_flood_of_forged_keys_adds_one_audit_row_per_source_and_minute() {
    let app = spawn_app().await;
    let (_, victim) = org_key(&app, "victim").await;
    let forged = format!(
        "sacp_{}_{}",
        victim.trim_start_matches("key_"),
        "a".repeat(52)
    );
    let client = crate::app::anonymous_client();
    for _ in 0..300 {
        let answer = client
            .get(format!("{}/products", app.url))
            .header("x-api-key", &forged)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    }
    let credited = admin(
        &app,
        Method::GET,
        &format!("/admin/audit?key_id={victim}&limit=1000"),
        None,
    )
    .await;
    assert!(
        credited.body["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["status"] != 401),
        "the named key is credited with nothing: {}",
        credited.body
    );
    let audit = admin(&app, Method::GET, "/admin/audit?limit=1000", None).await;
    let rows: Vec<&Value> = audit.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "GET /products" && e["status"] == 401)
        .collect();
    assert!(
        (1..=2).contains(&rows.len()),
        "one row per source and minute: {rows:#?}"
    );
    let counted: u64 = rows.iter().map(|e| e["count"].as_u64().unwrap()).sum();
    assert_eq!(counted, 300);
    assert!(
        rows.iter()
            .all(|e| e["source"] == "ip:127.0.0.1" && e["key_id"].is_null())
    );
    app.stop().await;
}

#[tokio::test]
async fn the_end_user_limit_counts_a_token_however_it_is_sent() {
    crate::support::within_one_minute_window().await;
    let mut config = settings();
    config.limits.user_per_minute = 3;
    let app = spawn_app_with(config, Faults::default()).await;
    let token = app.user_token_of("usr_flooder");
    let checkout = app.ready_checkout(1).await;
    for _ in 0..2 {
        let answer = app
            .get(&format!("/orders/ord_nothing?access_token={token}"))
            .await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{}", answer.body);
    }
    let form = crate::app::http_client()
        .post(format!("{}/checkout/{checkout}/complete", app.url))
        .form(&[("access_token", token.as_str())]);
    let answer = app
        .finish(
            Method::POST,
            &format!("/checkout/{checkout}/complete"),
            form,
        )
        .await;
    assert_ne!(
        answer.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        answer.body
    );
    let refused = app
        .as_user(Method::GET, "/orders/ord_nothing", &token)
        .await;
    refused.assert_problem(429, "rate_limited");
    assert_eq!(refused.body["policy"], "user-minute");
    app.stop().await;
}

#[tokio::test]
async fn no_input_makes_an_answer_grow_with_it() {
    let app = spawn_app().await;
    let items = vec![json!({}); 9_000];
    let request = crate::app::http_client()
        .post(format!("{}/checkout", app.url))
        .header("idempotency-key", "huge-1")
        .json(&json!({ "items": items }));
    let answer = app.finish(Method::POST, "/checkout", request).await;
    answer.assert_problem(422, "validation_failed");
    let size = answer.body.to_string().len();
    assert!(size < 2_000, "{size} bytes: {}", answer.body);
    // Many bad lines within the line limit: the first 25 listed, the rest counted.
    let lines: Vec<Value> = (0..50).map(|_| json!({"quantity": 0})).collect();
    let answer = app.post("/checkout", json!({ "items": lines })).await;
    answer.assert_problem(422, "validation_failed");
    assert_eq!(answer.body["errors"].as_array().unwrap().len(), 25);
    assert_eq!(answer.body["errors_omitted"], 75);
    assert!(answer.body.to_string().len() < 8_000);
    app.stop().await;
}

#[tokio::test]
async fn a_respelled_path_is_the_same_resource_to_every_guardrail() {
    let app = spawn_app().await;
    // Idempotency: the same key on two spellings of one route replays, never creates twice.
    let first = raw::send(
        &app.url,
        "POST",
        "/%63heckout",
        &[
            ("x-api-key", TEST_KEY),
            ("content-type", "application/json"),
            ("idempotency-key", "spelled-1"),
        ],
        checkout_body().to_string().as_bytes(),
    )
    .await;
    assert_eq!(first.status, 201, "{:?}", first.json());
    let again = raw::send(
        &app.url,
        "POST",
        "/checkout",
        &[
            ("x-api-key", TEST_KEY),
            ("content-type", "application/json"),
            ("idempotency-key", "spelled-1"),
        ],
        checkout_body().to_string().as_bytes(),
    )
    .await;
    assert_eq!(again.status, 201);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.json()["id"], first.json()["id"]);

    // The audit names the route, not the spelling.
    let audit = admin(&app, Method::GET, "/admin/audit?limit=100", None).await;
    assert!(
        audit.body["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "POST /checkout" && e["resource"] == first.json()["id"]),
        "{}",
        audit.body
    );

    // The kill switch and the key's rate limit see the route too.
    crate::support::within_one_minute_window().await;
    let created = admin(
        &app,
        Method::POST,
        "/admin/keys",
        Some(json!({"name": "slow", "org": "slow-org", "scopes": ["catalog:read", "checkout:write"], "requests_per_minute": 3})),
    )
    .await;
    let slow = created.str("/key");
    for target in ["/products", "/%70roducts", "/pr%6Fducts"] {
        let answer = raw::send(&app.url, "GET", target, &[("x-api-key", &slow)], b"").await;
        assert_eq!(answer.status, 200, "{target}");
    }
    let answer = raw::send(&app.url, "GET", "/%70roducts", &[("x-api-key", &slow)], b"").await;
    assert_eq!(answer.status, 429);
    assert_eq!(answer.code(), "rate_limited");

    let off = admin(
        &app,
        Method::PUT,
        "/admin/switches",
        Some(json!({"read_only": false, "checkout_creation": false, "payments": true})),
    )
    .await;
    assert_eq!(off.status, StatusCode::OK);
    let refused = raw::send(
        &app.url,
        "POST",
        "/%63heckout",
        &[
            ("x-api-key", TEST_KEY),
            ("content-type", "application/json"),
        ],
        checkout_body().to_string().as_bytes(),
    )
    .await;
    assert_eq!(refused.status, 503, "{:?}", refused.json());
    assert_eq!(refused.code(), "switched_off");
    app.stop().await;
}

#[tokio::test]
async fn answers_carry_no_caching_of_secrets_and_the_browser_hardening_headers() {
    let app = spawn_app().await;
    let checkout = app.post("/checkout", checkout_body()).await;
    assert_eq!(checkout.headers["cache-control"], "no-store");
    let id = checkout.str("/id");
    let details = app.patch(&format!("/checkout/{id}"), seed_details()).await;
    assert_eq!(details.headers["cache-control"], "no-store");
    let key = admin(
        &app,
        Method::POST,
        "/admin/keys",
        Some(json!({"name": "k", "org": "o", "scopes": ["catalog:read"]})),
    )
    .await;
    assert_eq!(key.headers["cache-control"], "no-store");
    let problem = app.get("/checkout/cs_aaaaaaaaaaaaaaaaaaaaaaaaaa").await;
    assert_eq!(problem.headers["cache-control"], "no-store");
    for answer in [&checkout, &key, &problem] {
        assert_eq!(answer.headers["x-content-type-options"], "nosniff");
        assert_eq!(answer.headers["x-frame-options"], "DENY");
        assert!(
            answer.headers["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("default-src 'none'")
        );
    }
    // The catalog may be kept by the agent, revalidated with its ETag.
    let catalog = app.get("/products").await;
    assert_eq!(catalog.headers["cache-control"], "private, no-cache");
    // The docs page gets a policy that lets it load its own files only.
    let docs = raw::send(&app.url, "GET", "/docs/index.html", &[], b"").await;
    assert_eq!(docs.status, 200);
    let policy = docs.header("content-security-policy").unwrap();
    assert!(policy.contains("script-src 'self'") && policy.contains("frame-ancestors 'none'"));
    assert_eq!(docs.header("x-content-type-options"), Some("nosniff"));
    let head = raw::send(&app.url, "HEAD", "/docs/index.html", &[], b"").await;
    assert_eq!(head.status, 200);
    // The person's approval page cannot be framed by another site.
    let page = raw::send(&app.url, "GET", "/sim/wsim/m/device", &[], b"").await;
    assert_eq!(page.status, 200);
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert!(
        page.header("content-security-policy")
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    app.stop().await;
}

#[tokio::test]
async fn headers_that_are_not_valid_values_are_refused_not_crashed_on() {
    let app = spawn_app().await;
    // An API key with bytes outside visible ASCII.
    let mut bytes =
        b"GET /products HTTP/1.1\r\nhost: x\r\nx-api-key: sacp_\xff\xfe\r\nconnection: close\r\n\r\n"
            .to_vec();
    let answer = raw::send_bytes(&app.url, &bytes).await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.code(), "api_key_invalid");
    // A key sent twice is no key: which one would count is a guess.
    for keys in [[TEST_KEY, "sacp_forged"], ["sacp_forged", TEST_KEY]] {
        let head = format!(
            "GET /products HTTP/1.1\r\nhost: x\r\nx-api-key: {}\r\nx-api-key: {}\r\nconnection: close\r\n\r\n",
            keys[0], keys[1]
        );
        let answer = raw::send_bytes(&app.url, head.as_bytes()).await;
        assert_eq!(answer.status, 401, "{keys:?}");
        assert_eq!(answer.code(), "api_key_invalid");
    }
    // An idempotency key that is not a valid value.
    bytes = format!(
        "POST /checkout HTTP/1.1\r\nhost: x\r\nx-api-key: {TEST_KEY}\r\ncontent-type: application/json\r\nidempotency-key: a\u{7f}b\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}"
    )
    .into_bytes();
    let answer = raw::send_bytes(&app.url, &bytes).await;
    assert_eq!(answer.status, 400, "{:?}", answer.json());
    // Headers beyond what the server reads at all: refused by the HTTP layer, the gateway
    // keeps serving.
    let huge = format!(
        "GET /products HTTP/1.1\r\nhost: x\r\nx-junk: {}\r\nconnection: close\r\n\r\n",
        "j".repeat(200_000)
    );
    let answer = raw::send_bytes(&app.url, huge.as_bytes()).await;
    assert!(matches!(answer.status, 400 | 431), "{}", answer.status);
    assert_eq!(app.get("/healthz").await.status, StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn control_characters_in_a_path_reach_the_audit_log_only_as_printable_text() {
    let app = spawn_app().await;
    let (key, _) = org_key(&app, "mallory").await;
    let answer = as_key(
        &app,
        &key,
        Method::PATCH,
        "/checkout/cs_%00%1b%5b31m%0aforged",
        Some(seed_details()),
    )
    .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND, "{}", answer.body);
    let audit = admin(&app, Method::GET, "/admin/audit?limit=100", None).await;
    let probe = audit.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "PATCH /checkout/{id}")
        .unwrap_or_else(|| panic!("the probe is audited: {}", audit.body));
    assert_eq!(probe["resource"], "cs_[31mforged", "{probe}");
    app.stop().await;
}
