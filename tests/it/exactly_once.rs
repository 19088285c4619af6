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
    // No poll at all: the gateway's own driver finishes the order. The store's order is
    // placed a moment before the gateway records it, so wait for the gateway's own view.
    let mut checkout = app.get(&format!("/checkout/{id}")).await;
    for _ in 0..100 {
        if checkout.body["status"] == "completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        checkout = app.get(&format!("/checkout/{id}")).await;
    }
    assert_eq!(checkout.body["status"], "completed", "{}", checkout.body);
    assert_eq!(app.sims.store.stats().completions, 1);
    assert_eq!(
        checkout.body["order_id"],
        app.sims.store.orders()[0].order_id.as_str()
    );
    app.stop().await;
}

/// A step-up of the user-token path, approved by the person: its poll endpoint and the
/// bearer header of the token.
async fn approved_step_up(app: &crate::app::TestApp) -> (String, String, String) {
    let id = app.ready_checkout(1).await;
    let token = app.user_token(Some(1000));
    let step_up = app
        .as_user(
            reqwest::Method::POST,
            &format!("/checkout/{id}/complete"),
            &token,
        )
        .await;
    assert_eq!(step_up.status, StatusCode::ACCEPTED, "{}", step_up.body);
    app.sims
        .wallet
        .decide_step_up(&step_up.str("/step_up_id"), true)
        .unwrap();
    (id, step_up.str("/poll_endpoint"), token)
}

#[tokio::test]
async fn concurrent_polls_of_an_approved_step_up_place_one_order() {
    let app = spawn_app().await;
    let (id, poll, token) = approved_step_up(&app).await;
    let polls = (0..20).map(|_| app.as_user(reqwest::Method::GET, &poll, &token));
    let answers = futures::future::join_all(polls).await;
    let mut orders = std::collections::HashSet::new();
    for answer in &answers {
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        let status = answer.str("/status");
        assert!(
            matches!(status.as_str(), "approved" | "completed"),
            "while one poll places the order the others say so: {status}"
        );
        if status == "completed" {
            orders.insert(answer.str("/order_id"));
        }
    }
    let done = app.as_user(reqwest::Method::GET, &poll, &token).await;
    assert_eq!(done.body["status"], "completed", "{}", done.body);
    orders.insert(done.str("/order_id"));
    assert_eq!(orders.len(), 1);
    let stats = app.sims.store.stats();
    assert_eq!(stats.completions, 1);
    assert_eq!(
        stats.completion_attempts, 1,
        "the store was asked to complete exactly once"
    );
    assert_eq!(
        app.get(&format!("/checkout/{id}")).await.body["status"],
        "completed"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_approved_step_up_is_ordered_even_if_the_agent_stops_polling() {
    let app = spawn_app().await;
    let (id, _poll, _token) = approved_step_up(&app).await;
    // No poll: the gateway watches the step-up it started (every few seconds).
    let mut status = String::new();
    for _ in 0..100 {
        status = app.get(&format!("/checkout/{id}")).await.str("/status");
        if status == "completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, "completed");
    assert_eq!(app.sims.store.stats().completion_attempts, 1);
    app.stop().await;
}

#[tokio::test]
async fn a_step_up_approved_while_the_card_issuer_fails_is_tried_again() {
    let app = spawn_app().await;
    let (id, poll, token) = approved_step_up(&app).await;
    app.sims.wallet.set_faults(sacp_sim::faults::Faults {
        payment_provider_error: true,
        poll_interval_secs: Some(1),
        ..Default::default()
    });
    let waiting = app.as_user(reqwest::Method::GET, &poll, &token).await;
    assert_eq!(
        waiting.status,
        StatusCode::OK,
        "transient, not a 502: {}",
        waiting.body
    );
    assert_eq!(waiting.body["status"], "approved");
    app.sims.wallet.set_faults(sacp_sim::faults::Faults {
        poll_interval_secs: Some(1),
        ..Default::default()
    });
    let done = app.as_user(reqwest::Method::GET, &poll, &token).await;
    assert_eq!(done.body["status"], "completed", "{}", done.body);
    assert_eq!(
        app.get(&format!("/checkout/{id}")).await.body["status"],
        "completed"
    );
    app.stop().await;
}

#[tokio::test]
async fn concurrent_guest_completes_start_one_authorization_and_one_order() {
    let app = spawn_app().await;
    let id = app.ready_checkout(1).await;
    let path = format!("/checkout/{id}/complete");
    let calls = (0..10).map(|_| app.call(reqwest::Method::POST, &path, None));
    let answers = futures::future::join_all(calls).await;
    let mut requests = std::collections::HashSet::new();
    for answer in &answers {
        match answer.status {
            StatusCode::ACCEPTED => {
                requests.insert(answer.str("/request_id"));
            }
            // A request that lost the race to a concurrent one may be told to retry.
            StatusCode::CONFLICT => {}
            other => panic!("{other}: {}", answer.body),
        }
    }
    assert_eq!(
        requests.len(),
        1,
        "one authorization for the checkout: {requests:?}"
    );
    let first = answers
        .iter()
        .find(|a| a.status == StatusCode::ACCEPTED)
        .unwrap();
    app.decide_in_wallet(&first.str("/authorization_url"), true)
        .await;
    let settled = app.poll_until_settled(&first.str("/poll_endpoint")).await;
    assert_eq!(settled.body["status"], "completed", "{}", settled.body);
    assert_eq!(app.sims.store.stats().completion_attempts, 1);
    app.stop().await;
}

/// Two drivers — two replicas on one database — advancing the same approved authorization
/// at the same moment: one polls, collects and charges; the other finds the work claimed.
#[tokio::test]
async fn two_drivers_on_one_database_charge_an_approval_once() {
    use std::sync::Arc;

    use sacp_app::CompleteOutcome;
    use sacp_ports::clock::SystemClock;

    let Some(db) = crate::database::TestDatabase::create().await else {
        return;
    };
    let storage = db.migrated_storage().await;
    let sims =
        sacp_sim::Simulators::sandbox("http://sim/ssim", "http://sim/wsim", Arc::new(SystemClock));
    sims.wallet.set_faults(sacp_sim::faults::Faults {
        poll_interval_secs: Some(1),
        ..Default::default()
    });
    let replica = || {
        crate::support::pg_replica(
            &storage,
            &sims,
            Arc::new(SystemClock),
            crate::support::SEALING_KEY,
        )
    };
    let (a, b) = (replica(), replica());
    for round in 0..5 {
        let checkout = a
            .create_checkout("racers", &crate::after_approval::ready_changes(), None)
            .await
            .unwrap();
        let id = checkout.id().as_str().to_owned();
        let CompleteOutcome::AuthorizationRequired { authorization, .. } =
            a.complete_checkout("racers", &id, None).await.unwrap()
        else {
            panic!("a device authorization");
        };
        sims.wallet
            .decide_device(authorization.user_code(), true)
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1_050)).await;
        let before = sims.store.stats().completion_attempts;
        let (left, right) = tokio::join!(
            a.advance_authorization(authorization.id()),
            b.advance_authorization(authorization.id())
        );
        left.unwrap();
        right.unwrap();
        assert_eq!(
            sims.store.stats().completion_attempts - before,
            1,
            "round {round}: one completion attempt"
        );
        assert_eq!(
            a.get_checkout("racers", &id).await.unwrap().status(),
            sacp_domain::CheckoutStatus::Completed
        );
    }
    assert_eq!(sims.store.stats().completions, 5);
}

/// Replicas on one PostgreSQL database and one pair of simulators, on a clock the test moves.
mod sealed_step_ups {
    use std::sync::Arc;

    use sacp_adapters::pg::PgStorage;
    use sacp_adapters::sealing::AesGcmSealer;
    use sacp_app::{CompleteOutcome, Gateway};
    use sacp_domain::CheckoutStatus;
    use sacp_ports::BearerToken;
    use sacp_sim::Simulators;

    use crate::support::ManualClock;

    fn replica(
        storage: &Arc<PgStorage>,
        sims: &Simulators,
        clock: &Arc<ManualClock>,
        sealing_key: &str,
    ) -> Gateway {
        crate::support::pg_replica(storage, sims, clock.clone(), sealing_key)
    }

    /// Everything the database holds, as text.
    fn dump(url: &str) -> String {
        let out = std::process::Command::new("pg_dump")
            .args(["--data-only", "--dbname", url])
            .output()
            .expect("pg_dump runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[tokio::test]
    async fn another_replica_finishes_a_step_up_and_the_token_is_never_stored_in_the_clear() {
        let Some(db) = crate::database::TestDatabase::create().await else {
            return;
        };
        let storage = db.migrated_storage().await;
        let clock = Arc::new(ManualClock::at(chrono::Utc::now().timestamp()));
        let sims = Simulators::sandbox("http://sim/ssim", "http://sim/wsim", clock.clone());
        let key = crate::support::SEALING_KEY;
        let other_key = "0f".repeat(32);
        let starter = replica(&storage, &sims, &clock, key);
        let stranger = replica(&storage, &sims, &clock, &other_key);

        let limit = sacp_domain::Money::from_minor(1000, sacp_domain::Currency::CAD);
        let token = BearerToken::new(sims.wallet.issue_user_token(Some(limit)).access_token);
        let checkout = starter
            .create_checkout("acme", &crate::after_approval::ready_changes(), None)
            .await
            .unwrap();
        let id = checkout.id().as_str().to_owned();
        let CompleteOutcome::StepUpRequired { step_up_id, .. } = starter
            .complete_checkout("acme", &id, Some(&token))
            .await
            .unwrap()
        else {
            panic!("a step-up above the token's limit");
        };

        // At rest the token is sealed: nowhere in the database in the clear.
        let stored = dump(&db.url);
        assert!(stored.contains(&step_up_id), "the watch is stored");
        assert!(
            !stored.contains(token.expose()),
            "the person's token is not stored in the clear"
        );

        // The replica that started it is gone; the person approves.
        drop(starter);
        sims.wallet.decide_step_up(&step_up_id, true).unwrap();
        clock.advance(6);

        // A replica with another sealing key cannot open the token: it leaves the watch.
        stranger.advance_step_ups().await;
        let waiting = stranger.get_checkout("acme", &id).await.unwrap();
        assert_eq!(waiting.status(), CheckoutStatus::Authorizing);
        assert_eq!(sims.store.stats().completion_attempts, 0);

        // Any replica with the shared key finishes it, once, without the agent.
        let (first, second) = (
            replica(&storage, &sims, &clock, key),
            replica(&storage, &sims, &clock, key),
        );
        tokio::join!(first.advance_step_ups(), second.advance_step_ups());
        let done = first.get_checkout("acme", &id).await.unwrap();
        assert_eq!(done.status(), CheckoutStatus::Completed);
        assert_eq!(sims.store.stats().completion_attempts, 1, "one order");

        // Ended: the sealed token is gone too, and the token was never written anywhere.
        assert!(
            storage_has_no_watch(&storage, &clock, &id).await,
            "the watch is deleted once the step-up ends"
        );
        assert!(!dump(&db.url).contains(token.expose()));
    }

    #[tokio::test]
    async fn cancelling_a_checkout_drops_the_token_kept_for_its_step_up_at_once() {
        let Some(db) = crate::database::TestDatabase::create().await else {
            return;
        };
        let storage = db.migrated_storage().await;
        let clock = Arc::new(ManualClock::at(chrono::Utc::now().timestamp()));
        let sims = Simulators::sandbox("http://sim/ssim", "http://sim/wsim", clock.clone());
        let gateway = replica(&storage, &sims, &clock, crate::support::SEALING_KEY);
        let limit = sacp_domain::Money::from_minor(1000, sacp_domain::Currency::CAD);
        let token = BearerToken::new(sims.wallet.issue_user_token(Some(limit)).access_token);
        let checkout = gateway
            .create_checkout("acme", &crate::after_approval::ready_changes(), None)
            .await
            .unwrap();
        let id = checkout.id().as_str().to_owned();
        let outcome = gateway
            .complete_checkout("acme", &id, Some(&token))
            .await
            .unwrap();
        assert!(matches!(outcome, CompleteOutcome::StepUpRequired { .. }));
        assert!(
            !storage_has_no_watch(&storage, &clock, &id).await,
            "watched"
        );

        gateway.cancel_checkout("acme", &id).await.unwrap();
        assert!(
            storage_has_no_watch(&storage, &clock, &id).await,
            "the sealed token goes with the cancel, not minutes later"
        );
    }

    /// Whether no watch of `checkout` is stored: asks at `clock`'s time + 10 s (the watch
    /// due, not yet ended), claiming nothing it would keep from the test.
    async fn storage_has_no_watch(
        storage: &Arc<PgStorage>,
        clock: &Arc<ManualClock>,
        checkout: &str,
    ) -> bool {
        use sacp_ports::{Clock, StepUpWatches};
        let at = clock.now() + chrono::Duration::seconds(10);
        let key = AesGcmSealer::from_hex(crate::support::SEALING_KEY).unwrap();
        let key_id = sacp_ports::TokenSealer::key_id(&key).to_owned();
        storage
            .claim_due(&key_id, at, at, 1000)
            .await
            .unwrap()
            .iter()
            .all(|w| w.checkout_id.as_str() != checkout)
    }
}
