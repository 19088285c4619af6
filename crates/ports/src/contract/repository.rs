//! Contract suites for the repository ports.

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use sacp_domain::{
    AuthorizationStatus, Cart, Checkout, CheckoutId, CheckoutStatus, Currency, DeviceCode,
    DeviceGrant, LineItem, Money, PaymentAuthorization, PaymentAuthorizationId, ProductId,
    Quantity, StoreSessionId,
};

use super::{CountingRandom, buyer, shipping};
use crate::repository::{
    ApiKeyRepository, AuthorizationRepository, CheckoutRepository, RepositoryError,
};

fn t(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_900_000_000 + seconds, 0).unwrap()
}

fn cart() -> Cart {
    let unit = Money::from_minor(1899, Currency::CAD);
    Cart::new(
        vec![LineItem {
            product_id: ProductId::parse("7f3c9a52-1d8e-4b6a-9c2f-0e5d8b1a4c71").unwrap(),
            name: "Ethiopian Yirgacheffe".into(),
            quantity: Quantity::parse(1).unwrap(),
            unit_price: unit,
            line_total: unit,
        }],
        Money::from_minor(247, Currency::CAD),
        None,
    )
    .unwrap()
}

/// A ready-for-payment checkout that has never been stored.
pub fn sample_checkout(random: &CountingRandom) -> Checkout {
    Checkout::open(
        "tests",
        CheckoutId::generate(random),
        StoreSessionId(format!("sess_{}", CheckoutId::generate(random))),
        cart(),
        Some(buyer()),
        Some(shipping()),
        t(0),
        t(1800),
    )
}

/// A pending authorization for `checkout` that has never been stored.
pub fn sample_authorization(
    random: &CountingRandom,
    checkout: &CheckoutId,
    start: DateTime<Utc>,
) -> PaymentAuthorization {
    PaymentAuthorization::start(
        PaymentAuthorizationId::generate(random),
        checkout.clone(),
        DeviceGrant {
            device_code: DeviceCode::new(format!("dc-{}", CheckoutId::generate(random))),
            user_code: "WSIM-3TY6VX".into(),
            verification_uri: "http://wallet/m/device".into(),
            verification_uri_complete: "http://wallet/m/device?code=WSIM-3TY6VX".into(),
            expires_in: 900,
            interval: Some(5),
            notification_sent: true,
        },
        Money::from_minor(2146, Currency::CAD),
        start,
    )
}

/// Runs every [`CheckoutRepository`] rule.
pub async fn checkout_repository_contract(repo: Arc<dyn CheckoutRepository>) {
    let random = CountingRandom::default();
    let mut checkout = sample_checkout(&random);
    assert_eq!(checkout.version(), 0);
    repo.insert(&mut checkout).await.expect("insert");
    assert_eq!(checkout.version(), 1, "insert stores version 1");

    let read = repo.get(checkout.id()).await.expect("get");
    assert_eq!(read, checkout, "a checkout reads back exactly as stored");

    let mut duplicate = read.clone();
    duplicate.set_version(0);
    assert_eq!(
        repo.insert(&mut duplicate).await,
        Err(RepositoryError::AlreadyExists)
    );

    let mut edited = read.clone();
    // A device hold, later cleared: storage must forget it, not keep a stale copy.
    let hold = sacp_domain::PaymentHold::Device {
        authorization_id: PaymentAuthorizationId::generate(&random),
        amount: edited.cart().total(),
    };
    edited.begin_authorization(hold, t(10)).unwrap();
    repo.update(&mut edited)
        .await
        .expect("update at the read version");
    assert_eq!(edited.version(), 2);
    let stored = repo.get(checkout.id()).await.unwrap();
    assert_eq!(stored.status(), CheckoutStatus::Authorizing);
    assert_eq!(stored, edited);

    // A writer holding the old version loses and changes nothing.
    let mut stale = read;
    stale.cancel(t(11)).unwrap();
    assert_eq!(
        repo.update(&mut stale).await,
        Err(RepositoryError::Conflict)
    );
    assert_eq!(
        stale.version(),
        1,
        "a refused update leaves the version as it was"
    );
    assert_eq!(
        repo.get(checkout.id()).await.unwrap().status(),
        CheckoutStatus::Authorizing
    );

    let unknown = CheckoutId::generate(&random);
    assert_eq!(repo.get(&unknown).await, Err(RepositoryError::NotFound));
    assert_eq!(
        repo.get(checkout.id()).await.unwrap().owner(),
        "tests",
        "the owning organisation is kept"
    );

    // A placed order finds its checkout, with who paid.
    let mut paid = sample_checkout(&random);
    repo.insert(&mut paid).await.unwrap();
    let hold = sacp_domain::PaymentHold::Device {
        authorization_id: PaymentAuthorizationId::generate(&random),
        amount: paid.cart().total(),
    };
    paid.begin_authorization(hold.clone(), t(10)).unwrap();
    let order = sacp_domain::OrderConfirmation {
        order_id: format!("ord_{}", paid.id().as_str()),
        transaction_id: "txn_1".into(),
    };
    paid.complete_authorized(&hold, order.clone(), t(11))
        .unwrap();
    paid.note_payer("usr_someone");
    repo.update(&mut paid).await.unwrap();
    let found = repo
        .with_order(&order.order_id)
        .await
        .expect("found by its order");
    assert_eq!(found.id(), paid.id());
    assert_eq!(found.payer(), Some("usr_someone"));
    assert_eq!(
        repo.with_order("ord_nobody").await,
        Err(RepositoryError::NotFound)
    );
    let mut never_stored = sample_checkout(&random);
    never_stored.set_version(1);
    assert_eq!(
        repo.update(&mut never_stored).await,
        Err(RepositoryError::NotFound)
    );

    // Many writers from the same version: exactly one wins.
    let base = repo.get(checkout.id()).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let repo = repo.clone();
        let mut copy = base.clone();
        tasks.push(tokio::spawn(async move {
            copy.cancel(t(20 + i)).unwrap();
            repo.update(&mut copy).await
        }));
    }
    let mut wins = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => wins += 1,
            Err(RepositoryError::Conflict) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        wins, 1,
        "compare-and-swap lets exactly one concurrent writer win"
    );
    let cancelled = repo.get(checkout.id()).await.unwrap();
    assert_eq!(cancelled.version(), 3);
    assert_eq!(cancelled.status(), CheckoutStatus::Cancelled);
    assert_eq!(cancelled.hold(), None, "a cleared hold reads back cleared");

    // A read and its update together: a declined edit writes nothing.
    let mut editable = sample_checkout(&random);
    repo.insert(&mut editable).await.unwrap();
    let (read, written) = repo
        .read_and_update(
            editable.id(),
            Box::new(|c: &mut Checkout| {
                c.cancel(t(30)).unwrap();
                false
            }),
        )
        .await
        .unwrap();
    assert!(!written);
    assert_eq!(read, editable, "declined: the checkout as read");
    assert_eq!(repo.get(editable.id()).await.unwrap(), editable);
    let (claimed, written) = repo
        .read_and_update(
            editable.id(),
            Box::new(|c: &mut Checkout| c.begin_edit(t(31)).is_ok()),
        )
        .await
        .unwrap();
    assert!(written);
    assert_eq!(claimed.version(), editable.version() + 1);
    assert!(claimed.is_being_edited(t(31)));
    assert_eq!(repo.get(editable.id()).await.unwrap(), claimed);
    assert_eq!(
        repo.read_and_update(
            sample_checkout(&random).id(),
            Box::new(|_: &mut Checkout| true)
        )
        .await
        .err(),
        Some(RepositoryError::NotFound)
    );
    // Concurrent edits of one checkout: each sees the one before it, so exactly one
    // claims the edit and the others decline (none is lost to a conflict).
    let mut contested = sample_checkout(&random);
    repo.insert(&mut contested).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let repo = repo.clone();
        let id = contested.id().clone();
        tasks.push(tokio::spawn(async move {
            repo.read_and_update(
                &id,
                Box::new(|c: &mut Checkout| c.begin_edit(t(40)).is_ok()),
            )
            .await
        }));
    }
    let mut claims = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok((_, true)) => claims += 1,
            Ok((read, false)) => assert!(read.is_being_edited(t(40))),
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(claims, 1, "exactly one concurrent edit claims the checkout");
    assert_eq!(
        repo.get(contested.id()).await.unwrap().version(),
        contested.version() + 1
    );
}

/// Runs every [`AuthorizationRepository`] rule.
pub async fn authorization_repository_contract(
    checkouts: Arc<dyn CheckoutRepository>,
    repo: Arc<dyn AuthorizationRepository>,
) {
    let random = CountingRandom::default();
    // Storage may require the checkout to exist (a foreign key).
    let mut checkout = sample_checkout(&random);
    checkouts.insert(&mut checkout).await.unwrap();
    let start = t(0);
    let before = repo.live_counts().await.expect("live counts");

    let mut auth = sample_authorization(&random, checkout.id(), start);
    repo.insert(&mut auth).await.expect("insert");
    assert_eq!(
        repo.live_counts().await.unwrap().pending,
        before.pending + 1,
        "a new authorization is counted pending"
    );
    assert_eq!(auth.version(), 1);
    let read = repo.get(auth.id()).await.expect("get");
    assert_eq!(
        read, auth,
        "an authorization reads back exactly, device code included"
    );
    assert_eq!(read.device_code().expose(), auth.device_code().expose());

    let mut duplicate = read.clone();
    duplicate.set_version(0);
    assert_eq!(
        repo.insert(&mut duplicate).await,
        Err(RepositoryError::AlreadyExists)
    );

    let early = repo.due(t(4), 10).await.unwrap();
    assert!(
        early.due.iter().all(|a| a.id() != auth.id()),
        "not due before its poll time"
    );
    assert!(
        early
            .next_at
            .is_some_and(|at| at > t(4) && at <= auth.next_poll_at()),
        "the next due time tells when to look again: {:?}",
        early.next_at
    );
    let due = repo.due(t(5), 10).await.unwrap().due;
    assert!(
        due.iter().any(|a| a.id() == auth.id()),
        "due at its poll time"
    );

    let mut claimed = read.clone();
    claimed.claim(t(5)).unwrap();
    repo.update(&mut claimed).await.expect("claim");
    let mut rival = read;
    rival.claim(t(5)).unwrap();
    assert_eq!(
        repo.update(&mut rival).await,
        Err(RepositoryError::Conflict),
        "two pollers cannot both claim the same poll"
    );
    let after_claim = repo.due(t(9), 10).await.unwrap();
    assert!(after_claim.due.iter().all(|a| a.id() != auth.id()));
    assert!(
        after_claim
            .next_at
            .is_some_and(|at| at > t(9) && at <= claimed.next_poll_at()),
        "a claimed poll is due again at its next poll time: {:?}",
        after_claim.next_at
    );

    claimed.approve(t(6)).unwrap();
    repo.update(&mut claimed).await.unwrap();
    let approved = repo.live_counts().await.unwrap();
    assert_eq!(
        (approved.pending, approved.approved),
        (before.pending, before.approved + 1),
        "an approved one is counted approved, no longer pending"
    );
    assert!(
        repo.due(t(6), 10)
            .await
            .unwrap()
            .due
            .iter()
            .any(|a| a.id() == auth.id()),
        "an approved authorization stays due until consumed"
    );
    claimed.consume(t(7)).unwrap();
    repo.update(&mut claimed).await.unwrap();
    let consumed = repo.get(auth.id()).await.unwrap();
    assert_eq!(consumed.status(), AuthorizationStatus::Consumed);
    assert_eq!(
        repo.live_counts().await.unwrap(),
        before,
        "an ended authorization is not live"
    );
    assert_eq!(repo.active_for_checkout(checkout.id()).await.unwrap(), None);
    // Once the first has ended, the checkout may get a new one.
    let mut next = sample_authorization(&random, checkout.id(), start);
    repo.insert(&mut next)
        .await
        .expect("a new authorization after the last one ended");
    next.cancel(t(8)).unwrap();
    repo.update(&mut next).await.unwrap();
    assert!(
        repo.due(t(10_000), 10)
            .await
            .unwrap()
            .due
            .iter()
            .all(|a| a.id() != auth.id())
    );

    // The latest of a checkout's authorizations, ended or not; none for one that had none.
    let mut history = sample_checkout(&random);
    checkouts.insert(&mut history).await.unwrap();
    assert_eq!(repo.latest_for_checkout(history.id()).await.unwrap(), None);
    let mut older = sample_authorization(&random, history.id(), start);
    repo.insert(&mut older).await.unwrap();
    older.cancel(t(1)).unwrap();
    repo.update(&mut older).await.unwrap();
    let mut newer = sample_authorization(&random, history.id(), start + Duration::seconds(30));
    repo.insert(&mut newer).await.unwrap();
    let latest = repo.latest_for_checkout(history.id()).await.unwrap();
    assert_eq!(latest.as_ref().map(|a| a.id()), Some(newer.id()));
    newer.cancel(t(40)).unwrap();
    repo.update(&mut newer).await.unwrap();
    let latest = repo.latest_for_checkout(history.id()).await.unwrap();
    assert_eq!(
        latest.as_ref().map(|a| a.id()),
        Some(newer.id()),
        "the latest stays the latest once ended"
    );

    // Soonest first, and the limit is honoured.
    let (mut first, mut second) = (sample_checkout(&random), sample_checkout(&random));
    checkouts.insert(&mut first).await.unwrap();
    checkouts.insert(&mut second).await.unwrap();
    let mut later = sample_authorization(&random, first.id(), start + Duration::seconds(100));
    let mut sooner = sample_authorization(&random, second.id(), start + Duration::seconds(50));
    repo.insert(&mut later).await.unwrap();
    repo.insert(&mut sooner).await.unwrap();
    let due = repo.due(t(1000), 1).await.unwrap().due;
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].id(), sooner.id());

    assert_eq!(
        repo.get(&PaymentAuthorizationId::generate(&random)).await,
        Err(RepositoryError::NotFound)
    );

    // Read with its checkout, as a status poll reads it.
    let (read, its_checkout) = repo
        .with_checkout(sooner.id(), checkouts.as_ref())
        .await
        .expect("with its checkout");
    assert_eq!(read, sooner);
    assert_eq!(its_checkout.id(), second.id());
    assert_eq!(its_checkout.version(), second.version());
    assert!(matches!(
        repo.with_checkout(
            &PaymentAuthorizationId::generate(&random),
            checkouts.as_ref()
        )
        .await,
        Err(RepositoryError::NotFound)
    ));

    // Several claims at once: each its own compare-and-swap.
    let stale = sooner.clone();
    let mut moved = sooner.clone();
    moved.claim(t(1000)).unwrap();
    repo.update(&mut moved).await.unwrap();
    let mut both = [later.clone(), stale];
    both[0].claim(t(1000)).unwrap();
    both[1].claim(t(1000)).unwrap();
    let results = repo.update_all(&mut both).await;
    assert_eq!(
        results,
        vec![Ok(()), Err(RepositoryError::Conflict)],
        "the fresh copy is written, the stale one refused"
    );
    assert_eq!(both[0].version(), later.version() + 1);
    assert_eq!(repo.get(later.id()).await.unwrap(), both[0]);
    assert_eq!(
        repo.get(sooner.id()).await.unwrap(),
        moved,
        "a refused copy changes nothing"
    );
    assert!(repo.update_all(&mut []).await.is_empty());

    // A write that reads the checkout back with it.
    let mut watched = sample_checkout(&random);
    checkouts.insert(&mut watched).await.unwrap();
    let mut approving = sample_authorization(&random, watched.id(), start);
    repo.insert(&mut approving).await.unwrap();
    let mut stale = approving.clone();
    approving.claim(t(5)).unwrap();
    let read = repo
        .update_reading_checkout(&mut approving, checkouts.as_ref())
        .await
        .expect("written")
        .expect("its checkout read");
    assert_eq!(read, watched);
    assert_eq!(repo.get(approving.id()).await.unwrap(), approving);
    stale.claim(t(5)).unwrap();
    assert_eq!(
        repo.update_reading_checkout(&mut stale, checkouts.as_ref())
            .await
            .err(),
        Some(RepositoryError::Conflict),
        "a stale copy is refused and nothing is read"
    );

    // A payment's end written with its checkout's change.
    let mut paid = sample_checkout(&random);
    checkouts.insert(&mut paid).await.unwrap();
    let mut ending = sample_authorization(&random, paid.id(), start);
    repo.insert(&mut ending).await.unwrap();
    let (mut stale_checkout, mut fresh_auth) = (paid.clone(), ending.clone());
    let mut moved_checkout = paid.clone();
    moved_checkout.cancel(t(1)).unwrap();
    checkouts.update(&mut moved_checkout).await.unwrap();
    stale_checkout.cancel(t(2)).unwrap();
    fresh_auth.cancel(t(2)).unwrap();
    let (checkout_written, authorization_written) = repo
        .update_after_checkout(&mut stale_checkout, &mut fresh_auth, checkouts.as_ref())
        .await;
    assert_eq!(
        (checkout_written, authorization_written),
        (Err(RepositoryError::Conflict), None),
        "a refused checkout writes nothing"
    );
    assert_eq!(repo.get(ending.id()).await.unwrap(), ending);
    let mut moved_auth = ending.clone();
    moved_auth.cancel(t(3)).unwrap();
    repo.update(&mut moved_auth).await.unwrap();
    let mut reopened = moved_checkout.clone();
    let mut failing = ending.clone();
    failing.cancel(t(4)).unwrap();
    let before = reopened.version();
    let results = repo
        .update_after_checkout(&mut reopened, &mut failing, checkouts.as_ref())
        .await;
    assert_eq!(
        results,
        (Ok(()), Some(Err(RepositoryError::Conflict))),
        "a refused authorization leaves the checkout written"
    );
    assert_eq!(reopened.version(), before + 1);
    assert_eq!(checkouts.get(paid.id()).await.unwrap(), reopened);
    assert_eq!(repo.get(ending.id()).await.unwrap(), moved_auth);
    let mut both_checkout = reopened.clone();
    let mut both_auth = moved_auth.clone();
    let results = repo
        .update_after_checkout(&mut both_checkout, &mut both_auth, checkouts.as_ref())
        .await;
    assert_eq!(results, (Ok(()), Some(Ok(()))), "both written");
    assert_eq!(both_checkout.version(), reopened.version() + 1);
    assert_eq!(both_auth.version(), moved_auth.version() + 1);
    assert_eq!(checkouts.get(paid.id()).await.unwrap(), both_checkout);
    assert_eq!(repo.get(ending.id()).await.unwrap(), both_auth);

    // Many reads at once, of checkouts and of payments, some of the same record and some
    // of none: each gets its own answer (storage may answer them together).
    let mut reads = Vec::new();
    for round in 0..6 {
        let (checkouts, repo) = (checkouts.clone(), repo.clone());
        let (checkout, payment) = match round % 3 {
            0 => (paid.id().clone(), ending.id().clone()),
            1 => (watched.id().clone(), approving.id().clone()),
            _ => (
                sample_checkout(&random).id().clone(),
                sample_authorization(&random, paid.id(), start).id().clone(),
            ),
        };
        reads.push(tokio::spawn(async move {
            let (read, polled) = tokio::join!(
                checkouts.get(&checkout),
                repo.with_checkout(&payment, checkouts.as_ref())
            );
            (round, read, polled)
        }));
    }
    for read in reads {
        let (round, checkout, payment) = read.await.unwrap();
        match round % 3 {
            0 => {
                assert_eq!(checkout.unwrap(), both_checkout);
                assert_eq!(payment.unwrap(), (both_auth.clone(), both_checkout.clone()));
            }
            1 => {
                assert_eq!(checkout.unwrap(), watched);
                assert_eq!(payment.unwrap(), (approving.clone(), watched.clone()));
            }
            _ => {
                assert_eq!(checkout.err(), Some(RepositoryError::NotFound));
                assert_eq!(payment.err(), Some(RepositoryError::NotFound));
            }
        }
    }
}

/// Runs the retirement rules of [`CheckoutRepository::retire`] and
/// [`AuthorizationRepository::retire`] on empty storage (it counts what goes).
pub async fn retirement_contract(
    checkouts: Arc<dyn CheckoutRepository>,
    authorizations: Arc<dyn AuthorizationRepository>,
) {
    let random = CountingRandom::default();
    // Left open: ready for payment until t(1800).
    let mut open = sample_checkout(&random);
    checkouts.insert(&mut open).await.unwrap();
    // Cancelled at t(10).
    let mut cancelled = sample_checkout(&random);
    checkouts.insert(&mut cancelled).await.unwrap();
    cancelled.cancel(t(10)).unwrap();
    checkouts.update(&mut cancelled).await.unwrap();
    // Waiting for a payment, long after its own expiry: kept, and so is its authorization.
    let mut paying = sample_checkout(&random);
    checkouts.insert(&mut paying).await.unwrap();
    let mut live = sample_authorization(&random, paying.id(), t(20));
    authorizations.insert(&mut live).await.unwrap();
    let hold = sacp_domain::PaymentHold::Device {
        authorization_id: live.id().clone(),
        amount: paying.cart().total(),
    };
    paying.begin_authorization(hold, t(20)).unwrap();
    checkouts.update(&mut paying).await.unwrap();
    // An authorization that ended at t(30) (its checkout went back to ready for payment).
    let mut ended = sample_authorization(&random, open.id(), t(25));
    authorizations.insert(&mut ended).await.unwrap();
    ended.cancel(t(30)).unwrap();
    authorizations.update(&mut ended).await.unwrap();

    assert_eq!(
        authorizations.retire(t(30), 100).await.unwrap(),
        0,
        "an authorization that ended at the cutoff is kept"
    );
    assert_eq!(authorizations.retire(t(31), 100).await.unwrap(), 1);
    assert_eq!(
        authorizations.get(ended.id()).await,
        Err(RepositoryError::NotFound),
        "a retired authorization is gone"
    );
    assert_eq!(
        authorizations.get(live.id()).await.unwrap(),
        live,
        "a live authorization is never retired"
    );

    assert_eq!(
        checkouts.retire(t(10), 100).await.unwrap(),
        0,
        "nothing ended before t(10)"
    );
    assert_eq!(checkouts.retire(t(11), 100).await.unwrap(), 1);
    assert_eq!(
        checkouts.get(cancelled.id()).await,
        Err(RepositoryError::NotFound),
        "the cancelled checkout went"
    );
    assert_eq!(checkouts.get(open.id()).await.unwrap(), open, "still open");
    assert_eq!(
        checkouts.retire(t(1801), 100).await.unwrap(),
        1,
        "a checkout left open goes once its expiry passed"
    );
    assert_eq!(
        checkouts.get(open.id()).await,
        Err(RepositoryError::NotFound)
    );
    assert_eq!(
        checkouts.retire(t(100_000), 100).await.unwrap(),
        0,
        "a checkout waiting for a payment is kept however old"
    );
    assert_eq!(checkouts.get(paying.id()).await.unwrap(), paying);

    // Once the payment ended, both go, in batches of the given size.
    live.cancel(t(40)).unwrap();
    authorizations.update(&mut live).await.unwrap();
    let hold = paying.hold().cloned().unwrap();
    paying.fail(&hold, "declined", t(40)).unwrap();
    checkouts.update(&mut paying).await.unwrap();
    let mut more = Vec::new();
    for _ in 0..3 {
        let mut checkout = sample_checkout(&random);
        checkouts.insert(&mut checkout).await.unwrap();
        checkout.cancel(t(50)).unwrap();
        checkouts.update(&mut checkout).await.unwrap();
        more.push(checkout);
    }
    assert_eq!(checkouts.retire(t(100), 2).await.unwrap(), 2, "the limit");
    assert_eq!(checkouts.retire(t(100), 10).await.unwrap(), 2);
    assert_eq!(checkouts.retire(t(100), 10).await.unwrap(), 0);
    assert_eq!(
        checkouts.get(paying.id()).await,
        Err(RepositoryError::NotFound)
    );
    // Storage that keeps authorizations beside their checkout may have taken it already.
    authorizations.retire(t(100), 10).await.unwrap();
    assert_eq!(
        authorizations.get(live.id()).await,
        Err(RepositoryError::NotFound)
    );
}

/// Runs every [`ApiKeyRepository`] rule.
pub async fn api_key_repository_contract(repo: Arc<dyn ApiKeyRepository>) {
    use sacp_domain::access::{ApiKey, KeyLimits, NewKey, Scope};

    let random = CountingRandom::default();
    let new = |name: &str| NewKey {
        name: name.into(),
        org: "acme".into(),
        scopes: [Scope::CatalogRead, Scope::SearchRead]
            .into_iter()
            .collect(),
        limits: KeyLimits::READ_TIER,
        expires_at: Some(t(86_400)),
    };
    let (mut first, first_secret) = ApiKey::create(new("first"), t(0), &random).unwrap();
    repo.insert(&mut first).await.expect("insert");
    assert_eq!(first.version(), 1);
    let read = repo.get(first.id()).await.expect("get");
    assert_eq!(read, first, "a key reads back exactly, hash included");
    assert_eq!(read.authenticate(first_secret.expose(), t(1)), Ok(()));
    let mut duplicate = read.clone();
    duplicate.set_version(0);
    assert_eq!(
        repo.insert(&mut duplicate).await,
        Err(RepositoryError::AlreadyExists)
    );

    let (mut second, _) = ApiKey::create(new("second"), t(5), &random).unwrap();
    repo.insert(&mut second).await.unwrap();
    let listed: Vec<_> = repo
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.id().clone())
        .collect();
    assert_eq!(
        listed,
        vec![first.id().clone(), second.id().clone()],
        "oldest first"
    );

    // Rotation with grace, then revocation: each is seen by the next read.
    let mut rotated = read.clone();
    let fresh = rotated
        .rotate(chrono::Duration::seconds(60), t(10), &random)
        .unwrap();
    rotated
        .update(
            Some([Scope::CatalogRead].into_iter().collect()),
            None,
            Some(false),
        )
        .unwrap();
    repo.update(&mut rotated).await.unwrap();
    let stored = repo.get(first.id()).await.unwrap();
    assert_eq!(stored.authenticate(fresh.expose(), t(11)), Ok(()));
    assert_eq!(
        stored.authenticate(first_secret.expose(), t(11)),
        Ok(()),
        "old secret within grace"
    );
    assert!(!stored.has_scope(Scope::SearchRead));
    let mut stale = read;
    stale.revoke(t(12));
    assert_eq!(
        repo.update(&mut stale).await,
        Err(RepositoryError::Conflict)
    );
    let mut revoked = repo.get(first.id()).await.unwrap();
    revoked.revoke(t(12));
    repo.update(&mut revoked).await.unwrap();
    assert!(
        repo.get(first.id())
            .await
            .unwrap()
            .authenticate(fresh.expose(), t(13))
            .is_err()
    );
    assert_eq!(
        repo.get(&sacp_domain::ApiKeyId::generate(&random)).await,
        Err(RepositoryError::NotFound)
    );

    // Uses are recorded apart from changes: the later time wins, the version stays, and an
    // update from an older read never puts an older time back.
    let before = repo.get(second.id()).await.unwrap();
    repo.record_uses(&[
        (second.id().clone(), t(30)),
        (sacp_domain::ApiKeyId::generate(&random), t(30)),
    ])
    .await
    .expect("record uses (unknown ids skipped)");
    repo.record_uses(&[(second.id().clone(), t(20))])
        .await
        .unwrap();
    let used = repo.get(second.id()).await.unwrap();
    assert_eq!(
        used.last_used_at(),
        Some(t(30)),
        "an earlier use never replaces a later one"
    );
    assert_eq!(
        used.version(),
        before.version(),
        "recording a use is not a change"
    );
    let mut changed = before;
    changed.update(None, None, Some(true)).unwrap();
    repo.update(&mut changed)
        .await
        .expect("a change from a read before the use");
    let stored = repo.get(second.id()).await.unwrap();
    assert_eq!(
        stored.last_used_at(),
        Some(t(30)),
        "the change kept the later use"
    );
    assert!(stored.record().disabled);
}

/// Runs every [`crate::repository::AuditLog`] rule.
pub async fn audit_log_contract(log: Arc<dyn crate::repository::AuditLog>) {
    use sacp_domain::audit::{AuditEvent, AuditOutcome};

    let random = CountingRandom::default();
    let (key_a, key_b) = (
        sacp_domain::ApiKeyId::generate(&random),
        sacp_domain::ApiKeyId::generate(&random),
    );
    let event = |second: i64, key: Option<&sacp_domain::ApiKeyId>, action: &str| AuditEvent {
        at: t(second),
        request_id: format!("req_{second}"),
        key_id: key.cloned(),
        org: key.map(|_| "acme".to_owned()),
        subject: (second == 3).then(|| "usr_demo".to_owned()),
        action: action.to_owned(),
        resource: Some(format!("cs_{second}")),
        outcome: if second == 2 {
            AuditOutcome::Denied
        } else {
            AuditOutcome::Success
        },
        status: if second == 2 { 401 } else { 201 },
        source: None,
        count: 1,
    };
    log.record(&event(1, Some(&key_a), "POST /checkout"))
        .await
        .expect("record");
    log.record(&event(2, None, "POST /checkout")).await.unwrap();
    log.record(&event(3, Some(&key_b), "POST /checkout/{id}/complete"))
        .await
        .unwrap();
    log.record(&event(4, Some(&key_a), "PATCH /checkout/{id}"))
        .await
        .unwrap();

    let all = log.query(None, 10).await.unwrap();
    let seconds: Vec<String> = all.iter().map(|e| e.request_id.clone()).collect();
    assert_eq!(
        seconds,
        ["req_4", "req_3", "req_2", "req_1"],
        "newest first"
    );
    assert_eq!(
        all[1],
        event(3, Some(&key_b), "POST /checkout/{id}/complete"),
        "an event reads back exactly"
    );
    let of_a = log.query(Some(&key_a), 10).await.unwrap();
    assert_eq!(of_a.len(), 2);
    assert!(of_a.iter().all(|e| e.key_id.as_ref() == Some(&key_a)));
    assert_eq!(
        log.query(None, 2).await.unwrap().len(),
        2,
        "the limit is honoured"
    );

    // Counted refusals: one row per source, action, status and minute, however many
    // flushes (or replicas) add to it.
    let minute = t(600);
    let refusal = |source: &str, status: u16, count: u64| AuditEvent {
        at: minute,
        request_id: format!("req_refused_{source}_{status}"),
        key_id: None,
        org: None,
        subject: None,
        action: "GET /admin/keys".to_owned(),
        resource: None,
        outcome: AuditOutcome::of_status(status),
        status,
        source: Some(source.to_owned()),
        count,
    };
    log.add_refusals(&[
        refusal("ip:203.0.113.9", 401, 5),
        refusal("ip:198.51.100.1", 401, 1),
    ])
    .await
    .expect("add refusals");
    log.add_refusals(&[
        refusal("ip:203.0.113.9", 401, 7),
        refusal("ip:203.0.113.9", 403, 2),
    ])
    .await
    .unwrap();
    let counted: Vec<AuditEvent> = log
        .query(None, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.source.is_some())
        .collect();
    assert_eq!(
        counted.len(),
        3,
        "one row per source, action, status and minute"
    );
    let flood = counted
        .iter()
        .find(|e| e.source.as_deref() == Some("ip:203.0.113.9") && e.status == 401)
        .expect("the flood's row");
    assert_eq!(flood.count, 12, "counts add up");
    assert_eq!(flood.key_id, None, "a refused secret is credited to no key");
    assert_eq!(
        flood.request_id, "req_refused_ip:203.0.113.9_401",
        "the first request id stays"
    );
    let later = AuditEvent {
        at: t(660),
        ..refusal("ip:203.0.113.9", 401, 1)
    };
    log.add_refusals(&[later]).await.unwrap();
    assert_eq!(
        log.query(None, 100)
            .await
            .unwrap()
            .iter()
            .filter(|e| e.source.as_deref() == Some("ip:203.0.113.9") && e.status == 401)
            .count(),
        2,
        "the next minute starts a new row"
    );

    // Retirement: oldest first, what is older than the cutoff only.
    assert_eq!(log.retire(t(3), 100).await.unwrap(), 2);
    let left: Vec<String> = log
        .query(None, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.source.is_none())
        .map(|e| e.request_id)
        .collect();
    assert_eq!(left, ["req_4", "req_3"], "events before the cutoff went");
    assert_eq!(log.retire(t(1000), 1).await.unwrap(), 1, "the limit");
    assert_eq!(log.retire(t(1000), 100).await.unwrap(), 5);
    assert!(log.query(None, 100).await.unwrap().is_empty());
}
