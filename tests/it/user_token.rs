//! The user-token (Bearer) path: complete directly, or through a wallet step-up.

use reqwest::{Method, StatusCode};

use crate::app::spawn_app;

#[tokio::test]
async fn a_user_token_within_its_limit_completes_at_once_and_reads_the_order() {
    let app = spawn_app().await;
    let id = app.ready_checkout(1).await;
    let token = app.user_token(None);
    let bearer = format!("Bearer {token}");
    let done = app
        .call_with(
            Method::POST,
            &format!("/checkout/{id}/complete"),
            None,
            &[("authorization", &bearer)],
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert_eq!(done.body["status"], "completed");
    assert_eq!(done.body["checkout"]["status"], "completed");
    let order_id = done.str("/order_id");
    assert_eq!(app.sims.store.stats().completions, 1);

    let order = app
        .call_with(
            Method::GET,
            &format!("/orders/{order_id}"),
            None,
            &[("authorization", &bearer)],
        )
        .await;
    assert_eq!(order.status, StatusCode::OK, "{}", order.body);
    assert_eq!(order.body["order_id"], order_id.as_str());
    assert_eq!(order.body["items"][0]["quantity"], 1);

    // RFC 6750 §2.3: the token may come as a query parameter for clients without headers.
    let by_query = app
        .get(&format!("/orders/{order_id}?access_token={token}"))
        .await;
    assert_eq!(by_query.status, StatusCode::OK);

    app.get(&format!("/orders/{order_id}"))
        .await
        .assert_problem(401, "user_token_required");
    app.call_with(
        Method::GET,
        &format!("/orders/{order_id}"),
        None,
        &[("authorization", "Bearer wrong")],
    )
    .await
    .assert_problem(401, "user_token_invalid");
    app.call_with(
        Method::GET,
        "/orders/ord_unknown",
        None,
        &[("authorization", &bearer)],
    )
    .await
    .assert_problem(404, "not_found");
    app.stop().await;
}

#[tokio::test]
async fn the_user_token_may_be_sent_as_a_form_field() {
    let app = spawn_app().await;
    let id = app.ready_checkout(1).await;
    let token = app.user_token(None);
    let request = app
        .http
        .post(format!("{}/checkout/{id}/complete", app.url))
        .form(&[("access_token", token.as_str())]);
    let done = app
        .finish(Method::POST, &format!("/checkout/{id}/complete"), request)
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert_eq!(done.body["status"], "completed");
    app.stop().await;
}

#[tokio::test]
async fn an_inactive_user_token_is_refused_with_401_and_nothing_changes() {
    let app = spawn_app().await;
    let id = app.ready_checkout(1).await;
    app.call_with(
        Method::POST,
        &format!("/checkout/{id}/complete"),
        None,
        &[("authorization", "Bearer revoked-or-unknown")],
    )
    .await
    .assert_problem(401, "user_token_invalid");
    assert_eq!(
        app.get(&format!("/checkout/{id}")).await.body["status"],
        "ready_for_payment"
    );
    assert_eq!(app.sims.wallet.stats().payment_tokens_issued, 0);
    app.stop().await;
}

#[tokio::test]
async fn a_payment_over_the_token_limit_needs_a_step_up_then_completes() {
    let app = spawn_app().await;
    let id = app.ready_checkout(1).await;
    // CA$10.00 per transaction: the CA$21.46 payment needs the person's approval.
    let token = app.user_token(Some(1000));
    let bearer = format!("Bearer {token}");
    let step_up = app
        .call_with(
            Method::POST,
            &format!("/checkout/{id}/complete"),
            None,
            &[("authorization", &bearer)],
        )
        .await;
    assert_eq!(step_up.status, StatusCode::ACCEPTED, "{}", step_up.body);
    assert_eq!(step_up.body["status"], "step_up_required");
    assert_eq!(step_up.body["amount"]["amount"], 2146);
    let step_up_id = step_up.str("/step_up_id");
    let poll = step_up.str("/poll_endpoint");
    assert_eq!(
        app.get(&format!("/checkout/{id}")).await.body["status"],
        "authorizing"
    );

    let pending = app
        .call_with(Method::GET, &poll, None, &[("authorization", &bearer)])
        .await;
    assert_eq!(pending.body["status"], "pending", "{}", pending.body);
    app.get(&poll)
        .await
        .assert_problem(401, "user_token_required");

    // The person approves the larger payment on the wallet's page.
    let page = app
        .http
        .post(format!("{}/sim/wsim/m/step-up/{step_up_id}", app.url))
        .form(&[("decision", "approve")])
        .send()
        .await
        .unwrap();
    assert!(page.status().is_success());
    let done = app
        .call_with(Method::GET, &poll, None, &[("authorization", &bearer)])
        .await;
    assert_eq!(done.body["status"], "completed", "{}", done.body);
    assert!(done.body["order_id"].is_string());
    assert_eq!(done.body["checkout"]["status"], "completed");
    // Polling again reports the same order, without a second charge.
    let again = app
        .call_with(Method::GET, &poll, None, &[("authorization", &bearer)])
        .await;
    assert_eq!(again.body["order_id"], done.body["order_id"]);
    assert_eq!(app.sims.store.stats().completions, 1);
    app.stop().await;
}

#[tokio::test]
async fn a_rejected_step_up_returns_the_checkout() {
    let app = spawn_app().await;
    let id = app.ready_checkout(1).await;
    let bearer = format!("Bearer {}", app.user_token(Some(1000)));
    let step_up = app
        .call_with(
            Method::POST,
            &format!("/checkout/{id}/complete"),
            None,
            &[("authorization", &bearer)],
        )
        .await;
    let step_up_id = step_up.str("/step_up_id");
    app.http
        .post(format!("{}/sim/wsim/m/step-up/{step_up_id}", app.url))
        .form(&[("decision", "reject")])
        .send()
        .await
        .unwrap();
    let poll = step_up.str("/poll_endpoint");
    let rejected = app
        .call_with(Method::GET, &poll, None, &[("authorization", &bearer)])
        .await;
    assert_eq!(rejected.body["status"], "rejected");
    assert_eq!(rejected.body["checkout"]["status"], "ready_for_payment");
    assert_eq!(app.sims.store.stats().completions, 0);
    app.stop().await;
}

#[tokio::test]
async fn a_wallet_without_a_card_is_told_at_once_and_the_same_checkout_pays_once_one_is_added() {
    let app = spawn_app().await;
    let id = app.ready_checkout(1).await;
    let bearer = format!("Bearer {}", app.user_token(None));
    let complete = format!("/checkout/{id}/complete");
    app.sims.wallet.set_faults(sacp_sim::faults::Faults {
        no_payment_method: true,
        ..Default::default()
    });
    let refused = app
        .call_with(Method::POST, &complete, None, &[("authorization", &bearer)])
        .await;
    refused.assert_problem(422, "payment_refused");
    assert!(
        refused.str("/detail").contains("no_payment_method")
            && refused.str("/detail").contains("add a card"),
        "{}",
        refused.body
    );
    assert_eq!(
        app.get(&format!("/checkout/{id}")).await.body["status"],
        "ready_for_payment",
        "nothing is held: the checkout can be paid again"
    );
    assert_eq!(app.sims.store.stats().completion_attempts, 0);

    // A card is added in the wallet: the same checkout completes.
    app.sims
        .wallet
        .set_faults(sacp_sim::faults::Faults::default());
    let done = app
        .call_with(Method::POST, &complete, None, &[("authorization", &bearer)])
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert_eq!(done.body["status"], "completed");
    app.stop().await;
}
