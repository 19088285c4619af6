//! Every route refuses every wrong key: none, unknown, revoked, expired, and one holding every
//! scope except the one the route needs. Routes come from the same table the gateway
//! enforces, and every operation of the served OpenAPI document must be in that table.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::Method;
use sacp_api::access::{Access, ROUTES};
use sacp_domain::access::{KeyLimits, NewKey, Scope};
use serde_json::Value;

use crate::app::{TestApp, anonymous_client, spawn_app};

fn concrete(pattern: &str) -> String {
    pattern
        .replace("{id}", "cs_aaaaaaaaaaaaaaaaaaaaaaaaaa")
        .replace("{request_id}", "par_aaaaaaaaaaaaaaaaaaaaaaaaaa")
        .replace("{step_up_id}", "stepup_x")
        .replace("{code}", "not_found")
}

async fn key_with(
    app: &TestApp,
    scopes: BTreeSet<Scope>,
    expires_in: Option<i64>,
) -> (String, sacp_domain::ApiKeyId) {
    let (key, secret) = app
        .gateway
        .keys()
        .create(
            NewKey {
                name: "matrix".into(),
                org: "tests".into(),
                scopes,
                limits: KeyLimits::READ_TIER,
                expires_at: expires_in.map(|s| chrono::Utc::now() + chrono::Duration::seconds(s)),
            },
            None,
        )
        .await
        .unwrap();
    (secret.expose().to_owned(), key.id().clone())
}

async fn send(app: &TestApp, method: &str, path: &str, key: Option<&str>) -> crate::app::Answer {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = anonymous_client().request(method.clone(), format!("{}{path}", app.url));
    if matches!(method, Method::POST | Method::PATCH) {
        request = request.json(&serde_json::json!({}));
    }
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    app.finish(method, path, request).await
}

#[tokio::test]
async fn every_route_refuses_every_wrong_key() {
    let app = spawn_app().await;
    let all: BTreeSet<Scope> = Scope::ALL.into_iter().collect();
    let (revoked, revoked_id) = key_with(&app, all.clone(), None).await;
    app.gateway
        .keys()
        .revoke(revoked_id.as_str())
        .await
        .unwrap();
    let (expired, _) = key_with(&app, all.clone(), Some(1)).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let unknown =
        "sacp_aaaaaaaaaaaaaaaaaaaaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    let mut checked = 0;
    for (method, pattern, access) in ROUTES {
        let Access::Scopes(needed) = access else {
            continue;
        };
        let path = concrete(pattern);
        send(&app, method, &path, None)
            .await
            .assert_problem(401, "api_key_required");
        send(&app, method, &path, Some(unknown))
            .await
            .assert_problem(401, "api_key_invalid");
        send(&app, method, &path, Some("far-too-short"))
            .await
            .assert_problem(401, "api_key_invalid");
        send(&app, method, &path, Some(&revoked))
            .await
            .assert_problem(401, "api_key_revoked");
        send(&app, method, &path, Some(&expired))
            .await
            .assert_problem(401, "api_key_expired");
        for scope in *needed {
            let mut others = all.clone();
            others.remove(scope);
            let (almost, _) = key_with(&app, others, None).await;
            let refused = send(&app, method, &path, Some(&almost)).await;
            refused.assert_problem(403, "insufficient_scope");
            assert_eq!(
                refused.body["required_scope"],
                scope.as_str(),
                "{method} {pattern}"
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 10, "every protected route was walked");

    // Searching needs search:read on top of catalog:read.
    let (catalog_only, _) = key_with(&app, [Scope::CatalogRead].into_iter().collect(), None).await;
    assert_eq!(
        send(&app, "GET", "/products", Some(&catalog_only))
            .await
            .status,
        200
    );
    let refused = send(&app, "GET", "/products?q=coffee", Some(&catalog_only)).await;
    refused.assert_problem(403, "insufficient_scope");
    assert_eq!(refused.body["required_scope"], "search:read");

    // The MVP read-only key (ADR 019): catalog and search, nothing else.
    let (read_only, _) = key_with(
        &app,
        [Scope::CatalogRead, Scope::SearchRead]
            .into_iter()
            .collect(),
        None,
    )
    .await;
    assert_eq!(
        send(&app, "GET", "/products?q=coffee", Some(&read_only))
            .await
            .status,
        200
    );
    send(&app, "POST", "/checkout", Some(&read_only))
        .await
        .assert_problem(403, "insufficient_scope");
    app.stop().await;
}

#[tokio::test]
async fn every_documented_operation_is_in_the_access_table() {
    let app = spawn_app().await;
    let doc: Value = anonymous_client()
        .get(format!("{}/openapi.json", app.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let method = method.to_uppercase();
            assert!(
                ROUTES.iter().any(|(m, p, _)| *m == method && p == path),
                "{method} {path} has no entry in the access table"
            );
            let protected = ROUTES
                .iter()
                .any(|(m, p, a)| *m == method && p == path && *a != Access::Public);
            let secured = item[method.to_lowercase()]["security"]
                .to_string()
                .contains("api_key");
            assert_eq!(
                protected, secured,
                "{method} {path}: the document says what the table enforces"
            );
        }
    }
    // Public routes work without any key.
    for path in [
        "/healthz",
        "/readyz",
        "/openapi.json",
        "/problems/not_found",
    ] {
        let answer = anonymous_client()
            .get(format!("{}{path}", app.url))
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_success(), "{path}");
    }
    let unknown = anonymous_client()
        .get(format!("{}/nowhere", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 401, "unknown paths need a key too");
    app.stop().await;
}
