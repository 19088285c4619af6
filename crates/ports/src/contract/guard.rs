//! Contract suites of the guardrail ports ([`crate::guard`]).

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use sacp_domain::ApiKeyId;
use sacp_domain::audit::TrafficCount;
use sacp_domain::idempotency::{
    Answer, Begin, Claim, IdempotencyKey, IdempotencyScope, StoredResponse,
};
use sacp_domain::ratelimit::{Limit, Moment, Policy};
use sacp_domain::switches::Switches;

use super::CountingRandom;
use super::repository::{sample_authorization, sample_checkout};
use crate::{
    AuthorizationRepository, CheckoutRepository, IdempotencyStore, RateCounters, RepositoryError,
    SwitchBoard, TrafficLog,
};

fn t(seconds: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
}

/// A subject no other run of the suite uses (suites may share a database).
fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        ApiKeyId::generate(&CountingRandom::default()).as_str()
    )
}

/// Runs every [`RateCounters`] rule.
pub async fn rate_counters_contract(counters: Arc<dyn RateCounters>) {
    let key = Limit::new(Policy::per_minute("key-minute", 10), unique("key"));
    let day = Limit::new(Policy::per_day("key-day", 100), unique("key"));
    let now = t(0);
    let both = [key.counter(now), day.counter(now)];
    assert_eq!(counters.hit(&both).await.unwrap(), vec![1, 1]);
    assert_eq!(counters.hit(&both).await.unwrap(), vec![2, 2]);
    assert_eq!(
        counters
            .hit(&[day.counter(now), key.counter(now)])
            .await
            .unwrap(),
        vec![3, 3],
        "counts come back in the order asked"
    );
    let next_minute = key.counter(now + Duration::seconds(60));
    assert_eq!(
        counters
            .hit(std::slice::from_ref(&next_minute))
            .await
            .unwrap(),
        vec![1],
        "a new window starts at 0"
    );
    counters.release(&both).await.unwrap();
    assert_eq!(
        counters.hit(&both).await.unwrap(),
        vec![3, 3],
        "release takes one back"
    );
    counters
        .release(std::slice::from_ref(&next_minute))
        .await
        .unwrap();
    counters
        .release(std::slice::from_ref(&next_minute))
        .await
        .unwrap();
    assert_eq!(
        counters
            .hit(std::slice::from_ref(&next_minute))
            .await
            .unwrap(),
        vec![1],
        "never below zero"
    );

    // Concurrent hits never lose an increment.
    let busy = Limit::new(Policy::per_minute("key-minute", 10), unique("busy")).counter(now);
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let counters = counters.clone();
        let busy = busy.clone();
        tasks.push(tokio::spawn(async move {
            counters.hit(&[busy]).await.unwrap()[0]
        }));
    }
    let mut seen = Vec::new();
    for task in tasks {
        seen.push(task.await.unwrap());
    }
    seen.sort_unstable();
    assert_eq!(
        seen,
        (1..=40).collect::<Vec<u64>>(),
        "each hit gets its own count"
    );

    // Concurrent requests with overlapping counters: every counter hands out each count
    // once, in either order of the names asked.
    let (org, user) = (
        Limit::new(Policy::per_minute("org-minute", 10), unique("org")).counter(now),
        Limit::new(Policy::per_minute("user-minute", 10), unique("user")).counter(now),
    );
    let mut tasks = Vec::new();
    for n in 0..30 {
        let counters = counters.clone();
        let asked = match n % 3 {
            0 => vec![org.clone(), user.clone()],
            1 => vec![user.clone(), org.clone()],
            _ => vec![org.clone()],
        };
        tasks.push(tokio::spawn(async move {
            let counts = counters.hit(&asked).await.unwrap();
            asked.into_iter().zip(counts).collect::<Vec<_>>()
        }));
    }
    let (mut org_seen, mut user_seen) = (Vec::new(), Vec::new());
    for task in tasks {
        for (counter, count) in task.await.unwrap() {
            if counter == org {
                org_seen.push(count);
            } else {
                user_seen.push(count);
            }
        }
    }
    org_seen.sort_unstable();
    user_seen.sort_unstable();
    assert_eq!(org_seen, (1..=30).collect::<Vec<u64>>());
    assert_eq!(user_seen, (1..=20).collect::<Vec<u64>>());

    // Storage that counts at once counts the very counters `hit` and `release` do.
    let shared = Limit::new(Policy::per_minute("key-minute", 10), unique("now"));
    let moment = Moment::of(now);
    let at_once = [shared.counter_at(moment), key.counter_at(moment)];
    let mut counts = [0, 0];
    if let Some(counted) = counters.hit_now(&at_once, &mut counts) {
        counted.unwrap();
        assert_eq!(counts, [1, 4], "the key's counter went on from 3");
        assert_eq!(counters.hit(&[shared.counter(now)]).await.unwrap(), vec![2]);
        counters.release(&[shared.counter(now)]).await.unwrap();
        counters
            .hit_now(&at_once[..1], &mut counts[..1])
            .unwrap()
            .unwrap();
        assert_eq!(counts[0], 2, "released by `release`, counted on at once");
        counters
            .hit_now(
                &[shared.counter_at(Moment::of(now + Duration::days(1)))],
                &mut counts[..1],
            )
            .unwrap()
            .unwrap();
        assert_eq!(counts[0], 1, "a new window starts at 0");
    }

    assert!(counters.purge(t(3 * 86_400)).await.unwrap() >= 3);
    assert_eq!(
        counters.hit(&[key.counter(now)]).await.unwrap(),
        vec![1],
        "purged windows are forgotten"
    );
}

/// Runs every [`SwitchBoard`] rule.
pub async fn switch_board_contract(board: Arc<dyn SwitchBoard>) {
    assert_eq!(board.switches().await.unwrap(), Switches::default());
    let off = Switches {
        read_only: true,
        checkout_creation: false,
        payments: false,
    };
    board.set_switches(&off).await.unwrap();
    assert_eq!(board.switches().await.unwrap(), off);
    board.set_switches(&Switches::default()).await.unwrap();
    assert_eq!(board.switches().await.unwrap(), Switches::default());
}

fn scope(path: &str) -> IdempotencyScope {
    IdempotencyScope {
        caller: unique("key"),
        method: "POST".into(),
        path: path.into(),
        key: IdempotencyKey::parse("\"order-42\"").unwrap(),
    }
}

fn created(body: &str) -> StoredResponse {
    StoredResponse {
        status: 201,
        content_type: Some("application/json".into()),
        location: Some("/checkout/cs_x".into()),
        body: body.as_bytes().to_vec(),
    }
}

/// The claim of a begin that must have started.
fn started(begin: Begin) -> Claim {
    match begin {
        Begin::Started(claim) => claim,
        other => panic!("expected a started claim, got {other:?}"),
    }
}

/// A claim of a new scope on `path` that a retry took over once its lease ran out: a
/// write answering it must store nothing.
async fn taken_over(store: &dyn IdempotencyStore, path: &str, now: DateTime<Utc>) -> Claim {
    let contested = scope(path);
    let lost = started(store.begin(&contested, "fp", now).await.unwrap());
    started(
        store
            .begin(&contested, "fp", now + Duration::seconds(61))
            .await
            .unwrap(),
    );
    lost
}

/// Asserts that `scope` is still claimed without an answer: `why` says which write must
/// not have stored one.
async fn assert_unanswered(
    store: &dyn IdempotencyStore,
    scope: &IdempotencyScope,
    now: DateTime<Utc>,
    why: &str,
) {
    assert!(
        matches!(
            store.begin(scope, "fp", now).await.unwrap(),
            Begin::InFlight { .. }
        ),
        "{why}"
    );
}

/// Runs every [`IdempotencyStore`] rule.
pub async fn idempotency_store_contract(store: Arc<dyn IdempotencyStore>) {
    let first = scope("/checkout");
    // Sub-microsecond digits: a claim must survive storage that keeps microseconds.
    let now = t(0) + Duration::nanoseconds(123_456_789);
    let claim = started(store.begin(&first, "fp-a", now).await.unwrap());
    assert_eq!(claim.scope, first);
    assert_eq!(
        store
            .begin(&first, "fp-a", now + Duration::seconds(1))
            .await
            .unwrap(),
        Begin::InFlight {
            retry_after_secs: 59
        }
    );
    assert_eq!(
        store.begin(&first, "fp-b", now).await.unwrap(),
        Begin::Mismatch,
        "another body with the same key"
    );
    let answer = created("{\"id\":\"cs_x\"}");
    store.finish(&claim, &answer, now).await.unwrap();
    assert_eq!(
        store
            .begin(&first, "fp-a", now + Duration::hours(23))
            .await
            .unwrap(),
        Begin::Replay(answer.clone())
    );
    assert_eq!(
        store
            .begin(&first, "fp-b", now + Duration::hours(23))
            .await
            .unwrap(),
        Begin::Mismatch
    );
    assert_eq!(
        store.finish(&claim, &answer, now).await,
        Err(RepositoryError::NotFound),
        "a finished claim cannot be finished again"
    );
    started(
        store
            .begin(&first, "fp-b", now + Duration::hours(25))
            .await
            .unwrap(),
    );

    // Scopes differ by caller, method and path.
    let mut other = first.clone();
    other.path = "/checkout/cs_y/cancel".into();
    started(store.begin(&other, "fp-a", now).await.unwrap());

    // Abandoned (5xx) claims may start again.
    let failing = scope("/checkout");
    let abandoned = started(store.begin(&failing, "fp", now).await.unwrap());
    store.abandon(&abandoned).await.unwrap();
    let stale = started(store.begin(&failing, "fp", now).await.unwrap());

    // A claim whose lease ran out is taken over; the old holder can neither finish nor
    // abandon it any more, the new one can.
    let later = now + Duration::seconds(60);
    let successor = started(store.begin(&failing, "fp", later).await.unwrap());
    assert_eq!(
        store.finish(&stale, &answer, later).await,
        Err(RepositoryError::NotFound),
        "a taken-over claim cannot finish"
    );
    store.abandon(&stale).await.unwrap();
    assert!(
        matches!(
            store.begin(&failing, "fp", later).await.unwrap(),
            Begin::InFlight { .. }
        ),
        "abandoning a taken-over claim leaves the successor's"
    );
    store.finish(&successor, &answer, later).await.unwrap();
    assert_eq!(
        store.begin(&failing, "fp", later).await.unwrap(),
        Begin::Replay(answer.clone())
    );
    let never = Claim::new(scope("/never"), now);
    assert_eq!(
        store.finish(&never, &answer, now).await,
        Err(RepositoryError::NotFound),
        "finishing needs a claim"
    );

    // Of concurrent claims exactly one starts.
    let contested = scope("/checkout");
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let store = store.clone();
        let contested = contested.clone();
        tasks.push(tokio::spawn(async move {
            store.begin(&contested, "fp", now).await.unwrap()
        }));
    }
    let mut started_count = 0;
    for task in tasks {
        match task.await.unwrap() {
            Begin::Started(_) => started_count += 1,
            Begin::InFlight { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(started_count, 1);

    assert!(store.purge(now + Duration::days(30)).await.unwrap() >= 1);
}

/// Runs the rule of [`CheckoutRepository::insert_answering`] over a checkout repository and
/// the idempotency store it shares a transaction with.
pub async fn insert_answering_contract(
    checkouts: Arc<dyn CheckoutRepository>,
    store: Arc<dyn IdempotencyStore>,
) {
    let random = CountingRandom::default();
    let now = t(0) + Duration::nanoseconds(987_654_321);
    let claimed = scope("/checkout");
    let claim = started(store.begin(&claimed, "fp", now).await.unwrap());
    let mut checkout = sample_checkout(&random);
    let answer = Answer {
        claim,
        response: created("{\"id\":\"cs_1\"}"),
        at: now,
    };
    checkouts
        .insert_answering(&mut checkout, &answer)
        .await
        .unwrap();
    assert_eq!(checkout.version(), 1);
    assert_eq!(checkouts.get(checkout.id()).await.unwrap(), checkout);
    assert_eq!(
        store.begin(&claimed, "fp", now).await.unwrap(),
        Begin::Replay(answer.response.clone()),
        "the answer is stored with the checkout"
    );

    // With a claim no longer held (taken over by a retry), neither is stored.
    let unheld = Answer {
        claim: taken_over(store.as_ref(), "/checkout", now).await,
        ..answer
    };
    let mut lost = sample_checkout(&random);
    assert_eq!(
        checkouts.insert_answering(&mut lost, &unheld).await,
        Err(RepositoryError::NotFound)
    );
    assert_eq!(lost.version(), 0);
    assert_eq!(
        checkouts.get(lost.id()).await,
        Err(RepositoryError::NotFound),
        "the checkout was rolled back with the answer"
    );

    // An update with its answer ([`CheckoutRepository::update_answering`]): both or neither.
    let edited = scope("/checkout/cs_1");
    let edit_claim = started(store.begin(&edited, "fp", now).await.unwrap());
    let edit_answer = Answer {
        claim: edit_claim,
        response: created("{\"id\":\"cs_1\",\"edited\":true}"),
        at: now,
    };
    let stale = checkout.clone();
    let mut updated = checkout.clone();
    checkouts
        .update_answering(&mut updated, &edit_answer)
        .await
        .unwrap();
    assert_eq!(updated.version(), 2);
    assert_eq!(checkouts.get(checkout.id()).await.unwrap(), updated);
    assert_eq!(
        store.begin(&edited, "fp", now).await.unwrap(),
        Begin::Replay(edit_answer.response.clone()),
        "the answer is stored with the change"
    );
    // A stale copy is refused, and its answer not stored.
    let raced = scope("/checkout/cs_1");
    let raced_claim = started(store.begin(&raced, "fp", now).await.unwrap());
    let mut stale = stale;
    assert_eq!(
        checkouts
            .update_answering(
                &mut stale,
                &Answer {
                    claim: raced_claim,
                    ..edit_answer.clone()
                }
            )
            .await,
        Err(RepositoryError::Conflict)
    );
    assert_eq!(stale.version(), 1);
    assert_unanswered(
        store.as_ref(),
        &raced,
        now,
        "a refused change stores no answer",
    )
    .await;
    // A lost claim: the change is rolled back.
    let lost_edit = taken_over(store.as_ref(), "/checkout/cs_1", now).await;
    let mut unanswered = updated.clone();
    assert_eq!(
        checkouts
            .update_answering(
                &mut unanswered,
                &Answer {
                    claim: lost_edit,
                    ..edit_answer
                }
            )
            .await,
        Err(RepositoryError::NotFound)
    );
    assert_eq!(unanswered.version(), 2);
    assert_eq!(
        checkouts.get(checkout.id()).await.unwrap().version(),
        2,
        "the change was rolled back with the answer"
    );
}

/// Runs the rule of [`AuthorizationRepository::insert_holding`] over the repositories and the
/// idempotency store it writes together: all of it or nothing live.
pub async fn insert_holding_contract(
    checkouts: Arc<dyn CheckoutRepository>,
    authorizations: Arc<dyn AuthorizationRepository>,
    store: Arc<dyn IdempotencyStore>,
) {
    let random = CountingRandom::default();
    let now = t(0);
    let mut checkout = sample_checkout(&random);
    checkouts.insert(&mut checkout).await.unwrap();
    let paying = scope("/checkout/cs_1/complete");
    let claim = started(store.begin(&paying, "fp", now).await.unwrap());
    let answer = Answer {
        claim,
        response: created("{\"status\":\"authorization_required\"}"),
        at: now,
    };
    let holding = |checkout: &sacp_domain::Checkout, at: DateTime<Utc>| {
        let mut authorization = sample_authorization(&random, checkout.id(), at);
        let mut held = checkout.clone();
        let hold = sacp_domain::PaymentHold::Device {
            authorization_id: authorization.id().clone(),
            amount: held.cart().total(),
        };
        held.begin_authorization(hold, at).unwrap();
        authorization.set_version(0);
        (authorization, held)
    };

    // A stale checkout: nothing is left live, the claim stays in flight.
    let mut moved = checkout.clone();
    moved.begin_edit(t(1)).unwrap();
    moved.abandon_edit(t(1));
    checkouts.update(&mut moved).await.unwrap();
    let (mut refused, mut stale) = holding(&checkout, t(1));
    assert_eq!(
        authorizations
            .insert_holding(&mut refused, &mut stale, Some(&answer), checkouts.as_ref())
            .await,
        Err(RepositoryError::Conflict)
    );
    assert_eq!(checkouts.get(checkout.id()).await.unwrap(), moved);
    assert_eq!(
        authorizations.active_for_checkout(checkout.id()).await,
        Ok(None),
        "a refused checkout leaves no live authorization"
    );
    assert_unanswered(
        store.as_ref(),
        &paying,
        now,
        "a refused write stores no answer",
    )
    .await;

    // With a claim no longer held, nothing is stored either.
    let unheld = Answer {
        claim: taken_over(store.as_ref(), "/checkout/cs_1/complete", now).await,
        ..answer.clone()
    };
    let (mut unanswered, mut held) = holding(&moved, t(2));
    assert_eq!(
        authorizations
            .insert_holding(
                &mut unanswered,
                &mut held,
                Some(&unheld),
                checkouts.as_ref()
            )
            .await,
        Err(RepositoryError::NotFound)
    );
    assert_eq!(checkouts.get(checkout.id()).await.unwrap(), moved);
    assert_eq!(
        authorizations.active_for_checkout(checkout.id()).await,
        Ok(None)
    );

    // Written: the authorization, the checkout holding it and the answer.
    let (mut authorization, mut held) = holding(&moved, t(3));
    authorizations
        .insert_holding(
            &mut authorization,
            &mut held,
            Some(&answer),
            checkouts.as_ref(),
        )
        .await
        .unwrap();
    assert_eq!(authorization.version(), 1);
    assert_eq!(held.version(), moved.version() + 1);
    assert_eq!(checkouts.get(checkout.id()).await.unwrap(), held);
    assert_eq!(
        authorizations.active_for_checkout(checkout.id()).await,
        Ok(Some(authorization.clone()))
    );
    assert_eq!(
        store.begin(&paying, "fp", now).await.unwrap(),
        Begin::Replay(answer.response.clone()),
        "the answer is stored with the payment"
    );

    // A second live authorization for the checkout is refused, and the checkout kept.
    let mut released = held.clone();
    let hold = held.hold().cloned().unwrap();
    released.release_authorization(&hold, t(4)).unwrap();
    checkouts.update(&mut released).await.unwrap();
    let (mut second, mut again) = holding(&released, t(5));
    assert!(matches!(
        authorizations
            .insert_holding(&mut second, &mut again, None, checkouts.as_ref())
            .await,
        Err(RepositoryError::Constraint(_))
    ));
    assert_eq!(checkouts.get(checkout.id()).await.unwrap(), released);
    assert_eq!(
        authorizations.active_for_checkout(checkout.id()).await,
        Ok(Some(authorization)),
        "the live one is untouched"
    );
}

/// Runs every [`TrafficLog`] rule.
pub async fn traffic_log_contract(log: Arc<dyn TrafficLog>) {
    let random = CountingRandom::default();
    let key = ApiKeyId::generate(&random);
    let other = ApiKeyId::generate(&random);
    let count =
        |minute: i64, key: Option<&ApiKeyId>, route: &str, status: u16, n: u64| TrafficCount {
            minute: t(minute * 60),
            key_id: key.cloned(),
            route: route.into(),
            status,
            count: n,
        };
    log.add(&[
        count(0, Some(&key), "GET /products", 200, 3),
        count(0, Some(&key), "GET /products", 429, 1),
        count(1, Some(&key), "GET /products/{id}", 200, 2),
        count(1, Some(&other), "GET /products", 200, 7),
        count(1, None, "GET /products", 401, 1),
    ])
    .await
    .unwrap();
    log.add(&[count(0, Some(&key), "GET /products", 200, 2)])
        .await
        .unwrap();
    let mine = log.traffic(Some(&key), 10).await.unwrap();
    assert_eq!(
        mine,
        vec![
            count(1, Some(&key), "GET /products/{id}", 200, 2),
            count(0, Some(&key), "GET /products", 200, 5),
            count(0, Some(&key), "GET /products", 429, 1),
        ],
        "one key's rows, newest minute first, counts added up"
    );
    assert_eq!(log.traffic(Some(&key), 1).await.unwrap().len(), 1);
    let all = log.traffic(None, 1000).await.unwrap();
    assert!(all.contains(&count(1, None, "GET /products", 401, 1)));
    assert!(all.contains(&count(1, Some(&other), "GET /products", 200, 7)));

    // Retirement: whole minutes before the cutoff.
    assert_eq!(log.retire(t(60), 100).await.unwrap(), 2);
    let left = log.traffic(None, 1000).await.unwrap();
    assert_eq!(left.len(), 3);
    assert!(left.iter().all(|c| c.minute == t(60)), "{left:?}");
    assert_eq!(log.retire(t(3600), 1).await.unwrap(), 1, "the limit");
    assert_eq!(log.retire(t(3600), 100).await.unwrap(), 2);
}
