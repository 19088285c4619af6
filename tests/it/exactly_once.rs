//! An approval becomes exactly one order, whatever the agent does.

use std::time::Duration;

use reqwest::StatusCode;

use crate::app::spawn_app;

#[tokio::test]
async fn many_concurrent_polls_after_approval_complete_exactly_once() {
    let app = spawn_app().await;
    let id = app.ready_checkout(1).await;
    let auth = app.complete_as_guest(&id).await;
    app.decide_in_wallet(&auth.str("/authorization_url"), true)
        .await;

    let poll = auth.str("/poll_endpoint");
    let mut order_ids = std::collections::HashSet::new();
    let device_polls_before = app.sims.wallet.stats().device_polls;
    for _ in 0..40 {
        let polls = (0..25).map(|_| app.get(&poll));
        for answer in futures::future::join_all(polls).await {
            assert_eq!(answer.status, StatusCode::OK);
            if answer.body["status"] == "completed" {
                order_ids.insert(answer.str("/order_id"));
            }
        }
        if !order_ids.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        order_ids.len(),
        1,
        "every poll reports the same single order"
    );
    assert_eq!(
        app.sims.store.stats().completions,
        1,
        "the store completed exactly once"
    );
    assert_eq!(
        app.sims.store.stats().completion_attempts,
        1,
        "and was asked exactly once"
    );
    assert_eq!(app.sims.wallet.stats().payment_tokens_issued, 1);
    // Agent polls never reach the wallet: only the driver polls, once per interval at most.
    let wallet_polls = app.sims.wallet.stats().device_polls - device_polls_before;
    assert!(
        wallet_polls <= 3,
        "{wallet_polls} wallet polls for 1000 agent polls"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_order_completes_even_if_no_agent_ever_polls() {
    let app = spawn_app().await;
    let id = app.ready_checkout(2).await;
    let auth = app.complete_as_guest(&id).await;
    app.decide_in_wallet(&auth.str("/authorization_url"), true)
        .await;
    // No poll at all: the gateway's own driver finishes the order.
    for _ in 0..100 {
        if app.sims.store.stats().completions == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.sims.store.stats().completions, 1);
    let checkout = app.get(&format!("/checkout/{id}")).await;
    assert_eq!(checkout.body["status"], "completed");
    assert_eq!(
        checkout.body["order_id"],
        app.sims.store.orders()[0].order_id.as_str()
    );
    app.stop().await;
}
