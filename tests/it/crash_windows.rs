//! The two moments a crash could double-charge, replayed on PostgreSQL: after the approval
//! was recorded (the charge had not started), and after the store placed the order (the
//! gateway had not recorded it). A driver that picks the work up afterwards charges once.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sacp_adapters::pg::PgStorage;
use sacp_app::driver;
use sacp_app::{CompleteOutcome, Gateway};
use sacp_domain::{AuthorizationStatus, CheckoutStatus, PaymentAuthorization};
use sacp_ports::clock::SystemClock;
use sacp_ports::store::CompletionOutcome;
use sacp_ports::wallet::{DevicePoll, PaymentTokenOutcome, PaymentTokenRequest};
use sacp_ports::{AuthorizationRepository, Store, Wallet};
use sacp_sim::Simulators;
use sacp_sim::fake::{FakeStore, FakeWallet};

/// The organisation the checkouts of these tests belong to.
const OWNER: &str = "crash-tests";

use crate::database::TestDatabase;

struct World {
    gateway: Gateway,
    sims: Simulators,
    storage: Arc<PgStorage>,
    store: FakeStore,
    wallet: FakeWallet,
}

async fn world(db: &TestDatabase) -> World {
    let storage = db.migrated_storage().await;
    let sims = Simulators::sandbox("http://sim/ssim", "http://sim/wsim", Arc::new(SystemClock));
    let store = FakeStore::new(sims.store.clone(), Duration::from_secs(5));
    let wallet = FakeWallet::new(sims.wallet.clone(), Duration::from_secs(5));
    let gateway = crate::support::pg_replica(
        &storage,
        &sims,
        Arc::new(SystemClock),
        crate::support::SEALING_KEY,
    );
    World {
        gateway,
        sims,
        storage,
        store,
        wallet,
    }
}

/// A checkout paid as a guest and approved by the person; the approval recorded and its
/// charge claimed two minutes ago by a process that then died.
async fn approved_then_crashed(world: &World) -> (String, PaymentAuthorization) {
    let changes = crate::after_approval::ready_changes();
    let checkout = world
        .gateway
        .create_checkout(OWNER, &changes, None)
        .await
        .unwrap();
    let id = checkout.id().as_str().to_owned();
    let CompleteOutcome::AuthorizationRequired { authorization, .. } = world
        .gateway
        .complete_checkout(OWNER, &id, None)
        .await
        .unwrap()
    else {
        panic!("guest payment needs an authorization");
    };
    world
        .sims
        .wallet
        .decide_device(authorization.user_code(), true)
        .unwrap();
    let mut stored = world.storage.get(authorization.id()).await.unwrap();
    let then = Utc::now() - chrono::Duration::seconds(120);
    stored.approve(then).unwrap();
    stored.claim(then).unwrap();
    world.storage.update(&mut stored).await.unwrap();
    (id, stored)
}

#[tokio::test]
async fn a_crash_after_recording_the_approval_charges_once_on_restart() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let world = world(&db).await;
    let (id, authorization) = approved_then_crashed(&world).await;
    assert_eq!(world.sims.store.stats().completions, 0);

    driver::scan(&world.gateway, 10).await;
    let checkout = world.gateway.get_checkout(OWNER, &id).await.unwrap();
    assert_eq!(checkout.status(), CheckoutStatus::Completed);
    assert_eq!(
        world
            .storage
            .get(authorization.id())
            .await
            .unwrap()
            .status(),
        AuthorizationStatus::Consumed
    );
    driver::scan(&world.gateway, 10).await;
    assert_eq!(world.sims.store.stats().completions, 1);
    assert_eq!(world.sims.wallet.stats().payment_tokens_issued, 1);
}

#[tokio::test]
async fn a_crash_after_the_store_placed_the_order_records_it_without_charging_again() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let world = world(&db).await;
    let (id, authorization) = approved_then_crashed(&world).await;

    // What the dead process did before dying: collected the approval, got a payment token,
    // and the store placed the order.
    let Ok(DevicePoll::Approved(token)) = world
        .wallet
        .poll_device_token(authorization.device_code())
        .await
    else {
        panic!("approved");
    };
    let merchant = world.store.merchant().await.unwrap();
    let request = PaymentTokenRequest {
        amount: authorization.amount(),
        merchant_id: merchant.id,
        merchant_name: None,
        session_id: None,
    };
    let Ok(PaymentTokenOutcome::Issued(payment)) = world
        .wallet
        .request_payment_token(&token.access_token, &request)
        .await
    else {
        panic!("within limits");
    };
    let checkout = world.gateway.get_checkout(OWNER, &id).await.unwrap();
    let Ok(CompletionOutcome::Completed(order)) = world
        .store
        .complete_session(
            checkout.store_session_id(),
            &payment.token,
            &token.access_token,
        )
        .await
    else {
        panic!("the store places the order");
    };

    // Any driver picking the work up records that order and charges nothing more.
    driver::scan(&world.gateway, 10).await;
    let checkout = world.gateway.get_checkout(OWNER, &id).await.unwrap();
    assert_eq!(checkout.status(), CheckoutStatus::Completed);
    assert_eq!(checkout.order(), Some(&order));
    assert_eq!(
        world
            .storage
            .get(authorization.id())
            .await
            .unwrap()
            .status(),
        AuthorizationStatus::Consumed
    );
    assert_eq!(world.sims.store.stats().completions, 1);
    assert_eq!(
        world.sims.store.stats().completion_attempts,
        1,
        "the store was not asked again"
    );
    assert_eq!(
        world.sims.wallet.stats().payment_tokens_issued,
        1,
        "no second payment token"
    );
}
