//! The operator's key management over the admin API, and revocation seen by every replica.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use sacp_sim::faults::Faults;
use serde_json::{Value, json};

use crate::app::{
    ADMIN_TOKEN, Answer, TestApp, anonymous_client, settings, spawn_app, spawn_app_with,
};
use crate::database::TestDatabase;

pub async fn admin(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> Answer {
    let mut request = anonymous_client()
        .request(method.clone(), format!("{}{path}", app.url))
        .bearer_auth(ADMIN_TOKEN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    app.finish(method, path, request).await
}

pub async fn as_key(
    app: &TestApp,
    key: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Answer {
    let mut request = anonymous_client()
        .request(method.clone(), format!("{}{path}", app.url))
        .header("x-api-key", key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    app.finish(method, path, request).await
}

/// `sacp-gateway keys create` of a catalog key named `cli` in organisation `ops`.
async fn cli_create(settings: &sacp_server::Settings, requests_per_minute: Option<u32>) -> Value {
    sacp_server::keys::run(
        settings,
        sacp_server::keys::KeysCommand::Create {
            name: "cli".into(),
            org: "ops".into(),
            scopes: vec!["catalog:read".into()],
            requests_per_minute,
            daily_quota: None,
            expires_at: None,
        },
    )
    .await
    .unwrap()
}

fn checkout_body() -> Value {
    json!({"items": [{"product_id": sacp_sim::catalog::ETHIOPIAN_YIRGACHEFFE, "quantity": 1}]})
}

#[tokio::test]
async fn operators_create_inspect_change_rotate_and_revoke_keys() {
    let app = spawn_app().await;
    let created = admin(&app, Method::POST, "/admin/keys", Some(json!({
        "name": "ChatGPT shopping action", "org": "acme", "scopes": ["catalog:read", "search:read"],
    })))
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = created.str("/id");
    let secret = created.str("/key");
    assert!(secret.starts_with("sacp_"));
    assert_eq!(created.body["status"], "active");
    assert_eq!(
        created.body["requests_per_minute"], 600,
        "the read tier by default"
    );

    // The read-only key reads and searches, and may not write.
    assert_eq!(
        as_key(&app, &secret, Method::GET, "/products?q=coffee", None)
            .await
            .status,
        StatusCode::OK
    );
    as_key(
        &app,
        &secret,
        Method::POST,
        "/checkout",
        Some(checkout_body()),
    )
    .await
    .assert_problem(403, "insufficient_scope");

    // Listed and shown, never with the secret again.
    let listed = admin(&app, Method::GET, "/admin/keys", None).await;
    let ids: Vec<&str> = listed.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&id.as_str()));
    assert!(!listed.body.to_string().contains(&secret));
    let shown = admin(&app, Method::GET, &format!("/admin/keys/{id}"), None).await;
    assert_eq!(shown.body["name"], "ChatGPT shopping action");
    assert!(shown.body.get("key").is_none());

    // Scopes widened: it may now write.
    let widened = admin(
        &app,
        Method::PATCH,
        &format!("/admin/keys/{id}"),
        Some(json!({
            "scopes": ["catalog:read", "search:read", "checkout:write"], "requests_per_minute": 120,
        })),
    )
    .await;
    assert_eq!(widened.status, StatusCode::OK, "{}", widened.body);
    assert_eq!(widened.body["requests_per_minute"], 120);
    assert_eq!(
        as_key(
            &app,
            &secret,
            Method::POST,
            "/checkout",
            Some(checkout_body())
        )
        .await
        .status,
        StatusCode::CREATED
    );

    // Rotation with a grace period: both secrets work until it ends.
    let rotated = admin(
        &app,
        Method::POST,
        &format!("/admin/keys/{id}/rotate"),
        Some(json!({"grace_seconds": 60})),
    )
    .await;
    let fresh = rotated.str("/key");
    assert_ne!(fresh, secret);
    assert_eq!(
        as_key(&app, &fresh, Method::GET, "/products", None)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        as_key(&app, &secret, Method::GET, "/products", None)
            .await
            .status,
        StatusCode::OK
    );
    // Rotation without grace: the previous secret stops at once.
    let again = admin(
        &app,
        Method::POST,
        &format!("/admin/keys/{id}/rotate"),
        Some(json!({"grace_seconds": 0})),
    )
    .await;
    let newest = again.str("/key");
    as_key(&app, &fresh, Method::GET, "/products", None)
        .await
        .assert_problem(401, "api_key_invalid");
    assert_eq!(
        as_key(&app, &newest, Method::GET, "/products", None)
            .await
            .status,
        StatusCode::OK
    );

    // The kill switch for one key, and back.
    admin(
        &app,
        Method::PATCH,
        &format!("/admin/keys/{id}"),
        Some(json!({"disabled": true})),
    )
    .await;
    let off = as_key(&app, &newest, Method::GET, "/products", None).await;
    off.assert_problem(503, "api_key_disabled");
    assert!(off.headers.contains_key("retry-after"));
    admin(
        &app,
        Method::PATCH,
        &format!("/admin/keys/{id}"),
        Some(json!({"disabled": false})),
    )
    .await;
    assert_eq!(
        as_key(&app, &newest, Method::GET, "/products", None)
            .await
            .status,
        StatusCode::OK
    );

    // Revocation is at once.
    let revoked = admin(
        &app,
        Method::POST,
        &format!("/admin/keys/{id}/revoke"),
        None,
    )
    .await;
    assert_eq!(revoked.body["status"], "revoked");
    as_key(&app, &newest, Method::GET, "/products", None)
        .await
        .assert_problem(401, "api_key_revoked");
    app.stop().await;
}

#[tokio::test]
async fn the_admin_api_refuses_everyone_else_and_bad_input() {
    let app = spawn_app().await;
    let none = app
        .finish(
            Method::GET,
            "/admin/keys",
            anonymous_client().get(format!("{}/admin/keys", app.url)),
        )
        .await;
    none.assert_problem(401, "admin_credentials_required");
    let wrong = app
        .finish(
            Method::GET,
            "/admin/keys",
            anonymous_client()
                .get(format!("{}/admin/keys", app.url))
                .bearer_auth("guess"),
        )
        .await;
    wrong.assert_problem(401, "admin_credentials_required");
    // The bootstrap key has every scope but admin.
    let integration = app.call(Method::GET, "/admin/keys", None).await;
    integration.assert_problem(403, "insufficient_scope");
    assert_eq!(integration.body["required_scope"], "admin");

    // A key holding admin may administer.
    let admin_key = admin(
        &app,
        Method::POST,
        "/admin/keys",
        Some(json!({"name": "ops", "org": "us", "scopes": ["admin"]})),
    )
    .await;
    let listed = as_key(
        &app,
        &admin_key.str("/key"),
        Method::GET,
        "/admin/keys",
        None,
    )
    .await;
    assert_eq!(listed.status, StatusCode::OK);

    let bad = admin(
        &app,
        Method::POST,
        "/admin/keys",
        Some(json!({"name": "", "org": "x", "scopes": ["everything"], "requests_per_minute": 0})),
    )
    .await;
    bad.assert_problem(422, "validation_failed");
    let fields: Vec<&str> = bad.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        ["scopes[0]"],
        "scopes are checked first: {}",
        bad.body
    );
    let bad = admin(
        &app,
        Method::POST,
        "/admin/keys",
        Some(json!({"name": "", "org": "x", "scopes": [], "requests_per_minute": 0})),
    )
    .await;
    let fields: Vec<&str> = bad.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["name", "scopes", "requests_per_minute"]);
    let id = admin_key.str("/id");
    admin(
        &app,
        Method::POST,
        &format!("/admin/keys/{id}/rotate"),
        Some(json!({"grace_seconds": -1})),
    )
    .await
    .assert_problem(422, "validation_failed");
    admin(
        &app,
        Method::GET,
        "/admin/keys/key_aaaaaaaaaaaaaaaaaaaaaaaaaa",
        None,
    )
    .await
    .assert_problem(404, "not_found");
    admin(
        &app,
        Method::POST,
        "/admin/keys",
        Some(json!({"name": "x", "org": "y", "scopes": ["admin"], "colour": "red"})),
    )
    .await
    .assert_problem(400, "bad_request");
    app.stop().await;
}

/// A rotation call with a raw body and content type.
async fn rotate_raw(app: &TestApp, id: &str, content_type: &str, body: &str) -> Answer {
    let path = format!("/admin/keys/{id}/rotate");
    let request = anonymous_client()
        .post(format!("{}{path}", app.url))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", content_type)
        .body(body.to_owned());
    app.finish(Method::POST, &path, request).await
}

#[tokio::test]
async fn a_rotation_reads_its_body_strictly_and_ends_with_the_key() {
    let app = spawn_app().await;
    let create = |name: &str, expires_at: Option<String>| {
        let mut body = json!({"name": name, "org": "acme", "scopes": ["catalog:read"]});
        if let Some(at) = expires_at {
            body["expires_at"] = json!(at);
        }
        admin(&app, Method::POST, "/admin/keys", Some(body))
    };
    let created = create("rotating", None).await;
    let id = created.str("/id");
    let first = created.str("/key");

    // A grace that is not a number is refused, not read as "no grace": the secret still works.
    for body in [
        r#"{"grace_seconds":"3600"}"#,
        r#"{"grace":3600}"#,
        "{",
        "[]",
    ] {
        rotate_raw(&app, &id, "application/json", body)
            .await
            .assert_problem(400, "bad_request");
    }
    rotate_raw(
        &app,
        &id,
        "application/x-www-form-urlencoded",
        "grace_seconds=3600",
    )
    .await
    .assert_problem(415, "unsupported_media_type");
    assert_eq!(
        as_key(&app, &first, Method::GET, "/products", None)
            .await
            .status,
        StatusCode::OK,
        "a refused rotation changed nothing"
    );

    // A rotation with a grace, then another: a key keeps one previous secret, so the second
    // rotation ends the first secret at once while the second keeps its own grace.
    let second = rotate_raw(&app, &id, "application/json", r#"{"grace_seconds":3600}"#).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.body);
    let second = second.str("/key");
    let third = rotate_raw(
        &app,
        &id,
        "application/json; charset=utf-8",
        r#"{"grace_seconds":3600}"#,
    )
    .await;
    assert_eq!(third.status, StatusCode::OK, "{}", third.body);
    let third = third.str("/key");
    as_key(&app, &first, Method::GET, "/products", None)
        .await
        .assert_problem(401, "api_key_invalid");
    for secret in [&second, &third] {
        assert_eq!(
            as_key(&app, secret, Method::GET, "/products", None)
                .await
                .status,
            StatusCode::OK
        );
    }
    // No body at all: no grace.
    let fourth = rotate_raw(&app, &id, "text/plain", "").await;
    assert_eq!(fourth.status, StatusCode::OK, "{}", fourth.body);
    for secret in [&second, &third] {
        as_key(&app, secret, Method::GET, "/products", None)
            .await
            .assert_problem(401, "api_key_invalid");
    }

    // A revoked key is final: no rotation, no change (revoking again changes nothing).
    let revoke = format!("/admin/keys/{id}/revoke");
    assert_eq!(
        admin(&app, Method::POST, &revoke, None).await.status,
        StatusCode::OK
    );
    rotate_raw(&app, &id, "application/json", r#"{"grace_seconds":60}"#)
        .await
        .assert_problem(409, "key_revoked");
    admin(
        &app,
        Method::PATCH,
        &format!("/admin/keys/{id}"),
        Some(json!({"disabled": false})),
    )
    .await
    .assert_problem(409, "key_revoked");
    assert_eq!(
        admin(&app, Method::POST, &revoke, None).await.status,
        StatusCode::OK
    );
    let shown = admin(&app, Method::GET, &format!("/admin/keys/{id}"), None).await;
    assert_eq!(shown.body["status"], "revoked");

    // An expired key neither: its secret is refused and a rotation would not revive it.
    let soon = (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
    let expiring = create("expiring", Some(soon)).await;
    assert_eq!(expiring.status, StatusCode::CREATED, "{}", expiring.body);
    let expiring_id = expiring.str("/id");
    tokio::time::sleep(std::time::Duration::from_millis(2_100)).await;
    rotate_raw(&app, &expiring_id, "application/json", "{}")
        .await
        .assert_problem(409, "key_expired");
    admin(
        &app,
        Method::PATCH,
        &format!("/admin/keys/{expiring_id}"),
        Some(json!({"requests_per_minute": 10})),
    )
    .await
    .assert_problem(409, "key_expired");
    as_key(&app, &expiring.str("/key"), Method::GET, "/products", None)
        .await
        .assert_problem(401, "api_key_expired");
    app.stop().await;
}

#[tokio::test]
async fn a_revocation_is_refused_by_another_replica_within_a_second() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let mut shared = settings();
    shared.database_url = Some(db.url.clone().into());
    let faults = Faults {
        poll_interval_secs: Some(1),
        ..Faults::default()
    };
    let a = spawn_app_with(shared.clone(), faults.clone()).await;
    let b = spawn_app_with(shared, faults).await;
    let created = admin(
        &a,
        Method::POST,
        "/admin/keys",
        Some(json!({"name": "partner", "org": "acme", "scopes": ["catalog:read"]})),
    )
    .await;
    let secret = created.str("/key");
    assert_eq!(
        as_key(&b, &secret, Method::GET, "/products", None)
            .await
            .status,
        StatusCode::OK,
        "a key made on one replica works on the other"
    );
    admin(
        &a,
        Method::POST,
        &format!("/admin/keys/{}/revoke", created.str("/id")),
        None,
    )
    .await;
    // The other replica serves the key from memory; the revocation's notification drops it
    // there within a second, and it stays refused.
    refused_within_a_second(&b, &secret, "api_key_revoked").await;
    as_key(&b, &secret, Method::GET, "/products", None)
        .await
        .assert_problem(401, "api_key_revoked");
    a.stop().await;
    b.stop().await;
}

/// Asks with `secret` until the gateway refuses it with `code` (401), for at most a second:
/// a key changed by another process is dropped from every cache within that.
async fn refused_within_a_second(app: &TestApp, secret: &str, code: &str) {
    let started = std::time::Instant::now();
    loop {
        let answer = as_key(app, secret, Method::GET, "/products", None).await;
        if answer.status == StatusCode::UNAUTHORIZED || started.elapsed() > Duration::from_secs(1) {
            answer.assert_problem(401, code);
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn keys_made_with_the_command_line_work_on_the_gateway() {
    use sacp_server::keys::{KeysCommand, run};
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let mut shared = settings();
    shared.database_url = Some(db.url.clone().into());
    let created = cli_create(&shared, Some(30)).await;
    let secret = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["requests_per_minute"], 30);

    let app = spawn_app_with(
        shared.clone(),
        Faults {
            poll_interval_secs: Some(1),
            ..Faults::default()
        },
    )
    .await;
    assert_eq!(
        as_key(&app, &secret, Method::GET, "/products", None)
            .await
            .status,
        StatusCode::OK
    );
    let listed = run(&shared, KeysCommand::List).await.unwrap();
    assert!(
        listed["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["id"] == id.as_str())
    );
    let rotated = run(
        &shared,
        KeysCommand::Rotate {
            id: id.clone(),
            grace_seconds: 0,
        },
    )
    .await
    .unwrap();
    // Another process changed the key: this gateway hears of it through the database.
    refused_within_a_second(&app, &secret, "api_key_invalid").await;
    let fresh = rotated["key"].as_str().unwrap();
    assert_eq!(
        as_key(&app, fresh, Method::GET, "/products", None)
            .await
            .status,
        StatusCode::OK
    );
    run(&shared, KeysCommand::Revoke { id: id.clone() })
        .await
        .unwrap();
    refused_within_a_second(&app, fresh, "api_key_revoked").await;
    assert!(
        run(
            &shared,
            KeysCommand::Show {
                id: "key_nope".into()
            }
        )
        .await
        .is_err()
    );
    app.stop().await;
}

#[tokio::test]
async fn command_line_key_changes_are_audited_as_the_admin_api_audits_them() {
    use sacp_server::keys::{KeysCommand, run};
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let mut shared = settings();
    shared.database_url = Some(db.url.clone().into());
    let created = cli_create(&shared, None).await;
    let id = created["id"].as_str().unwrap().to_owned();
    run(
        &shared,
        KeysCommand::Update {
            id: id.clone(),
            scopes: None,
            requests_per_minute: Some(10),
            daily_quota: None,
            disabled: None,
        },
    )
    .await
    .unwrap();
    run(
        &shared,
        KeysCommand::Rotate {
            id: id.clone(),
            grace_seconds: 60,
        },
    )
    .await
    .unwrap();
    run(&shared, KeysCommand::Revoke { id: id.clone() })
        .await
        .unwrap();
    // A refusal is audited too, with the status the admin API would answer.
    assert!(
        run(
            &shared,
            KeysCommand::Revoke {
                id: "key_aaaaaaaaaaaaaaaaaaaaaaaaaa".into()
            }
        )
        .await
        .is_err()
    );
    // Reading changes nothing and is not audited.
    run(&shared, KeysCommand::List).await.unwrap();

    let app = spawn_app_with(shared, Faults::default()).await;
    let audit = admin(&app, Method::GET, "/admin/audit?limit=100", None).await;
    let events: Vec<&Value> = audit.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["request_id"]
                .as_str()
                .is_some_and(|r| r.starts_with("cli_"))
        })
        .collect();
    let seen: Vec<(String, u64, String)> = events
        .iter()
        .rev()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["status"].as_u64().unwrap(),
                e["resource"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("POST /admin/keys".to_owned(), 201, id.clone()),
            ("PATCH /admin/keys/{id}".to_owned(), 200, id.clone()),
            ("POST /admin/keys/{id}/rotate".to_owned(), 200, id.clone()),
            ("POST /admin/keys/{id}/revoke".to_owned(), 200, id.clone()),
            (
                "POST /admin/keys/{id}/revoke".to_owned(),
                404,
                "key_aaaaaaaaaaaaaaaaaaaaaaaaaa".to_owned()
            ),
        ]
    );
    let text = audit.body.to_string();
    assert!(
        !text.contains(created["key"].as_str().unwrap()),
        "no secret in the audit"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_key_records_when_it_was_last_used_at_most_once_a_minute() {
    let app = spawn_app().await;
    let created = admin(
        &app,
        Method::POST,
        "/admin/keys",
        Some(json!({"name": "used", "org": "acme", "scopes": ["catalog:read"]})),
    )
    .await;
    let (secret, id) = (created.str("/key"), created.str("/id"));
    assert!(created.body["last_used_at"].is_null());
    let path = format!("/admin/keys/{id}");
    for _ in 0..3 {
        assert_eq!(
            as_key(&app, &secret, Method::GET, "/products", None)
                .await
                .status,
            StatusCode::OK
        );
    }
    // Uses are written in the background, within about a second.
    let mut first = Value::Null;
    for _ in 0..30 {
        first = admin(&app, Method::GET, &path, None).await.body["last_used_at"].clone();
        if !first.is_null() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(first.is_string(), "last_used_at is set");
    // Used again within the minute: not written again.
    as_key(&app, &secret, Method::GET, "/products", None).await;
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    assert_eq!(
        admin(&app, Method::GET, &path, None).await.body["last_used_at"],
        first
    );
    app.stop().await;
}

#[tokio::test]
async fn sandbox_starts_on_postgres_keep_one_demo_key_that_expires() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let mut sandbox = settings();
    sandbox.database_url = Some(db.url.clone().into());
    sandbox.bootstrap_api_key = None;
    let mut demo = Vec::new();
    for _ in 0..3 {
        let running = sacp_server::start(&sandbox).await.unwrap();
        demo.push(
            running
                .demo_key
                .clone()
                .expect("a demo key in sandbox mode"),
        );
        running.stop().await;
    }
    let running = sacp_server::start(&sandbox).await.unwrap();
    let keys = running.gateway.keys().list().await.unwrap();
    let now = chrono::Utc::now();
    let active: Vec<_> = keys
        .iter()
        .filter(|k| k.status(now) == sacp_domain::access::KeyStatus::Active)
        .collect();
    assert_eq!(active.len(), 1, "only the last start's demo key is live");
    let expires = active[0].record().expires_at.expect("the demo key expires");
    assert!(
        expires > now + chrono::Duration::hours(23) && expires <= now + chrono::Duration::hours(24)
    );
    let earlier = sacp_domain::access::key_id_of(&demo[0]).unwrap();
    assert_eq!(
        running
            .gateway
            .keys()
            .get(earlier.as_str())
            .await
            .unwrap()
            .status(now),
        sacp_domain::access::KeyStatus::Revoked
    );
    running.stop().await;
}

#[tokio::test]
async fn a_start_never_revives_or_replaces_what_an_operator_did_to_the_bootstrap_key() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let mut shared = settings();
    shared.database_url = Some(db.url.clone().into());
    let secret = crate::app::TEST_KEY;
    let id = sacp_domain::access::key_id_of(secret).unwrap();

    let first = spawn_app_with(shared.clone(), Faults::default()).await;
    let (_, rotated) = first.gateway.keys().rotate(id.as_str(), 0).await.unwrap();
    first.stop().await;
    // Restarted with the same variable: the rotation stands.
    let second = spawn_app_with(shared.clone(), Faults::default()).await;
    as_key(&second, secret, Method::GET, "/products", None)
        .await
        .assert_problem(401, "api_key_invalid");
    assert_eq!(
        as_key(&second, rotated.expose(), Method::GET, "/products", None)
            .await
            .status,
        StatusCode::OK
    );
    second.gateway.keys().revoke(id.as_str()).await.unwrap();
    second.stop().await;
    // Revoked stays revoked.
    let mut third_settings = shared.clone();
    third_settings.bootstrap_api_key = Some(secret.to_owned().into());
    let third = sacp_server::start(&third_settings).await.unwrap();
    let key = third.gateway.keys().get(id.as_str()).await.unwrap();
    assert!(key.record().revoked_at.is_some());
    third.stop().await;
    // A new secret gets a key of its own; the old key is left to the operator.
    let mut changed = shared.clone();
    let new_secret = "a-new-bootstrap-secret-of-at-least-32-chars";
    changed.bootstrap_api_key = Some(new_secret.to_owned().into());
    let fourth = sacp_server::start(&changed).await.unwrap();
    let new_id = sacp_domain::access::key_id_of(new_secret).unwrap();
    assert_ne!(new_id, id);
    let fresh = fourth.gateway.keys().get(new_id.as_str()).await.unwrap();
    assert_eq!(fresh.authenticate(new_secret, chrono::Utc::now()), Ok(()));
    fourth.stop().await;
}
