//! The operator's key management over the admin API, and revocation seen by every replica.

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

#[tokio::test]
async fn a_revocation_is_refused_by_another_replica_at_once() {
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
    // No waiting: the very next request on the other replica is refused.
    as_key(&b, &secret, Method::GET, "/products", None)
        .await
        .assert_problem(401, "api_key_revoked");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn keys_made_with_the_command_line_work_on_the_gateway() {
    use sacp_server::keys::{KeysCommand, run};
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let mut shared = settings();
    shared.database_url = Some(db.url.clone().into());
    let created = run(
        &shared,
        KeysCommand::Create {
            name: "cli".into(),
            org: "ops".into(),
            scopes: vec!["catalog:read".into()],
            requests_per_minute: Some(30),
            daily_quota: None,
            expires_at: None,
        },
    )
    .await
    .unwrap();
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
    as_key(&app, &secret, Method::GET, "/products", None)
        .await
        .assert_problem(401, "api_key_invalid");
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
    as_key(&app, fresh, Method::GET, "/products", None)
        .await
        .assert_problem(401, "api_key_revoked");
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
