//! Every bad input gets the documented 4xx as problem+json, and changes nothing.

use reqwest::Method;
use serde_json::{Value, json};

use crate::app::{TestApp, spawn_app};

const GRINDER: &str = sacp_sim::catalog::SOLD_OUT_GRINDER;
const COFFEE: &str = sacp_sim::catalog::ETHIOPIAN_YIRGACHEFFE;

struct Case {
    name: &'static str,
    method: Method,
    path: String,
    body: Option<Value>,
    status: u16,
    code: &'static str,
}

fn case(
    name: &'static str,
    method: Method,
    path: impl Into<String>,
    body: Option<Value>,
    status: u16,
    code: &'static str,
) -> Case {
    Case {
        name,
        method,
        path: path.into(),
        body,
        status,
        code,
    }
}

async fn run(app: &TestApp, cases: Vec<Case>) {
    for c in cases {
        let answer = app.call(c.method.clone(), &c.path, c.body.clone()).await;
        assert_eq!(
            answer.status.as_u16(),
            c.status,
            "{}: {}",
            c.name,
            answer.body
        );
        answer.assert_problem(c.status, c.code);
    }
}

#[tokio::test]
async fn a_table_of_bad_inputs_gets_the_documented_problems() {
    let app = spawn_app().await;
    let cart = app.create_checkout(1).await;
    let items = |quantity: Value| json!({"items": [{"product_id": COFFEE, "quantity": quantity}]});
    run(
        &app,
        vec![
            case("limit zero", Method::GET, "/products?limit=0", None, 400, "bad_request"),
            case("limit too big", Method::GET, "/products?limit=101", None, 400, "bad_request"),
            case("limit not a number", Method::GET, "/products?limit=ten", None, 400, "bad_request"),
            case("forged cursor", Method::GET, "/products?cursor=bm90LWEtY3Vyc29y", None, 400, "bad_request"),
            case("search and category", Method::GET, "/products?q=coffee&category=tea", None, 400, "bad_request"),
            case("unknown product", Method::GET, "/products/00000000-0000-0000-0000-000000000000", None, 404, "not_found"),
            case("malformed product id", Method::GET, "/products/not%20an%20id", None, 404, "not_found"),
            case("no items", Method::POST, "/checkout", Some(json!({})), 422, "validation_failed"),
            case("empty items", Method::POST, "/checkout", Some(json!({"items": []})), 422, "validation_failed"),
            case("quantity zero", Method::POST, "/checkout", Some(items(json!(0))), 422, "validation_failed"),
            case("quantity 100", Method::POST, "/checkout", Some(items(json!(100))), 422, "validation_failed"),
            case("quantity as words", Method::POST, "/checkout", Some(items(json!("two"))), 400, "bad_request"),
            case("misspelt field", Method::POST, "/checkout", Some(json!({"items": [], "fulfilment": {}})), 400, "bad_request"),
            case("json array body", Method::POST, "/checkout", Some(json!([1, 2])), 400, "bad_request"),
            case(
                "duplicate lines",
                Method::POST,
                "/checkout",
                Some(json!({"items": [{"product_id": COFFEE, "quantity": 1}, {"product_id": COFFEE, "quantity": 2}]})),
                422,
                "validation_failed",
            ),
            case("sold out", Method::POST, "/checkout", Some(json!({"items": [{"product_id": GRINDER, "quantity": 1}]})), 422, "items_unavailable"),
            case(
                "bad email",
                Method::POST,
                "/checkout",
                Some(json!({"items": [{"product_id": COFFEE, "quantity": 1}], "buyer": {"name": "J", "email": "nope"}})),
                422,
                "validation_failed",
            ),
            case("unknown checkout", Method::GET, "/checkout/cs_aaaaaaaaaaaaaaaaaaaaaaaaaa", None, 404, "not_found"),
            case("garbage checkout id", Method::GET, "/checkout/../../etc", None, 404, "not_found"),
            case("empty patch", Method::PATCH, format!("/checkout/{cart}"), Some(json!({})), 422, "validation_failed"),
            case(
                "shipping without address",
                Method::PATCH,
                format!("/checkout/{cart}"),
                Some(json!({"fulfillment": {"type": "shipping"}})),
                422,
                "validation_failed",
            ),
            case(
                "unknown fulfillment type",
                Method::PATCH,
                format!("/checkout/{cart}"),
                Some(json!({"fulfillment": {"type": "drone"}})),
                422,
                "validation_failed",
            ),
            case("complete before ready", Method::POST, format!("/checkout/{cart}/complete"), None, 409, "checkout_not_ready"),
            case("unknown request", Method::GET, format!("/checkout/{cart}/payment-status/par_aaaaaaaaaaaaaaaaaaaaaaaaaa"), None, 404, "not_found"),
            case("unknown qr", Method::GET, "/qr/par_aaaaaaaaaaaaaaaaaaaaaaaaaa", None, 404, "not_found"),
            case("step-up without token", Method::GET, format!("/checkout/{cart}/step-up/stepup_x"), None, 401, "user_token_required"),
            case("delete a checkout", Method::DELETE, format!("/checkout/{cart}"), None, 405, "method_not_allowed"),
            case("unknown route", Method::GET, "/nowhere", None, 404, "not_found"),
        ],
    )
    .await;

    // Field-level details an agent can act on.
    let answer = app
        .post(
            "/checkout",
            json!({"items": [{"product_id": COFFEE, "quantity": 0}, {"quantity": 2}]}),
        )
        .await;
    let fields: Vec<&str> = answer.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["items[0].quantity", "items[1].product_id"]);
    assert!(
        answer.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("between 1 and 99")
    );
    let not_ready = app
        .call(Method::POST, &format!("/checkout/{cart}/complete"), None)
        .await;
    assert_eq!(not_ready.body["missing"], json!(["buyer", "fulfillment"]));
    let sold_out = app
        .post(
            "/checkout",
            json!({"items": [{"product_id": GRINDER, "quantity": 1}]}),
        )
        .await;
    assert_eq!(sold_out.body["product_ids"], json!([GRINDER]));

    // Nothing was lost: the checkout is as it was.
    let checkout = app.get(&format!("/checkout/{cart}")).await;
    assert_eq!(checkout.body["status"], "cart");
    assert_eq!(checkout.body["items"][0]["quantity"], 1);
    app.stop().await;
}

#[tokio::test]
async fn bodies_that_are_not_json_or_too_large_are_refused() {
    let app = spawn_app().await;
    let text = app
        .http
        .post(format!("{}/checkout", app.url))
        .header("content-type", "text/plain")
        .body("items=1");
    app.finish(Method::POST, "/checkout", text)
        .await
        .assert_problem(415, "unsupported_media_type");
    let broken = app
        .http
        .post(format!("{}/checkout", app.url))
        .header("content-type", "application/json")
        .body("{\"items\": [");
    app.finish(Method::POST, "/checkout", broken)
        .await
        .assert_problem(400, "bad_request");
    let huge = json!({"items": [{"product_id": "x".repeat(70 * 1024), "quantity": 1}]});
    let too_large = app.http.post(format!("{}/checkout", app.url)).json(&huge);
    app.finish(Method::POST, "/checkout", too_large)
        .await
        .assert_problem(413, "payload_too_large");
    let cart = app.create_checkout(1).await;
    let huge_complete = app
        .http
        .post(format!("{}/checkout/{cart}/complete", app.url))
        .body(vec![b'a'; 70 * 1024]);
    app.finish(
        Method::POST,
        &format!("/checkout/{cart}/complete"),
        huge_complete,
    )
    .await
    .assert_problem(413, "payload_too_large");
    app.stop().await;
}

#[tokio::test]
async fn the_service_describes_itself() {
    let app = spawn_app().await;
    let health = app.get("/healthz").await;
    assert_eq!(health.body, json!({"status": "ok", "version": "1.4.0"}));
    assert_eq!(app.get("/readyz").await.body["status"], "ok");
    let doc: Value = app
        .http
        .get(format!("{}/openapi.json", app.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    assert_eq!(doc["info"]["version"], "1.4.0");
    for path in [
        "/products",
        "/checkout",
        "/checkout/{id}/complete",
        "/checkout/{id}/payment-status/{request_id}",
        "/qr/{request_id}",
        "/orders/{id}",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} is documented");
    }
    let docs = app
        .http
        .get(format!("{}/docs/", app.url))
        .send()
        .await
        .unwrap();
    assert!(docs.status().is_success());
    let html = docs.text().await.unwrap();
    assert!(html.to_lowercase().contains("swagger"));
    assert!(
        !html.contains("unpkg.com") && !html.contains("cdn."),
        "docs are served from embedded assets"
    );
    let problem = app
        .http
        .get(format!("{}/problems/cart_frozen", app.url))
        .send()
        .await
        .unwrap();
    assert!(problem.status().is_success());
    app.stop().await;
}
