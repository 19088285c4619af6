//! MCP at `/mcp`, end to end over HTTP: the seed conversation in both protocol eras, the
//! guardrails of REST on every tool call, and what must never leak.

use std::time::Duration;

use base64::Engine as _;
use reqwest::StatusCode;
use sacp_domain::access::{KeyLimits, NewKey, Scope};
use sacp_sim::catalog::ETHIOPIAN_YIRGACHEFFE;
use serde_json::{Value, json};

use crate::admin::admin;
use crate::app::{
    ADMIN_TOKEN, CapturedLogs, TEST_KEY, TestApp, anonymous_client, settings, spawn_app,
    spawn_app_with,
};
use crate::mcp_client::{ERAS, Era, McpClient, problem, text};

fn seed_items() -> Value {
    json!([{"product_id": ETHIOPIAN_YIRGACHEFFE, "quantity": 1}])
}

fn seed_details() -> (Value, Value) {
    let details = crate::app::seed_details();
    (details["buyer"].clone(), details["fulfillment"].clone())
}

/// A key of organisation `org` with these scopes.
async fn key(app: &TestApp, org: &str, scopes: &[Scope]) -> String {
    let (_, secret) = app
        .gateway
        .keys()
        .create(
            NewKey {
                name: format!("mcp test {org}"),
                org: org.into(),
                scopes: scopes.iter().copied().collect(),
                limits: KeyLimits::READ_TIER,
                expires_at: None,
            },
            None,
        )
        .await
        .unwrap();
    secret.expose().to_owned()
}

/// The text a QR code image (base64 PNG) holds.
fn decode_qr(png_base64: &str) -> String {
    let png = base64::engine::general_purpose::STANDARD
        .decode(png_base64)
        .unwrap();
    let image = image::load_from_memory(&png).unwrap().to_luma8();
    let mut prepared = rqrr::PreparedImage::prepare(image);
    let grids = prepared.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in the image");
    grids[0].decode().unwrap().1
}

/// Asks `get_payment_status` until the payment is no longer pending or approved.
/// A checkout of the seed items with the seed buyer and address, and its payment requested:
/// its id and the `request_payment` result.
async fn payment_requested(client: &McpClient<'_>) -> (String, Value) {
    let created = client
        .call("create_checkout", json!({"items": seed_items()}))
        .await;
    let id = created["structuredContent"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (buyer, fulfillment) = seed_details();
    client
        .call(
            "update_checkout",
            json!({"checkout_id": id, "buyer": buyer, "fulfillment": fulfillment}),
        )
        .await;
    let payment = client
        .call("request_payment", json!({"checkout_id": id}))
        .await;
    (id, payment)
}

async fn settled(client: &McpClient<'_>, checkout_id: &str) -> Value {
    for _ in 0..100 {
        let status = client
            .call("get_payment_status", json!({"checkout_id": checkout_id}))
            .await;
        let state = status["structuredContent"]["status"].as_str().unwrap_or("");
        if !matches!(state, "pending" | "approved") {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("still pending after 20 s");
}

#[tokio::test]
async fn the_seed_conversation_completes_in_every_protocol_era() {
    let app = spawn_app().await;
    for era in ERAS {
        let client = McpClient::new(&app, Some(TEST_KEY), era);
        let started = client.start().await;
        let info = match era {
            Era::Stateless => &started["_meta"]["io.modelcontextprotocol/serverInfo"],
            Era::Handshake(_) => &started["serverInfo"],
        };
        assert_eq!(info["name"], "sacp-gateway", "{era:?}: {started}");
        let names: Vec<String> = client
            .tools()
            .await
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            names,
            [
                "search_products",
                "get_product",
                "create_checkout",
                "update_checkout",
                "get_checkout",
                "cancel_checkout",
                "request_payment",
                "get_payment_status"
            ]
        );

        let found = client
            .call("search_products", json!({"query": "coffee"}))
            .await;
        let products = found["structuredContent"]["products"].as_array().unwrap();
        assert!(products.iter().any(|p| p["id"] == ETHIOPIAN_YIRGACHEFFE));
        assert!(text(&found).contains("CA$18.99"), "{}", text(&found));
        let product = client
            .call("get_product", json!({"product_id": ETHIOPIAN_YIRGACHEFFE}))
            .await;
        assert_eq!(product["structuredContent"]["price"]["amount"], 1899);

        let created = client
            .call("create_checkout", json!({"items": seed_items()}))
            .await;
        let checkout = &created["structuredContent"];
        assert_eq!(checkout["total"]["amount"], 2146, "{era:?}: {created}");
        assert_eq!(checkout["total"]["formatted"], "CA$21.46");
        assert_eq!(checkout["missing"], json!(["buyer", "fulfillment"]));
        assert!(text(&created).contains("update_checkout"));
        let id = checkout["id"].as_str().unwrap().to_owned();

        let (buyer, fulfillment) = seed_details();
        let ready = client
            .call(
                "update_checkout",
                json!({"checkout_id": id, "buyer": buyer, "fulfillment": fulfillment}),
            )
            .await;
        assert_eq!(ready["structuredContent"]["status"], "ready_for_payment");
        assert!(text(&ready).contains("request_payment"), "{}", text(&ready));

        let payment = client
            .call("request_payment", json!({"checkout_id": id}))
            .await;
        let approval = &payment["structuredContent"];
        assert_eq!(approval["status"], "authorization_required");
        assert_eq!(approval["amount"]["amount"], 2146, "the server's amount");
        let link = approval["authorization_url"].as_str().unwrap().to_owned();
        let image = payment["content"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "image")
            .expect("a QR code image");
        assert_eq!(image["mimeType"], "image/png");
        assert_eq!(
            decode_qr(image["data"].as_str().unwrap()),
            link,
            "the QR is the link"
        );
        assert!(text(&payment).contains("CA$21.46"));
        assert!(text(&payment).contains(approval["user_code"].as_str().unwrap()));

        // Asking again while it is pending gives the same request, not a second one.
        let again = client
            .call("request_payment", json!({"checkout_id": id}))
            .await;
        assert_eq!(
            again["structuredContent"]["request_id"],
            approval["request_id"]
        );
        let pending = client
            .call("get_payment_status", json!({"checkout_id": id}))
            .await;
        assert_eq!(pending["structuredContent"]["status"], "pending");

        app.decide_in_wallet(&link, true).await;
        let done = settled(&client, &id).await;
        assert_eq!(done["structuredContent"]["status"], "completed", "{done}");
        let order_id = done["structuredContent"]["order_id"].as_str().unwrap();
        let checkout = client
            .call("get_checkout", json!({"checkout_id": id}))
            .await;
        assert_eq!(checkout["structuredContent"]["order_id"], order_id);
    }
    let orders = app.sims.store.orders();
    assert_eq!(orders.len(), ERAS.len(), "one order per conversation");
    assert!(orders.iter().all(|o| o.total.minor_units() == 2146));
    app.stop().await;
}

#[tokio::test]
async fn a_key_sees_and_calls_only_what_its_scopes_allow() {
    let app = spawn_app().await;
    let catalog_only = key(&app, "acme", &[Scope::CatalogRead]).await;
    for era in ERAS {
        let client = McpClient::new(&app, Some(&catalog_only), era);
        client.start().await;
        let names: Vec<String> = client
            .tools()
            .await
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(names, ["search_products", "get_product"], "{era:?}");
        // Browsing is catalog:read; searching with words needs search:read as well.
        let browse = client
            .call("search_products", json!({"category": "tea"}))
            .await;
        assert_ne!(browse["isError"], true, "{browse}");
        let search = client
            .call("search_products", json!({"query": "coffee"}))
            .await;
        let refused = problem(&search);
        assert_eq!(refused["code"], "insufficient_scope");
        assert_eq!(refused["required_scope"], "search:read");
        // A tool it does not see is refused by name, not run.
        let write = client
            .request(
                "tools/call",
                Some(json!({"name": "create_checkout", "arguments": {"items": seed_items()}})),
            )
            .await;
        let refused = problem(&write);
        assert_eq!(refused["code"], "insufficient_scope");
        assert_eq!(refused["required_scope"], "checkout:write");
        assert!(text(&write).contains("checkout:write"));
        // Arguments it may not send are not read: the scope is checked first, so the
        // refusal tells nothing of the tool's arguments.
        let malformed = client
            .request(
                "tools/call",
                Some(json!({"name": "request_payment", "arguments": {"checkout_id": 5}})),
            )
            .await;
        assert_eq!(problem(&malformed)["code"], "insufficient_scope");
    }
    // Refusals are counted per source, action, status and minute, not audited one by one.
    let audit = admin(&app, reqwest::Method::GET, "/admin/audit?limit=100", None)
        .await
        .body;
    let payment_refusals: Vec<&Value> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "POST /checkout/{id}/complete")
        .collect();
    assert!(
        payment_refusals.iter().all(|e| e["status"] == 403),
        "{payment_refusals:?}"
    );
    assert_eq!(
        app.sims.store.stats().sessions_created,
        0,
        "nothing was opened"
    );
    app.stop().await;
}

#[tokio::test]
async fn without_a_key_mcp_answers_401_unless_the_anonymous_tier_serves_the_catalog() {
    let app = spawn_app().await;
    let client = McpClient::new(&app, None, Era::Handshake("2025-06-18"));
    let reply = client
        .send(
            "initialize",
            Some(json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "x", "version": "1"}})),
            Some(1),
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.body["code"], "api_key_required", "{}", reply.body);
    assert_eq!(
        reply.headers["content-type"], "application/problem+json",
        "a problem, not a JSON-RPC error"
    );
    // A challenge for the key (RFC 9110 requires one on a 401), and no OAuth metadata, as
    // none is served.
    let challenge = reply.headers["www-authenticate"].to_str().unwrap();
    assert!(challenge.starts_with("ApiKey "), "{challenge}");
    assert!(!challenge.contains("resource_metadata"), "{challenge}");
    // A key that is not one, in either header.
    let wrong = McpClient::new(&app, Some("sacp_nope"), Era::Stateless);
    assert_eq!(
        wrong.send("server/discover", None, Some(1)).await.status,
        StatusCode::UNAUTHORIZED
    );
    let bearer = anonymous_client()
        .post(format!("{}/mcp", app.url))
        .header("authorization", format!("Bearer {TEST_KEY}"))
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "x", "version": "1"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), StatusCode::OK, "the key as a bearer token");
    app.stop().await;

    let mut anonymous = settings();
    anonymous.limits.anonymous_per_minute = Some(100);
    let app = spawn_app_with(anonymous, sacp_sim::faults::Faults::default()).await;
    let client = McpClient::new(&app, None, Era::Stateless);
    client.start().await;
    let names: Vec<String> = client
        .tools()
        .await
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["search_products", "get_product"]);
    let browse = client
        .call("get_product", json!({"product_id": ETHIOPIAN_YIRGACHEFFE}))
        .await;
    assert_ne!(browse["isError"], true);
    let refused = client
        .request(
            "tools/call",
            Some(json!({"name": "get_checkout", "arguments": {"checkout_id": "cs_aaaaaaaaaaaaaaaaaaaaaaaaaa"}})),
        )
        .await;
    assert_eq!(problem(&refused)["code"], "api_key_required");
    app.stop().await;
}

#[tokio::test]
async fn a_page_of_another_origin_is_refused() {
    let app = spawn_app().await;
    let mut client = McpClient::new(&app, Some(TEST_KEY), Era::Stateless);
    client.headers = vec![("origin".into(), "https://evil.example".into())];
    let reply = client.send("server/discover", None, Some(1)).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.body["code"], "forbidden_origin");
    // The gateway's own origin is served.
    client.headers = vec![("origin".into(), app.url.clone())];
    assert_eq!(
        client.send("server/discover", None, Some(1)).await.status,
        StatusCode::OK
    );
    // Behind a proxy that forwards another Host, clients (no Origin) are served.
    client.headers = vec![("host".into(), "gateway.internal:8080".into())];
    assert_eq!(
        client.send("server/discover", None, Some(1)).await.status,
        StatusCode::OK
    );
    app.stop().await;
}

#[tokio::test]
async fn tool_calls_meet_the_guardrails_of_the_routes_they_mirror() {
    let mut limited = settings();
    // Counted as POST /checkout counts them: a replay and a refused reuse count too.
    limited.limits.checkouts_per_day = 6;
    let app = spawn_app_with(limited, sacp_sim::faults::Faults::default()).await;
    let client = McpClient::new(&app, Some(TEST_KEY), Era::Handshake("2025-11-25"));
    client.start().await;

    // Idempotent creation: a retry (arguments in another order) returns the first checkout.
    let first = client
        .call(
            "create_checkout",
            json!({"items": seed_items(), "idempotency_key": "retry-1"}),
        )
        .await;
    let retry = client
        .call(
            "create_checkout",
            json!({"idempotency_key": "retry-1", "items": seed_items()}),
        )
        .await;
    assert_eq!(
        first["structuredContent"]["id"],
        retry["structuredContent"]["id"]
    );
    let reused = client
        .call(
            "create_checkout",
            json!({"items": [{"product_id": ETHIOPIAN_YIRGACHEFFE, "quantity": 2}], "idempotency_key": "retry-1"}),
        )
        .await;
    assert_eq!(problem(&reused)["code"], "idempotency_key_reused");
    assert_eq!(app.sims.store.stats().sessions_created, 1);

    // A failed first call is replayed as it failed, with its own code.
    let sold_out = json!({"items": [{"product_id": sacp_sim::catalog::SOLD_OUT_GRINDER, "quantity": 1}], "idempotency_key": "retry-2"});
    let failed = client.call("create_checkout", sold_out.clone()).await;
    assert_eq!(problem(&failed)["code"], "items_unavailable");
    let replay = client.call("create_checkout", sold_out).await;
    assert_eq!(problem(&replay)["code"], "items_unavailable", "{replay}");
    assert!(text(&replay).contains("idempotency_key"));

    // The daily checkout quota counts tool calls as it counts POST /checkout.
    let second = client
        .call("create_checkout", json!({"items": seed_items()}))
        .await;
    assert_ne!(second["isError"], true);
    let over = client
        .call("create_checkout", json!({"items": seed_items()}))
        .await;
    let refused = problem(&over);
    assert_eq!(refused["code"], "rate_limited");
    assert_eq!(refused["policy"], "key-checkouts");
    assert!(text(&over).contains("Retry after"));

    // The cart is frozen while the person approves.
    let id = first["structuredContent"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (buyer, fulfillment) = seed_details();
    client
        .call(
            "update_checkout",
            json!({"checkout_id": id, "buyer": buyer, "fulfillment": fulfillment}),
        )
        .await;
    client
        .call("request_payment", json!({"checkout_id": id}))
        .await;
    let frozen = client
        .call("update_checkout", json!({"checkout_id": id, "items": [{"product_id": ETHIOPIAN_YIRGACHEFFE, "quantity": 3}]}))
        .await;
    assert_eq!(problem(&frozen)["code"], "cart_frozen");

    // A kill switch stops payments here as on REST.
    let switched = anonymous_client()
        .put(format!("{}/admin/switches", app.url))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"read_only": false, "checkout_creation": true, "payments": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(switched.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let other = second["structuredContent"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    client
        .call(
            "update_checkout",
            json!({"checkout_id": other, "buyer": buyer, "fulfillment": fulfillment}),
        )
        .await;
    let off = client
        .call("request_payment", json!({"checkout_id": other}))
        .await;
    assert_eq!(problem(&off)["code"], "switched_off");

    // Another organisation's checkout does not exist for this key.
    let stranger = key(&app, "globex", &[Scope::CheckoutRead, Scope::CheckoutWrite]).await;
    let theirs = McpClient::new(&app, Some(&stranger), Era::Stateless);
    let hidden = theirs
        .call("get_checkout", json!({"checkout_id": id}))
        .await;
    assert_eq!(problem(&hidden)["code"], "not_found");
    let probe = theirs
        .call("cancel_checkout", json!({"checkout_id": id}))
        .await;
    assert_eq!(problem(&probe)["code"], "not_found");

    // Audited as the REST routes, under the MCP request's id.
    let audit = admin(&app, reqwest::Method::GET, "/admin/audit?limit=100", None)
        .await
        .body;
    let actions: Vec<(String, i64)> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["status"].as_i64().unwrap(),
            )
        })
        .collect();
    assert!(
        actions.contains(&("POST /checkout".into(), 201)),
        "{actions:?}"
    );
    assert!(
        actions.contains(&("PATCH /checkout/{id}".into(), 200)),
        "{actions:?}"
    );
    assert!(
        actions.contains(&("POST /checkout/{id}/complete".into(), 202)),
        "{actions:?}"
    );
    assert!(
        actions.iter().all(|(a, _)| a != "POST /mcp"),
        "calls, not envelopes"
    );
    // A probe of another organisation's checkout is audited with the id it tried.
    assert!(
        audit["events"].as_array().unwrap().iter().any(|e| {
            e["action"] == "POST /checkout/{id}/cancel"
                && e["status"] == 404
                && e["resource"] == id.as_str()
        }),
        "{audit}"
    );
    app.stop().await;
}

#[tokio::test]
async fn no_device_code_or_token_reaches_an_mcp_client_or_a_log() {
    let logs = CapturedLogs::install("debug");
    let app = spawn_app().await;
    let client = McpClient::new(&app, Some(TEST_KEY), Era::Stateless);
    client.start().await;
    let (id, payment) = payment_requested(&client).await;
    let user_code = payment["structuredContent"]["user_code"]
        .as_str()
        .unwrap()
        .to_owned();
    app.decide_in_wallet(
        payment["structuredContent"]["authorization_url"]
            .as_str()
            .unwrap(),
        true,
    )
    .await;
    settled(&client, &id).await;
    let device_code = app.sims.wallet.device_code_of(&user_code).unwrap();
    let minted = app.sims.wallet.stats();
    assert!(minted.device_tokens_minted >= 1);
    for body in app.seen.lock().unwrap().iter() {
        assert!(
            !body.contains(&device_code),
            "the device code leaked: {body}"
        );
        assert!(!body.contains("access_token"), "a token leaked: {body}");
        assert!(!body.contains("payment_token"), "a token leaked: {body}");
    }
    let tokens = app.sims.wallet.issued_access_tokens();
    assert!(!tokens.is_empty(), "the approval minted a token");
    app.stop().await;
    let logged = logs.text();
    assert!(logged.contains("tool_call"), "the capture works");
    for secret in tokens
        .iter()
        .map(String::as_str)
        .chain([device_code.as_str(), TEST_KEY])
    {
        assert!(!logged.contains(secret), "a secret reached the log");
    }
}

#[tokio::test]
async fn the_approval_widget_is_one_versioned_resource_linked_from_request_payment() {
    let app = spawn_app().await;
    let client = McpClient::new(&app, Some(TEST_KEY), Era::Handshake("2025-11-25"));
    let started = client.start().await;
    assert!(
        started["capabilities"]["resources"].is_object(),
        "{started}"
    );
    let listed = client.request("resources/list", None).await;
    let resources = listed["resources"].as_array().unwrap();
    assert_eq!(resources.len(), 1);
    let widget = &resources[0];
    assert_eq!(widget["uri"], sacp_mcp::widget::URI);
    assert_eq!(widget["mimeType"], "text/html;profile=mcp-app");
    assert_eq!(widget["_meta"]["ui"]["csp"]["connectDomains"], json!([]));
    assert_eq!(
        widget["_meta"]["openai/widgetCSP"]["connect_domains"],
        json!([])
    );
    assert_eq!(widget["_meta"]["ui"]["domain"], app.url.as_str());

    let read = client
        .request(
            "resources/read",
            Some(json!({"uri": sacp_mcp::widget::URI})),
        )
        .await;
    let contents = &read["contents"][0];
    assert_eq!(contents["mimeType"], "text/html;profile=mcp-app");
    assert!(
        contents["text"]
            .as_str()
            .unwrap()
            .contains("<!doctype html>")
    );
    let unknown = client
        .send(
            "resources/read",
            Some(json!({"uri": "ui://sacp/nope.html"})),
            Some(99),
        )
        .await;
    assert!(unknown.body["error"].is_object(), "{}", unknown.body);

    let tools = client.tools().await;
    let request_payment = tools
        .iter()
        .find(|t| t["name"] == "request_payment")
        .unwrap();
    assert_eq!(
        request_payment["_meta"]["ui"]["resourceUri"],
        sacp_mcp::widget::URI
    );
    assert_eq!(
        request_payment["_meta"]["openai/outputTemplate"],
        sacp_mcp::widget::URI
    );
    let annotations = &request_payment["annotations"];
    assert_eq!(annotations["readOnlyHint"], false);
    assert_eq!(annotations["destructiveHint"], false);
    let search = tools
        .iter()
        .find(|t| t["name"] == "search_products")
        .unwrap();
    assert_eq!(search["annotations"]["readOnlyHint"], true);

    let (_, payment) = payment_requested(&client).await;
    let shown = &payment["_meta"]["sacp/approval"];
    assert!(
        shown["merchant"]
            .as_str()
            .unwrap()
            .contains("SACP Coffee Roasters")
    );
    assert_eq!(shown["items"][0]["name"], "Ethiopian Yirgacheffe");
    assert_eq!(shown["total"]["amount"], 2146);
    assert!(
        shown["qr_svg"].as_str().unwrap().starts_with("<?xml")
            || shown["qr_svg"].as_str().unwrap().contains("<svg")
    );
    app.stop().await;
}

#[tokio::test]
async fn a_client_that_opens_urls_is_asked_to_open_the_wallet_page() {
    let app = spawn_app().await;
    let (buyer, fulfillment) = seed_details();
    for era in ERAS {
        let mut client = McpClient::new(&app, Some(TEST_KEY), era);
        client.capabilities = json!({"elicitation": {"url": {}}});
        client.start().await;
        let created = client
            .call("create_checkout", json!({"items": seed_items()}))
            .await;
        let id = created["structuredContent"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        client
            .call(
                "update_checkout",
                json!({"checkout_id": id, "buyer": buyer, "fulfillment": fulfillment}),
            )
            .await;
        let call = json!({"name": "request_payment", "arguments": {"checkout_id": id}});
        let first = client.request("tools/call", Some(call.clone())).await;
        if era != Era::Stateless {
            // Without a session the gateway cannot ask: the result carries the link.
            assert!(
                first["structuredContent"]["authorization_url"].is_string(),
                "{first}"
            );
            continue;
        }
        assert_eq!(first["resultType"], "input_required", "{first}");
        let ask = &first["inputRequests"]["approve_in_wallet"];
        assert_eq!(ask["method"], "elicitation/create");
        assert_eq!(ask["params"]["mode"], "url");
        assert!(
            ask["params"]["message"]
                .as_str()
                .unwrap()
                .contains("CA$21.46")
        );
        let url = ask["params"]["url"].as_str().unwrap().to_owned();
        // The person opens it and approves; the client asks again with the answer.
        app.decide_in_wallet(&url, true).await;
        let mut retry = call.clone();
        retry["inputResponses"] = json!({"approve_in_wallet": {"action": "accept"}});
        retry["requestState"] = first["requestState"].clone();
        let second = client.request("tools/call", Some(retry)).await;
        assert_eq!(
            second["structuredContent"]["authorization_url"],
            url.as_str(),
            "{second}"
        );
        let done = settled(&client, &id).await;
        assert_eq!(done["structuredContent"]["status"], "completed");
    }
    app.stop().await;
}

#[tokio::test]
async fn asking_for_payment_again_once_approved_says_where_it_stands() {
    let app = spawn_app().await;
    let client = McpClient::new(&app, Some(TEST_KEY), Era::Handshake("2025-06-18"));
    client.start().await;
    let (id, payment) = payment_requested(&client).await;
    // The card issuer fails for now: the approval stays approved while the gateway retries.
    app.sims.wallet.set_faults(sacp_sim::faults::Faults {
        poll_interval_secs: Some(1),
        payment_provider_error: true,
        ..Default::default()
    });
    app.decide_in_wallet(
        payment["structuredContent"]["authorization_url"]
            .as_str()
            .unwrap(),
        true,
    )
    .await;
    let mut state = String::new();
    for _ in 0..100 {
        let status = client
            .call("get_payment_status", json!({"checkout_id": id}))
            .await;
        state = status["structuredContent"]["status"]
            .as_str()
            .unwrap()
            .to_owned();
        if state == "approved" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(state, "approved");
    let again = client
        .call("request_payment", json!({"checkout_id": id}))
        .await;
    assert_ne!(again["isError"], true, "{again}");
    assert_eq!(
        again["structuredContent"]["request_id"], payment["structuredContent"]["request_id"],
        "the same request"
    );
    assert!(text(&again).contains("approved"), "{}", text(&again));
    app.sims.wallet.set_faults(sacp_sim::faults::Faults {
        poll_interval_secs: Some(1),
        ..Default::default()
    });
    let done = settled(&client, &id).await;
    assert_eq!(done["structuredContent"]["status"], "completed");
    assert_eq!(app.sims.store.stats().completions, 1);
    app.stop().await;
}
