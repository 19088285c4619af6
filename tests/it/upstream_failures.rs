//! What agents see when the store or wallet misbehaves, and how politely the gateway polls.

use std::time::Duration;

use reqwest::Method;
use sacp_sim::faults::Faults;

use crate::app::{settings, spawn_app, spawn_app_with};

#[tokio::test]
async fn a_failing_store_is_answered_502_and_a_slow_one_504() {
    let mut short = settings();
    short.upstream_timeout_ms = 300;
    let app = spawn_app_with(
        short,
        Faults {
            poll_interval_secs: Some(1),
            ..Faults::default()
        },
    )
    .await;

    app.sims.store.set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    app.get("/products")
        .await
        .assert_problem(502, "upstream_unavailable");
    app.sims.store.set_faults(Faults {
        malformed_rate: 1.0,
        ..Faults::default()
    });
    let garbage = app.get("/products?q=coffee").await;
    garbage.assert_problem(502, "upstream_error");
    assert!(
        !garbage.str("/detail").contains("tru"),
        "no upstream body text reaches the agent"
    );
    app.sims.store.set_faults(Faults {
        latency_ms: 1000,
        ..Faults::default()
    });
    app.get("/products")
        .await
        .assert_problem(504, "upstream_timeout");
    app.sims.store.set_faults(Faults::default());

    // A wallet failure while starting payment changes nothing: the checkout stays payable.
    let id = app.ready_checkout(1).await;
    app.sims.wallet.set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    app.call(Method::POST, &format!("/checkout/{id}/complete"), None)
        .await
        .assert_problem(502, "upstream_unavailable");
    assert_eq!(
        app.get(&format!("/checkout/{id}")).await.body["status"],
        "ready_for_payment"
    );
    app.sims.wallet.set_faults(Faults {
        poll_interval_secs: Some(1),
        ..Faults::default()
    });
    app.complete_as_guest(&id).await;
    app.stop().await;
}

#[tokio::test]
async fn the_driver_honours_slow_down_and_never_polls_faster_than_the_interval() {
    let app = spawn_app().await;
    let id = app.ready_checkout(1).await;
    let auth = app.complete_as_guest(&id).await;
    assert_eq!(auth.body["interval"], 1);
    let before = app.sims.wallet.stats().device_polls;
    // The wallet answers every poll with slow_down: 1 s becomes 6 s, then 11 s.
    app.sims.wallet.set_faults(Faults {
        slow_down: true,
        poll_interval_secs: Some(1),
        ..Faults::default()
    });
    // Wait for the first poll (due after 1 s), then watch: the next is 6 s away.
    for _ in 0..100 {
        if app.sims.wallet.stats().device_polls > before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.sims.wallet.stats().device_polls - before, 1);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let polls = app.sims.wallet.stats().device_polls - before;
    assert_eq!(
        polls, 1,
        "after slow_down the interval grew from 1 s to 6 s: no second poll within 3 s"
    );
    let status = app.get(&auth.str("/poll_endpoint")).await;
    assert_eq!(status.body["status"], "pending");
    assert_eq!(
        status.body["interval"], 6,
        "agents are told the slower interval too"
    );
    app.stop().await;
}
