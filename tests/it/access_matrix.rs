//! Every route the router serves needs exactly what this file pins for it, whichever way the
//! path is spelled.
//!
//! The routes are enumerated from the actix router itself (its resource map, then every
//! method on every resource), and compared with [`EXPECTED`], a literal of this file: it is
//! not read back from the gateway's own list, so a route added or re-scoped without this
//! file changing fails here. Each route is then walked with every wrong credential and with
//! respelled paths (percent-encoded, doubled slashes, dot segments, trailing slashes, other
//! case, encoded slashes), which must never get a different decision than the canonical
//! path — only "no such route" (404, before any key is looked at) is allowed instead.

use std::collections::BTreeSet;
use std::time::Duration;

use sacp_domain::access::{KeyLimits, NewKey, Scope};
use serde_json::Value;

use crate::app::{ADMIN_TOKEN, CapturedLogs, TEST_KEY, TestApp, anonymous_client, spawn_app};
use crate::raw;

/// Request headers as name and value.
type Headers<'a> = &'a [(&'a str, &'a str)];

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    /// Nothing.
    Public,
    /// A key with every one of these scopes.
    Key(&'static [Scope]),
    /// The operator (admin token, or a key with `admin`).
    Admin,
}

use Need::{Admin, Key, Public};
use Scope::{CatalogRead, CheckoutRead, CheckoutWrite, OrdersRead};

/// Every route of the gateway and what it needs: pinned here, on its own.
const EXPECTED: &[(&str, &str, Need)] = &[
    ("GET", "/products", Key(&[CatalogRead])),
    ("GET", "/products/{id}", Key(&[CatalogRead])),
    ("POST", "/checkout", Key(&[CheckoutWrite])),
    ("GET", "/checkout/{id}", Key(&[CheckoutRead])),
    ("PATCH", "/checkout/{id}", Key(&[CheckoutWrite])),
    ("POST", "/checkout/{id}/cancel", Key(&[CheckoutWrite])),
    ("POST", "/checkout/{id}/complete", Key(&[CheckoutWrite])),
    (
        "GET",
        "/checkout/{id}/payment-status/{request_id}",
        Key(&[CheckoutRead]),
    ),
    (
        "GET",
        "/checkout/{id}/step-up/{step_up_id}",
        Key(&[CheckoutRead]),
    ),
    ("GET", "/orders/{id}", Key(&[OrdersRead])),
    ("GET", "/qr/{request_id}", Public),
    ("GET", "/healthz", Public),
    ("GET", "/readyz", Public),
    ("GET", "/metrics", Admin),
    ("GET", "/problems/{code}", Public),
    ("GET", "/openapi.json", Public),
    ("GET", "/docs", Public),
    ("GET", "/docs/{_:.*}", Public),
    ("GET", "/admin/keys", Admin),
    ("POST", "/admin/keys", Admin),
    ("GET", "/admin/keys/{id}", Admin),
    ("PATCH", "/admin/keys/{id}", Admin),
    ("POST", "/admin/keys/{id}/rotate", Admin),
    ("POST", "/admin/keys/{id}/revoke", Admin),
    ("GET", "/admin/audit", Admin),
    ("GET", "/admin/traffic", Admin),
    ("GET", "/admin/switches", Admin),
    ("PUT", "/admin/switches", Admin),
];

const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// A path for a pattern, with ids of the right shape that exist nowhere.
fn concrete(pattern: &str) -> String {
    pattern
        .replace("{id}", "cs_aaaaaaaaaaaaaaaaaaaaaaaaaa")
        .replace("{request_id}", "par_aaaaaaaaaaaaaaaaaaaaaaaaaa")
        .replace("{step_up_id}", "stepup_x")
        .replace("{code}", "not_found")
        .replace("{_:.*}", "index.html")
}

/// The resource patterns the router holds, read from its resource map.
async fn patterns_in_the_router(app: &TestApp) -> BTreeSet<String> {
    let state = sacp_api::ApiState::new(app.gateway.clone(), &app.url, Some(ADMIN_TOKEN));
    let service = actix_web::test::init_service(
        actix_web::App::new().configure(sacp_api::configure(state, &app.url)),
    )
    .await;
    let request = actix_web::test::TestRequest::get()
        .uri("/healthz")
        .to_request();
    let response = actix_web::test::call_service(&service, request).await;
    let map = format!("{:?}", response.request().resource_map());
    let marker = "patterns: Single(\"";
    let mut found = BTreeSet::new();
    let mut rest = map.as_str();
    while let Some(start) = rest.find(marker) {
        rest = &rest[start + marker.len()..];
        let end = rest.find('"').expect("a closing quote");
        if !rest[..end].is_empty() {
            found.insert(rest[..end].to_owned());
        }
        rest = &rest[end..];
    }
    assert!(!found.is_empty(), "the resource map lists patterns: {map}");
    found
}

#[tokio::test]
async fn the_router_serves_exactly_the_pinned_routes() {
    let app = spawn_app().await;
    let pinned: BTreeSet<String> = EXPECTED.iter().map(|(_, p, _)| (*p).to_owned()).collect();
    let patterns = patterns_in_the_router(&app).await;
    assert_eq!(
        patterns, pinned,
        "resources in the router vs the pinned list"
    );

    // Which methods each resource answers, asked without any key: a route that exists is
    // never refused as "method not allowed".
    let mut served = BTreeSet::new();
    for pattern in &patterns {
        let path = concrete(pattern);
        for method in METHODS {
            let answer = raw::send(&app.url, method, &path, &[], b"").await;
            match (*method, answer.status) {
                (_, 405) => {
                    let allow = answer.header("allow").unwrap_or_default();
                    assert!(!allow.is_empty(), "405 {method} {pattern} names Allow");
                    if *method != "HEAD" {
                        assert_eq!(answer.code(), "method_not_allowed", "{method} {pattern}");
                    }
                }
                ("OPTIONS", 204) => {
                    assert!(answer.header("allow").is_some(), "OPTIONS {pattern}");
                }
                ("HEAD", _) => {
                    assert!(
                        EXPECTED.iter().any(|(m, p, _)| *m == "GET" && p == pattern),
                        "HEAD answered on {pattern}, which has no GET"
                    );
                }
                (method, _) => {
                    served.insert((method.to_owned(), pattern.clone()));
                    assert_ne!(
                        decision(&answer),
                        Decision::NoRoute,
                        "{method} {pattern} is a route"
                    );
                }
            }
        }
    }
    let expected: BTreeSet<(String, String)> = EXPECTED
        .iter()
        .map(|(m, p, _)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(served, expected, "routes served vs the pinned list");
    app.stop().await;
}

/// The access line of each request names the key the guard admitted, or refused once it
/// had authenticated (a missing scope), and no key when none authenticated; the key's
/// secret is never logged.
#[tokio::test]
async fn the_access_line_names_the_key_admitted_or_refused() {
    let logs = CapturedLogs::install("info");
    let app = spawn_app().await;
    let (reader, reader_id) = key_with(&app, BTreeSet::from([CatalogRead]), None).await;
    let admitted = send(&app, "GET", "/products?limit=1", &[("x-api-key", &reader)]).await;
    assert_eq!(admitted.status, 200);
    let refused = send(&app, "POST", "/checkout", &[("x-api-key", &reader)]).await;
    assert_eq!(refused.status, 403);
    let unknown = send(
        &app,
        "GET",
        "/products?limit=2",
        &[("x-api-key", "sacp_nope")],
    )
    .await;
    assert_eq!(unknown.status, 401);
    app.stop().await;
    let logged = logs.text();
    let line = |request: &str, status: u16| {
        logged
            .lines()
            .find(|l| l.contains(request) && l.contains(&format!("status={status}")))
            .unwrap_or_else(|| panic!("no access line for {request} {status}:\n{logged}"))
            .to_owned()
    };
    let named = format!("key_id={}", reader_id.as_str());
    assert!(line("GET /products", 200).contains(&named));
    assert!(
        line("POST /checkout", 403).contains(&named),
        "refused after it authenticated"
    );
    assert!(
        !line("GET /products", 401).contains("key_id="),
        "no key authenticated"
    );
    for secret in [reader.as_str(), TEST_KEY] {
        assert!(!logged.contains(secret), "a secret reached the log");
    }
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
                // Room for the many requests of these tests.
                limits: KeyLimits {
                    requests_per_minute: 100_000,
                    daily_quota: 1_000_000,
                },
                expires_at: expires_in.map(|s| chrono::Utc::now() + chrono::Duration::seconds(s)),
            },
            None,
        )
        .await
        .unwrap();
    (secret.expose().to_owned(), key.id().clone())
}

/// Sends `method path` with an empty JSON body for writes and these headers.
async fn send(app: &TestApp, method: &str, path: &str, headers: &[(&str, &str)]) -> raw::RawAnswer {
    let mut all: Vec<(&str, &str)> = headers.to_vec();
    let body: &[u8] = if matches!(method, "POST" | "PATCH" | "PUT") {
        all.push(("content-type", "application/json"));
        b"{}"
    } else {
        b""
    };
    raw::send(&app.url, method, path, &all, body).await
}

/// Whether the answer refuses the credential (as opposed to whatever the route itself says,
/// such as a missing user token on `/orders/{id}`).
fn refuses_the_key(answer: &raw::RawAnswer) -> bool {
    let code = answer.code();
    (answer.status == 401 && (code.starts_with("api_key") || code == "admin_credentials_required"))
        || (answer.status == 403 && code == "insufficient_scope")
}

fn assert_refused(answer: &raw::RawAnswer, status: u16, code: &str, what: &str) {
    assert_eq!(answer.status, status, "{what}: {:?}", answer.json());
    assert_eq!(answer.code(), code, "{what}");
}

#[tokio::test]
async fn every_route_refuses_every_wrong_credential() {
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
    let (full, _) = key_with(&app, all.clone(), None).await;
    let admin_bearer = format!("Bearer {ADMIN_TOKEN}");

    for (method, pattern, need) in EXPECTED {
        let path = concrete(pattern);
        let what = format!("{method} {pattern}");
        match need {
            Public => {
                for headers in [vec![], vec![("x-api-key", unknown)]] {
                    let answer = send(&app, method, &path, &headers).await;
                    assert!(
                        !refuses_the_key(&answer),
                        "{what} is public: {}",
                        answer.status
                    );
                }
            }
            Key(needed) => {
                let refusals: [(Headers, u16, &str); 6] = [
                    (&[], 401, "api_key_required"),
                    (&[("x-api-key", unknown)], 401, "api_key_invalid"),
                    (&[("x-api-key", "far-too-short")], 401, "api_key_invalid"),
                    (&[("x-api-key", &revoked)], 401, "api_key_revoked"),
                    (&[("x-api-key", &expired)], 401, "api_key_expired"),
                    // The operator's token is not an integration key.
                    (&[("authorization", &admin_bearer)], 401, "api_key_required"),
                ];
                for (headers, status, code) in refusals {
                    let answer = send(&app, method, &path, headers).await;
                    assert_refused(&answer, status, code, &format!("{what} with {headers:?}"));
                }
                for scope in *needed {
                    let mut others = all.clone();
                    others.remove(scope);
                    let (almost, _) = key_with(&app, others, None).await;
                    let refused = send(&app, method, &path, &[("x-api-key", &almost)]).await;
                    assert_refused(&refused, 403, "insufficient_scope", &what);
                    assert_eq!(refused.json()["required_scope"], scope.as_str(), "{what}");
                }
                let allowed = send(&app, method, &path, &[("x-api-key", &full)]).await;
                assert!(
                    !refuses_the_key(&allowed),
                    "{what} with every scope: {} {:?}",
                    allowed.status,
                    allowed.json()
                );
            }
            Admin => {
                let (no_admin, _) = key_with(
                    &app,
                    all.iter().copied().filter(|s| *s != Scope::Admin).collect(),
                    None,
                )
                .await;
                let wrong_bearer = "Bearer not-the-admin-token";
                for headers in [vec![], vec![("authorization", wrong_bearer)]] {
                    let answer = send(&app, method, &path, &headers).await;
                    assert_refused(&answer, 401, "admin_credentials_required", &what);
                }
                let answer = send(&app, method, &path, &[("x-api-key", &no_admin)]).await;
                assert_refused(&answer, 403, "insufficient_scope", &what);
                let answer = send(&app, method, &path, &[("x-api-key", unknown)]).await;
                assert_refused(&answer, 401, "api_key_invalid", &what);
                for headers in [
                    vec![("authorization", admin_bearer.as_str())],
                    vec![("x-api-key", full.as_str())],
                ] {
                    let answer = send(&app, method, &path, &headers).await;
                    assert!(
                        !refuses_the_key(&answer),
                        "{what} as the operator: {} {:?}",
                        answer.status,
                        answer.json()
                    );
                }
            }
        }
    }

    // Searching needs search:read on top of catalog:read, however `q` is spelled.
    let (catalog_only, _) = key_with(&app, [CatalogRead].into_iter().collect(), None).await;
    let key = [("x-api-key", catalog_only.as_str())];
    assert_eq!(send(&app, "GET", "/products", &key).await.status, 200);
    for query in [
        "q=coffee",
        "%71=coffee",
        "q=%63offee",
        "limit=2&q=x",
        "q=&q=coffee",
    ] {
        let refused = send(&app, "GET", &format!("/products?{query}"), &key).await;
        assert_refused(&refused, 403, "insufficient_scope", query);
        assert_eq!(refused.json()["required_scope"], "search:read");
    }
    app.stop().await;
}

/// Spellings of `path` that are not `path`.
fn respellings(path: &str) -> Vec<String> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let first = segments[0];
    let rest = segments[1..].join("/");
    let tail = if rest.is_empty() {
        String::new()
    } else {
        format!("/{rest}")
    };
    let encode = |text: &str, upper: bool| -> String {
        text.bytes()
            .map(|b| {
                if upper {
                    format!("%{b:02X}")
                } else {
                    format!("%{b:02x}")
                }
            })
            .collect()
    };
    let mut variants = vec![
        // One letter encoded (the reported bypass), every byte encoded, lower-case hex.
        format!("/%{:02X}{}{tail}", first.as_bytes()[0], &first[1..]),
        format!("/{}{tail}", encode(first, true)),
        format!("/{}{tail}", encode(first, false)),
        format!("//{first}{tail}"),
        format!("/{first}/{tail}"),
        format!("{path}/"),
        format!("/./{first}{tail}"),
        format!("/x/../{first}{tail}"),
        format!("/{first}/..{tail}"),
        format!("/{}{tail}", first.to_uppercase()),
        format!("/{}{tail}", {
            let mut c = first.chars();
            c.next()
                .map(|h| h.to_uppercase().collect::<String>() + c.as_str())
                .unwrap_or_default()
        }),
        path.replace('/', "%2F"),
        format!("/{first}%2F{}", rest),
        format!("{path}%00"),
        format!("{path}?"),
        format!("{path}#fragment"),
    ];
    variants.retain(|v| v != path);
    variants.dedup();
    variants
}

/// What a gateway decided for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Decision {
    /// No route: refused before any key was looked at.
    NoRoute,
    /// Refused with this status and code.
    Refused(u16, String),
    /// Let through to the handler.
    Handled,
}

fn decision(answer: &raw::RawAnswer) -> Decision {
    match answer.status {
        404 if answer.json()["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("no route")) =>
        {
            Decision::NoRoute
        }
        400 if answer.body.is_empty() => Decision::NoRoute,
        status @ (401 | 403 | 405) => Decision::Refused(status, answer.code()),
        _ => Decision::Handled,
    }
}

#[tokio::test]
async fn a_respelled_path_never_gets_another_decision_than_its_route() {
    let app = spawn_app().await;
    let (catalog_only, _) = key_with(&app, [CatalogRead].into_iter().collect(), None).await;
    let all: BTreeSet<Scope> = Scope::ALL.into_iter().collect();
    let (full, _) = key_with(&app, all, None).await;
    let admin_bearer = format!("Bearer {ADMIN_TOKEN}");
    let credentials: [Vec<(&str, &str)>; 4] = [
        vec![],
        vec![("x-api-key", catalog_only.as_str())],
        vec![("x-api-key", full.as_str())],
        vec![("authorization", admin_bearer.as_str())],
    ];
    let mut checked = 0;
    for (method, pattern, _) in EXPECTED {
        let path = concrete(pattern);
        for headers in &credentials {
            let canonical = decision(&send(&app, method, &path, headers).await);
            for variant in respellings(&path) {
                let seen = decision(&send(&app, method, &variant, headers).await);
                assert!(
                    seen == canonical || seen == Decision::NoRoute,
                    "{method} {variant} with {headers:?}: {seen:?}, but {path} gets {canonical:?}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 1000, "{checked} respelled requests");

    // The reported bypasses, each the decision of its route.
    let catalog = [("x-api-key", catalog_only.as_str())];
    for (method, path) in [
        ("GET", "/%61dmin/keys"),
        ("POST", "/%61dmin/keys"),
        ("PUT", "/%61dmin/switches"),
        ("POST", "/%63heckout"),
    ] {
        let answer = send(&app, method, path, &catalog).await;
        assert_refused(&answer, 403, "insufficient_scope", path);
    }
    app.stop().await;
}

#[tokio::test]
async fn every_documented_operation_is_pinned_with_its_security() {
    let app = spawn_app().await;
    let doc: Value = anonymous_client()
        .get(format!("{}/openapi.json", app.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let method = method.to_uppercase();
            let need = EXPECTED
                .iter()
                .find(|(m, p, _)| *m == method && p == path)
                .map(|(_, _, need)| *need)
                .unwrap_or_else(|| panic!("{method} {path} is documented but not pinned"));
            let secured = item[method.to_lowercase()]["security"]
                .to_string()
                .contains("api_key");
            assert_eq!(
                need != Public,
                secured,
                "{method} {path}: the document says what is enforced"
            );
            documented.insert((method, path.clone()));
        }
    }
    let undocumented = ["/problems/{code}", "/openapi.json", "/docs", "/docs/{_:.*}"];
    let pinned: BTreeSet<(String, String)> = EXPECTED
        .iter()
        .filter(|(_, p, _)| !undocumented.contains(p))
        .map(|(m, p, _)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(documented, pinned, "every API route is documented");
    // Unknown paths are refused before any key is looked at.
    for headers in [vec![], vec![("x-api-key", "sacp_forged")]] {
        let unknown = send(&app, "GET", "/nowhere", &headers).await;
        assert_refused(&unknown, 404, "not_found", "/nowhere");
    }
    app.stop().await;
}

#[tokio::test]
async fn head_and_options_answer_like_the_route() {
    let app = spawn_app().await;
    let head = raw::send(&app.url, "HEAD", "/healthz", &[], b"").await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    let options = raw::send(&app.url, "OPTIONS", "/checkout/cs_x", &[], b"").await;
    assert_eq!(options.status, 204);
    assert_eq!(options.header("allow"), Some("GET, PATCH, HEAD, OPTIONS"));
    let refused = raw::send(&app.url, "DELETE", "/checkout/cs_x", &[], b"").await;
    assert_refused(&refused, 405, "method_not_allowed", "DELETE /checkout/{id}");
    assert_eq!(refused.header("allow"), Some("GET, PATCH, HEAD, OPTIONS"));
    // HEAD is a GET: it needs the same key.
    let head = raw::send(&app.url, "HEAD", "/products", &[], b"").await;
    assert_eq!(head.status, 401);
    app.stop().await;
}
