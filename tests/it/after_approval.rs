//! What happens after the person approved: the order is placed exactly once, or the
//! authorization ends — within its deadline, with a bounded number of wallet calls, and with
//! a status that says what happened. Driven step by step on a clock the test moves, over the
//! in-process fakes of the store and the wallet (which share that clock).

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use sacp_adapters::memory::{MemoryApiKeys, MemoryAuditLog, MemoryAuthorizations, MemoryCheckouts};
use sacp_adapters::memory_guard::{
    MemoryIdempotency, MemoryRateCounters, MemorySwitchBoard, MemoryTrafficLog,
};
use sacp_adapters::random::OsRandom;
use sacp_app::{CheckoutChanges, CompleteOutcome, Gateway, GatewayConfig, GuardPorts};
use sacp_domain::authorization::{CHARGE_WINDOW_SECS, MAX_CHARGE_ATTEMPTS, failure};
use sacp_domain::validation::{AddressInput, BuyerInput, FulfillmentInput, ItemInput};
use sacp_domain::{CheckoutStatus, PaymentAuthorization, PaymentStatus};
use sacp_ports::{AuthorizationRepository, CheckoutRepository};
use sacp_sim::Simulators;
use sacp_sim::fake::{FakeStore, FakeWallet};
use sacp_sim::faults::Faults;

use crate::app::spawn_app;
use crate::support::ManualClock;

const OWNER: &str = "after-approval";

/// Storage shared by the gateways of one test (as replicas share a database).
#[derive(Clone)]
struct Shared {
    checkouts: Arc<MemoryCheckouts>,
    authorizations: Arc<MemoryAuthorizations>,
    step_ups: sacp_app::StepUpPorts,
}

struct World {
    clock: Arc<ManualClock>,
    sims: Simulators,
    shared: Shared,
    gateway: Gateway,
}

impl World {
    fn new() -> World {
        let clock = Arc::new(ManualClock::at(1_800_000_000));
        let sims = Simulators::sandbox("http://sim/ssim", "http://sim/wsim", clock.clone());
        sims.wallet.set_faults(Faults {
            poll_interval_secs: Some(1),
            ..Faults::default()
        });
        let shared = Shared {
            checkouts: Arc::new(MemoryCheckouts::default()),
            authorizations: Arc::new(MemoryAuthorizations::default()),
            step_ups: crate::support::memory_step_ups(),
        };
        let gateway = replica(&clock, &sims, &shared);
        World {
            clock,
            sims,
            shared,
            gateway,
        }
    }

    /// A ready checkout, paid as a guest: its pending authorization.
    async fn started(&self) -> (String, PaymentAuthorization) {
        let checkout = self
            .gateway
            .create_checkout(OWNER, &ready_changes(), None)
            .await
            .unwrap();
        let id = checkout.id().as_str().to_owned();
        let CompleteOutcome::AuthorizationRequired { authorization, .. } = self
            .gateway
            .complete_checkout(OWNER, &id, None)
            .await
            .unwrap()
        else {
            panic!("a device authorization");
        };
        (id, *authorization)
    }

    /// A world whose wallet asks for its usual interval (5 s, the code living 15 minutes),
    /// and a ready checkout paid as a guest in it.
    async fn started_at_the_wallets_pace() -> (World, String, PaymentAuthorization) {
        let world = World::new();
        world.sims.wallet.set_faults(Faults {
            poll_interval_secs: Some(5),
            ..Faults::default()
        });
        let (id, authorization) = world.started().await;
        (world, id, authorization)
    }

    /// A ready checkout, paid as a guest and approved by the person in the wallet.
    async fn approved(&self) -> (String, PaymentAuthorization) {
        let (id, authorization) = self.started().await;
        self.sims
            .wallet
            .decide_device(authorization.user_code(), true)
            .unwrap();
        (id, authorization)
    }

    /// Runs the driver once on `authorization` after moving the clock to its next due time.
    async fn step(
        &self,
        gateway: &Gateway,
        authorization: &PaymentAuthorization,
    ) -> PaymentAuthorization {
        let current = self
            .shared
            .authorizations
            .get(authorization.id())
            .await
            .unwrap();
        let wait = (current.next_poll_at() - self.clock_now())
            .num_seconds()
            .max(0);
        self.clock.advance(wait);
        gateway.advance_authorization(current.id()).await.unwrap();
        self.shared
            .authorizations
            .get(authorization.id())
            .await
            .unwrap()
    }

    fn clock_now(&self) -> chrono::DateTime<chrono::Utc> {
        sacp_ports::Clock::now(self.clock.as_ref())
    }

    async fn checkout_status(&self, id: &str) -> CheckoutStatus {
        self.gateway.get_checkout(OWNER, id).await.unwrap().status()
    }
}

/// Another gateway replica on the same storage, upstreams and clock (its memory its own).
fn replica(clock: &Arc<ManualClock>, sims: &Simulators, shared: &Shared) -> Gateway {
    let idempotency = Arc::new(MemoryIdempotency::default());
    Gateway::new(
        Arc::new(FakeStore::new(sims.store.clone(), Duration::from_secs(5))),
        Arc::new(FakeWallet::new(sims.wallet.clone(), Duration::from_secs(5))),
        shared.checkouts.clone(),
        shared.authorizations.clone(),
        Arc::new(MemoryApiKeys::default()),
        GuardPorts {
            counters: Arc::new(MemoryRateCounters::default()),
            switches: Arc::new(MemorySwitchBoard::default()),
            idempotency,
            traffic: Arc::new(MemoryTrafficLog::default()),
            audit: Arc::new(MemoryAuditLog::default()),
        },
        clock.clone(),
        Arc::new(OsRandom),
        shared.step_ups.clone(),
        GatewayConfig::default(),
    )
}

pub fn ready_changes() -> CheckoutChanges {
    CheckoutChanges {
        items: Some(vec![ItemInput {
            product_id: Some(sacp_sim::catalog::ETHIOPIAN_YIRGACHEFFE.into()),
            quantity: Some(1),
        }]),
        buyer: Some(BuyerInput {
            name: Some("John Doe".into()),
            email: Some("john@example.com".into()),
            phone: None,
        }),
        fulfillment: Some(FulfillmentInput {
            kind: Some("shipping".into()),
            address: Some(AddressInput {
                street: Some("123 Main St".into()),
                city: Some("Toronto".into()),
                state: Some("ON".into()),
                postal_code: Some("M5V 1A1".into()),
                country: Some("CA".into()),
            }),
        }),
    }
}

fn wallet_faults(world: &World, faults: Faults) {
    world.sims.wallet.set_faults(Faults {
        poll_interval_secs: Some(1),
        ..faults
    });
}

/// The card issuer fails: payment tokens are refused for now (a failure that may pass).
fn issuer_fails(world: &World) {
    wallet_faults(
        world,
        Faults {
            payment_provider_error: true,
            ..Faults::default()
        },
    );
}

#[tokio::test]
async fn no_card_ends_the_payment_at_once_and_the_checkout_can_be_paid_once_a_card_is_added() {
    let world = World::new();
    let (id, authorization) = world.started().await;
    wallet_faults(
        &world,
        Faults {
            no_payment_method: true,
            ..Faults::default()
        },
    );
    world
        .sims
        .wallet
        .decide_device(authorization.user_code(), true)
        .unwrap();
    // One poll collects the approval and makes the first attempt.
    let ended = world.step(&world.gateway, &authorization).await;
    assert_eq!(ended.payment_status(), PaymentStatus::Failed);
    assert_eq!(ended.failure(), Some(failure::NO_PAYMENT_METHOD));
    assert_eq!(world.sims.wallet.stats().payment_token_requests, 1);
    assert_eq!(
        world.checkout_status(&id).await,
        CheckoutStatus::ReadyForPayment,
        "the checkout can be paid again"
    );
    assert_eq!(
        world.sims.wallet.stats().tokens_revoked,
        1,
        "the collected token is given back"
    );
    let view = world
        .gateway
        .payment_status(OWNER, &id, authorization.id().as_str())
        .await
        .unwrap();
    assert_eq!(view.status, PaymentStatus::Failed);

    // The person adds a card: the same checkout is paid.
    wallet_faults(&world, Faults::default());
    let CompleteOutcome::AuthorizationRequired {
        authorization: again,
        ..
    } = world
        .gateway
        .complete_checkout(OWNER, &id, None)
        .await
        .unwrap()
    else {
        panic!("a new device authorization");
    };
    assert_ne!(again.id(), authorization.id());
    world
        .sims
        .wallet
        .decide_device(again.user_code(), true)
        .unwrap();
    let done = world.step(&world.gateway, &again).await;
    assert_eq!(done.payment_status(), PaymentStatus::Completed);
    assert_eq!(world.checkout_status(&id).await, CheckoutStatus::Completed);
    assert_eq!(world.sims.store.stats().completions, 1);
}

#[tokio::test]
async fn an_approval_whose_order_cannot_be_placed_ends_in_time_after_few_wallet_calls() {
    let world = World::new();
    let (id, authorization) = world.approved().await;
    // The card issuer fails, and keeps failing.
    issuer_fails(&world);
    let mut current = authorization.clone();
    for _ in 0..50 {
        current = world.step(&world.gateway, &current).await;
        if current.status().is_terminal() {
            break;
        }
        assert_eq!(
            current.payment_status(),
            PaymentStatus::Approved,
            "while it is tried, the person is known to have approved"
        );
        let view = world
            .gateway
            .payment_status(OWNER, &id, current.id().as_str())
            .await
            .unwrap();
        assert_eq!(view.status, PaymentStatus::Approved);
    }
    assert_eq!(current.payment_status(), PaymentStatus::Failed);
    assert_eq!(current.failure(), Some(failure::ORDER_NOT_PLACED));
    let approved_at = current.approved_at().expect("approved");
    let took = (world.clock_now() - approved_at).num_seconds();
    assert!(
        took <= CHARGE_WINDOW_SECS,
        "ended within the deadline: {took} s"
    );
    let stats = world.sims.wallet.stats();
    assert_eq!(
        stats.payment_token_requests,
        u64::from(MAX_CHARGE_ATTEMPTS),
        "one payment-token request per attempt, no more"
    );
    assert_eq!(
        stats.device_tokens_minted, 1,
        "the approval was collected once"
    );
    assert_eq!(stats.tokens_revoked, 1);
    assert_eq!(world.sims.store.stats().completions, 0);
    assert_eq!(
        world.checkout_status(&id).await,
        CheckoutStatus::ReadyForPayment
    );
}

#[tokio::test]
async fn a_transient_failure_is_retried_and_the_order_placed_once() {
    let world = World::new();
    let (id, authorization) = world.approved().await;
    issuer_fails(&world);
    let first = world.step(&world.gateway, &authorization).await;
    assert_eq!(first.payment_status(), PaymentStatus::Approved);
    assert_eq!(first.attempts(), 1);
    wallet_faults(&world, Faults::default());
    let second = world.step(&world.gateway, &first).await;
    assert_eq!(second.payment_status(), PaymentStatus::Completed);
    assert_eq!(second.attempts(), 2);
    assert_eq!(world.sims.store.stats().completions, 1);
    assert_eq!(world.checkout_status(&id).await, CheckoutStatus::Completed);
}

#[tokio::test]
async fn an_approval_no_longer_collectable_ends_as_approval_expired() {
    let world = World::new();
    wallet_faults(
        &world,
        Faults {
            device_code_ttl_secs: Some(120),
            ..Faults::default()
        },
    );
    let (id, authorization) = world.approved().await;
    issuer_fails(&world);
    let first = world.step(&world.gateway, &authorization).await;
    assert_eq!(first.payment_status(), PaymentStatus::Approved);
    // The replica that collected the token is gone; another one picks the next attempt up
    // after the wallet stopped honouring the code.
    let other = replica(&world.clock, &world.sims, &world.shared);
    world.clock.advance(130);
    wallet_faults(&world, Faults::default());
    let ended = world.step(&other, &first).await;
    assert_eq!(ended.payment_status(), PaymentStatus::Failed);
    assert_eq!(ended.failure(), Some(failure::APPROVAL_EXPIRED));
    assert_eq!(
        world.checkout_status(&id).await,
        CheckoutStatus::ReadyForPayment
    );
    assert_eq!(world.sims.store.stats().completions, 0);
}

#[tokio::test]
async fn cancelling_while_the_order_is_being_placed_charges_nothing_and_gives_the_token_back() {
    let world = World::new();
    let (id, authorization) = world.approved().await;
    issuer_fails(&world);
    let approved = world.step(&world.gateway, &authorization).await;
    assert_eq!(approved.payment_status(), PaymentStatus::Approved);
    world.gateway.cancel_checkout(OWNER, &id).await.unwrap();
    assert_eq!(world.sims.wallet.stats().tokens_revoked, 1);
    wallet_faults(&world, Faults::default());
    let after = world
        .shared
        .authorizations
        .get(authorization.id())
        .await
        .unwrap();
    assert_eq!(after.payment_status(), PaymentStatus::Cancelled);
    world.clock.advance(3_600);
    world
        .gateway
        .advance_authorization(after.id())
        .await
        .unwrap();
    assert_eq!(world.sims.store.stats().completions, 0);
    assert_eq!(
        world
            .shared
            .checkouts
            .get(after.checkout_id())
            .await
            .unwrap()
            .status(),
        CheckoutStatus::Cancelled
    );
}

/// Over HTTP, in real time: a guest whose wallet has no card learns it within one poll
/// interval, and the answer says what to do.
#[tokio::test]
async fn the_agent_reads_why_the_payment_failed_and_what_to_do() {
    let app = spawn_app().await;
    let id = app.ready_checkout(1).await;
    let auth = app.complete_as_guest(&id).await;
    app.sims.wallet.set_faults(Faults {
        poll_interval_secs: Some(1),
        no_payment_method: true,
        ..Faults::default()
    });
    app.decide_in_wallet(&auth.str("/authorization_url"), true)
        .await;
    let started = std::time::Instant::now();
    let settled = app.poll_until_settled(&auth.str("/poll_endpoint")).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "learnt within about one poll interval (1 s here): {:?}",
        started.elapsed()
    );
    assert_eq!(settled.body["status"], "failed", "{}", settled.body);
    assert_eq!(settled.body["reason"], "no_payment_method");
    assert!(settled.str("/message").contains("add a card"));
    let checkout = app.get(&format!("/checkout/{id}")).await;
    assert_eq!(checkout.status, StatusCode::OK);
    assert_eq!(checkout.body["status"], "ready_for_payment");
    app.stop().await;
}

#[tokio::test]
async fn an_abandoned_payment_costs_the_wallet_a_few_dozen_polls_not_one_per_interval() {
    let (world, id, authorization) = World::started_at_the_wallets_pace().await;
    let mut current = authorization.clone();
    for _ in 0..1_000 {
        if current.payment_status() != PaymentStatus::Pending {
            break;
        }
        current = world.step(&world.gateway, &current).await;
    }
    assert_eq!(current.payment_status(), PaymentStatus::Expired);
    let polls = world.sims.wallet.stats().device_polls;
    assert!(
        (12..=30).contains(&polls),
        "{polls} polls (every interval for 15 minutes would be 180)"
    );
    assert_eq!(
        world.checkout_status(&id).await,
        CheckoutStatus::ReadyForPayment,
        "the checkout can be paid again"
    );
}

#[tokio::test]
async fn an_agent_watching_a_late_approval_gets_the_order_within_one_interval() {
    let (world, id, authorization) = World::started_at_the_wallets_pace().await;
    // Nobody watches for six minutes: the driver backs off.
    let mut current = authorization.clone();
    while current.created_at() + chrono::Duration::minutes(6) > world.clock_now() {
        current = world.step(&world.gateway, &current).await;
    }
    let wait = current.next_poll_at() - world.clock_now();
    assert!(wait > chrono::Duration::seconds(30), "backed off: {wait}");
    // The person approves; the agent asks where the payment stands.
    world
        .sims
        .wallet
        .decide_device(authorization.user_code(), true)
        .unwrap();
    let seen = world
        .gateway
        .payment_status(OWNER, &id, authorization.id().as_str())
        .await
        .unwrap();
    assert_eq!(seen.status, PaymentStatus::Pending);
    let watched = world
        .shared
        .authorizations
        .get(authorization.id())
        .await
        .unwrap();
    assert!(
        watched.next_poll_at() - world.clock_now() <= chrono::Duration::seconds(5),
        "the next poll is within one interval of the agent's read"
    );
    // One interval later the driver polls, collects the approval and places the order.
    world.step(&world.gateway, &watched).await;
    assert_eq!(world.checkout_status(&id).await, CheckoutStatus::Completed);
}
