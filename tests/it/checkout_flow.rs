//! The guest checkout of the seed document, end to end over HTTP, and its other endings.

use reqwest::{Method, StatusCode};
use sacp_sim::faults::Faults;
use serde_json::json;

use crate::app::{spawn_app, spawn_with_faults};

#[tokio::test]
async fn the_seed_conversation_completes_an_order_for_21_46_cad() {
    let app = spawn_app().await;

    // "I want to buy some coffee" → three coffees.
    let found = app.get("/products?q=coffee").await;
    assert_eq!(found.status, StatusCode::OK);
    let names: Vec<&str> = found.body["products"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "Ethiopian Yirgacheffe",
            "Colombian Medium Roast",
            "Espresso Blend"
        ]
    );
    assert_eq!(
        found.body["products"][0]["price"],
        json!({"amount": 1899, "currency": "CAD", "formatted": "CA$18.99"})
    );

    // "I'll take the Ethiopian" → a checkout totalling 21.46, asking for buyer and fulfillment.
    let id = app.create_checkout(1).await;
    let created = app.get(&format!("/checkout/{id}")).await;
    assert_eq!(created.body["status"], "cart");
    assert_eq!(created.body["tax"]["amount"], 247);
    assert_eq!(
        created.body["total"],
        json!({"amount": 2146, "currency": "CAD", "formatted": "CA$21.46"})
    );
    assert_eq!(created.body["missing"], json!(["buyer", "fulfillment"]));
    assert_eq!(created.body["next_step"]["action"], "update_checkout");

    // Buyer, then shipping.
    let with_buyer = app
        .patch(
            &format!("/checkout/{id}"),
            json!({"buyer": {"name": "John Doe", "email": "john@example.com"}}),
        )
        .await;
    assert_eq!(with_buyer.body["missing"], json!(["fulfillment"]));
    let ready = app.add_buyer_and_shipping(&id).await;
    assert_eq!(ready.body["next_step"]["action"], "complete");
    assert_eq!(ready.body["missing"], json!([]));

    // Complete → 202 with everything the seed promises.
    let auth = app.complete_as_guest(&id).await;
    for field in [
        "authorization_url",
        "qr_code_url",
        "user_code",
        "verification_uri",
        "poll_endpoint",
        "request_id",
        "message",
    ] {
        assert!(
            auth.body[field].as_str().is_some_and(|v| !v.is_empty()),
            "{field}: {}",
            auth.body
        );
    }
    assert!(
        auth.body["expires_in"]
            .as_u64()
            .is_some_and(|s| s > 800 && s <= 900)
    );
    assert!(auth.body["interval"].as_u64().is_some());
    assert_eq!(auth.body["amount"]["amount"], 2146);
    assert_eq!(
        auth.body["notification_sent"], true,
        "the buyer's email was passed to the wallet"
    );
    let message = auth.str("/message");
    let user_code = auth.str("/user_code");
    assert!(
        message.contains("CA$21.46") && message.contains(&user_code),
        "{message}"
    );
    assert!(auth.str("/request_id").starts_with("par_"));
    assert_eq!(
        app.get(&format!("/checkout/{id}")).await.body["status"],
        "authorizing"
    );

    // The QR code is a PNG of the authorization URL, never cached.
    let qr = app.http.get(auth.str("/qr_code_url")).send().await.unwrap();
    assert_eq!(qr.status(), StatusCode::OK);
    assert_eq!(qr.headers()["content-type"], "image/png");
    assert_eq!(qr.headers()["cache-control"], "no-store");
    assert_eq!(&qr.bytes().await.unwrap()[..4], b"\x89PNG");

    // Pending until the person acts.
    // The seed contract: a path the agent appends to the API's base URL.
    assert_eq!(
        auth.str("/poll_endpoint"),
        format!("/checkout/{id}/payment-status/{}", auth.str("/request_id"))
    );
    assert!(auth.str("/authorization_url").starts_with("http"));
    assert!(auth.str("/qr_code_url").starts_with(&app.url));
    let pending = app.get(&auth.str("/poll_endpoint")).await;
    assert_eq!(pending.body["status"], "pending");

    // The person approves in the wallet page, as a browser would; the poll reports the order.
    let page = app
        .http
        .get(auth.str("/authorization_url"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("CA$21.46")
            && page.contains("Ethiopian Yirgacheffe")
            && page.contains("SACP Coffee Roasters")
    );
    app.decide_in_wallet(&auth.str("/authorization_url"), true)
        .await;
    let done = app.poll_until_settled(&auth.str("/poll_endpoint")).await;
    assert_eq!(done.body["status"], "completed", "{}", done.body);
    let order_id = done.str("/order_id");
    assert!(!order_id.is_empty() && !done.str("/transaction_id").is_empty());
    // The completed payment, however it is answered, is still another organisation's
    // secret and tied to its own checkout.
    let (rival, _) = crate::attacker::org_key(&app, "rival").await;
    let foreign = crate::admin::as_key(
        &app,
        &rival,
        reqwest::Method::GET,
        &auth.str("/poll_endpoint"),
        None,
    )
    .await;
    foreign.assert_problem(404, "not_found");
    let other_checkout = app.ready_checkout(1).await;
    let mismatched = app
        .get(&format!(
            "/checkout/{other_checkout}/payment-status/{}",
            auth.str("/request_id")
        ))
        .await;
    mismatched.assert_problem(404, "not_found");
    assert_eq!(
        app.get(&auth.str("/poll_endpoint")).await.body,
        done.body,
        "a poll again answers the same"
    );

    let checkout = app.get(&format!("/checkout/{id}")).await;
    assert_eq!(checkout.body["status"], "completed");
    assert_eq!(checkout.body["order_id"], order_id.as_str());
    assert_eq!(checkout.body["next_step"]["action"], "done");

    // The order the store placed is for exactly the approved amount.
    let orders = app.sims.store.orders();
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0].order_id, order_id);
    assert_eq!(orders[0].total.minor_units(), 2146);

    // Once used, the QR code is gone.
    let gone = app.get(&format!("/qr/{}", auth.str("/request_id"))).await;
    gone.assert_problem(410, "authorization_gone");

    // The wallet's device code never reached the agent.
    let device_code = app.sims.wallet.device_code_of(&user_code).unwrap();
    assert!(
        app.seen
            .lock()
            .unwrap()
            .iter()
            .all(|body| !body.contains(&device_code))
    );
    app.stop().await;
}

#[tokio::test]
async fn a_rejected_payment_returns_the_checkout_for_a_new_attempt() {
    let app = spawn_app().await;
    let id = app.ready_checkout(1).await;
    let first = app.complete_as_guest(&id).await;
    app.decide_in_wallet(&first.str("/authorization_url"), false)
        .await;
    let rejected = app.poll_until_settled(&first.str("/poll_endpoint")).await;
    assert_eq!(rejected.body["status"], "rejected");
    assert!(rejected.str("/message").contains("rejected"));
    assert_eq!(
        app.get(&format!("/checkout/{id}")).await.body["status"],
        "ready_for_payment"
    );
    assert_eq!(app.sims.store.stats().completions, 0, "nothing was charged");

    let second = app.complete_as_guest(&id).await;
    assert_ne!(
        second.str("/request_id"),
        first.str("/request_id"),
        "a new complete starts a new request"
    );
    app.decide_in_wallet(&second.str("/authorization_url"), true)
        .await;
    assert_eq!(
        app.poll_until_settled(&second.str("/poll_endpoint"))
            .await
            .body["status"],
        "completed"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_unapproved_request_expires_and_the_checkout_can_be_paid_again() {
    let app = spawn_with_faults(Faults {
        device_code_ttl_secs: Some(2),
        poll_interval_secs: Some(1),
        ..Faults::default()
    })
    .await;
    let id = app.ready_checkout(1).await;
    let auth = app.complete_as_guest(&id).await;
    assert!(auth.body["expires_in"].as_u64().unwrap() <= 2);
    let expired = app.poll_until_settled(&auth.str("/poll_endpoint")).await;
    assert_eq!(expired.body["status"], "expired");
    assert!(expired.body.get("expires_in").is_none());
    app.get(&format!("/qr/{}", auth.str("/request_id")))
        .await
        .assert_problem(410, "authorization_gone");
    // The driver records the expiry and hands the checkout back.
    for _ in 0..50 {
        if app.get(&format!("/checkout/{id}")).await.body["status"] == "ready_for_payment" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        app.get(&format!("/checkout/{id}")).await.body["status"],
        "ready_for_payment"
    );
    let again = app.complete_as_guest(&id).await;
    assert_ne!(again.str("/request_id"), auth.str("/request_id"));
    app.stop().await;
}

#[tokio::test]
async fn cancelling_during_authorization_means_a_later_approval_charges_nothing() {
    let app = spawn_app().await;
    let id = app.ready_checkout(1).await;
    let auth = app.complete_as_guest(&id).await;
    let cancelled = app
        .call(Method::POST, &format!("/checkout/{id}/cancel"), None)
        .await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
    assert_eq!(cancelled.body["status"], "cancelled");
    assert_eq!(cancelled.body["next_step"]["action"], "start_new_checkout");

    // The person approves anyway: nothing is charged.
    app.decide_in_wallet(&auth.str("/authorization_url"), true)
        .await;
    let status = app.poll_until_settled(&auth.str("/poll_endpoint")).await;
    assert_eq!(status.body["status"], "cancelled");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(app.sims.store.stats().completions, 0);
    assert_eq!(app.sims.wallet.stats().payment_tokens_issued, 0);

    // A cancelled checkout stays cancelled.
    app.call(Method::POST, &format!("/checkout/{id}/cancel"), None)
        .await
        .assert_problem(409, "checkout_closed");
    app.patch(&format!("/checkout/{id}"), crate::app::seed_details())
        .await
        .assert_problem(409, "checkout_closed");
    app.call(Method::POST, &format!("/checkout/{id}/complete"), None)
        .await
        .assert_problem(409, "checkout_closed");
    app.stop().await;
}

#[tokio::test]
async fn a_completed_checkout_cannot_be_cancelled() {
    let app = spawn_app().await;
    let id = app.ready_checkout(1).await;
    let token = app.user_token(None);
    let paid = app
        .call_with(
            Method::POST,
            &format!("/checkout/{id}/complete"),
            None,
            &[("authorization", &format!("Bearer {token}"))],
        )
        .await;
    assert_eq!(paid.status, StatusCode::OK);
    app.call(Method::POST, &format!("/checkout/{id}/cancel"), None)
        .await
        .assert_problem(409, "checkout_completed");
    assert_eq!(app.sims.store.stats().completions, 1);
    app.stop().await;
}

#[tokio::test]
async fn the_cart_is_frozen_while_authorizing_and_the_approved_amount_is_charged() {
    let app = spawn_app().await;
    let id = app.ready_checkout(1).await;
    let auth = app.complete_as_guest(&id).await;

    let edit = app
        .patch(&format!("/checkout/{id}"), json!({"items": [{"product_id": sacp_sim::catalog::ETHIOPIAN_YIRGACHEFFE, "quantity": 5}]}))
        .await;
    edit.assert_problem(409, "cart_frozen");
    assert!(edit.str("/detail").contains("frozen"));
    let buyer_edit = app
        .patch(
            &format!("/checkout/{id}"),
            json!({"buyer": {"name": "Jane", "email": "jane@example.com"}}),
        )
        .await;
    buyer_edit.assert_problem(409, "cart_frozen");

    // A second complete while pending answers with the same request, not a new one.
    let again = app.complete_as_guest(&id).await;
    assert_eq!(again.str("/request_id"), auth.str("/request_id"));

    app.decide_in_wallet(&auth.str("/authorization_url"), true)
        .await;
    assert_eq!(
        app.poll_until_settled(&auth.str("/poll_endpoint"))
            .await
            .body["status"],
        "completed"
    );
    let orders = app.sims.store.orders();
    assert_eq!(orders.len(), 1);
    assert_eq!(
        orders[0].total.minor_units(),
        auth.body["amount"]["amount"].as_i64().unwrap()
    );
    assert_eq!(orders[0].items[0].quantity, 1);
    app.stop().await;
}

/// An edit racing `complete`: whichever wins, the store's session holds exactly what the
/// gateway's checkout holds, and a refused edit changed nothing at the store — so the amount
/// the person approves is the amount the store holds and charges.
#[tokio::test]
async fn an_edit_racing_complete_never_changes_the_store_behind_the_gateway() {
    let app = spawn_app().await;
    let mut refused_edits = 0;
    let mut refused_payments = 0;
    for round in 0..12 {
        let id = app.ready_checkout(1).await;
        // A slow store makes the two requests overlap; the payment starts first, and the edit
        // follows it closer or later each round.
        app.sims.store.set_faults(sacp_sim::faults::Faults {
            latency_ms: 40,
            ..Default::default()
        });
        let (edit_path, complete_path) = (
            format!("/checkout/{id}"),
            format!("/checkout/{id}/complete"),
        );
        let edit = app.patch(
            &edit_path,
            json!({"items": [{"product_id": sacp_sim::catalog::ETHIOPIAN_YIRGACHEFFE, "quantity": 3}]}),
        );
        let complete = app.call(reqwest::Method::POST, &complete_path, None);
        let delay = std::time::Duration::from_millis(15 * (round % 6));
        let (completed, edited) = tokio::join!(complete, async {
            tokio::time::sleep(delay).await;
            edit.await
        });
        app.sims
            .store
            .set_faults(sacp_sim::faults::Faults::default());
        assert!(
            matches!(edited.status.as_u16(), 200 | 409),
            "{}: {}",
            edited.status,
            edited.body
        );
        assert!(
            matches!(completed.status.as_u16(), 202 | 409),
            "{}: {}",
            completed.status,
            completed.body
        );
        if edited.status == StatusCode::CONFLICT {
            refused_edits += 1;
        }
        if completed.status == StatusCode::CONFLICT {
            refused_payments += 1;
        }
        let checkout = app.gateway.get_checkout("default", &id).await.unwrap();
        let session = app
            .sims
            .store
            .session(&checkout.store_session_id().0)
            .unwrap();
        assert_eq!(
            session.cart.total,
            checkout.cart().total(),
            "the store holds what the gateway holds (edit {}, complete {})",
            edited.status,
            completed.status
        );
        if completed.status == StatusCode::ACCEPTED {
            assert_eq!(
                completed.body["amount"]["amount"],
                session.cart.total.minor_units(),
                "the person is asked to approve what the store holds"
            );
        }
    }
    eprintln!("{refused_edits} edits and {refused_payments} payments of 12 lost the race");
    app.stop().await;
}
