//! Contract suites for the step-up ports: the watch store and the token sealer.

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use sacp_domain::CheckoutId;

use super::CountingRandom;
use crate::step_up::{SealError, StepUpWatch, StepUpWatches, TokenSealer};
use crate::token::BearerToken;

fn t(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_900_000_000 + seconds, 0).unwrap()
}

fn watch(random: &CountingRandom, key_id: &str, next_at: i64, until: i64) -> StepUpWatch {
    StepUpWatch {
        checkout_id: CheckoutId::generate(random),
        step_up_id: format!("su_{}", CheckoutId::generate(random)),
        sealed_token: vec![0, 1, 2, 255, 0],
        key_id: key_id.to_owned(),
        subject: Some("wallet-user-1".into()),
        until: t(until),
        next_at: t(next_at),
    }
}

/// The rules every [`StepUpWatches`] keeps. Each call uses key ids of its own, so that the
/// suite can run on a store other tests share.
pub async fn step_up_watches_contract(watches: Arc<dyn StepUpWatches>) {
    let random = CountingRandom::default();
    let key = format!("k{}", CheckoutId::generate(&random).as_str());
    let other_key = format!("o{}", CheckoutId::generate(&random).as_str());

    let due = watch(&random, &key, 0, 900);
    let later = watch(&random, &key, 50, 900);
    let foreign = watch(&random, &other_key, 0, 900);
    let ending = watch(&random, &key, 0, 5);
    for w in [&due, &later, &foreign, &ending] {
        watches.put(w).await.unwrap();
    }

    // Only what is due, sealed under the caller's key, still running; bytes kept exactly.
    let claimed = watches.claim_due(&key, t(10), t(15), 10).await.unwrap();
    assert_eq!(
        claimed.len(),
        1,
        "due and alive and this key's only: {claimed:?}"
    );
    assert_eq!(claimed[0].checkout_id, due.checkout_id);
    assert_eq!(claimed[0].step_up_id, due.step_up_id);
    assert_eq!(
        claimed[0].sealed_token, due.sealed_token,
        "bytes kept as given"
    );
    assert_eq!(claimed[0].until, due.until);
    assert_eq!(claimed[0].subject, due.subject);
    assert_eq!(claimed[0].next_at, t(15), "the claim moved next_at on");

    // A claim holds until claimed_until: a second caller gets nothing before then.
    assert!(
        watches
            .claim_due(&key, t(11), t(16), 10)
            .await
            .unwrap()
            .is_empty(),
        "claimed watches are not claimed twice"
    );
    let again = watches.claim_due(&key, t(15), t(20), 10).await.unwrap();
    assert_eq!(again.len(), 1, "claimable again once the claim ran out");

    // An ended watch was deleted, whatever its key: it never comes back.
    let mut late = watches.claim_due(&key, t(60), t(65), 10).await.unwrap();
    late.sort_by_key(|w| w.next_at);
    let ids: Vec<&CheckoutId> = late.iter().map(|w| &w.checkout_id).collect();
    assert!(ids.contains(&&later.checkout_id));
    assert!(ids.contains(&&due.checkout_id));
    assert!(
        !ids.contains(&&ending.checkout_id),
        "ended watches are gone"
    );

    // The limit, soonest first.
    let one = watches.claim_due(&key, t(100), t(105), 1).await.unwrap();
    assert_eq!(one.len(), 1);

    // A newer step-up of the same checkout replaces the watch; removing the older one then
    // leaves the newer in place.
    let replacement = StepUpWatch {
        step_up_id: format!("su_{}", CheckoutId::generate(&random)),
        next_at: t(200),
        ..due.clone()
    };
    watches.put(&replacement).await.unwrap();
    watches
        .remove(&due.checkout_id, &due.step_up_id)
        .await
        .unwrap();
    let current = watches.claim_due(&key, t(200), t(205), 10).await.unwrap();
    assert!(
        current
            .iter()
            .any(|w| w.checkout_id == due.checkout_id && w.step_up_id == replacement.step_up_id),
        "removing an older step-up never removes the newer one"
    );
    watches
        .remove(&due.checkout_id, &replacement.step_up_id)
        .await
        .unwrap();
    watches
        .remove(&due.checkout_id, &replacement.step_up_id)
        .await
        .expect("removing twice is no error");
    let after = watches.claim_due(&key, t(300), t(305), 10).await.unwrap();
    assert!(
        after.iter().all(|w| w.checkout_id != due.checkout_id),
        "removed"
    );

    // The other key's watch is there for its holder.
    let theirs = watches
        .claim_due(&other_key, t(10), t(15), 10)
        .await
        .unwrap();
    assert_eq!(theirs.len(), 1);
    assert_eq!(theirs[0].checkout_id, foreign.checkout_id);

    // Past their end, watches are dropped even if nobody claims with their key.
    watches.claim_due(&key, t(901), t(906), 10).await.unwrap();
    assert!(
        watches
            .claim_due(&other_key, t(901), t(906), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        watches
            .claim_due(&other_key, t(800), t(805), 10)
            .await
            .unwrap()
            .is_empty(),
        "an ended watch is deleted, not only skipped"
    );
}

/// The rules every [`TokenSealer`] keeps; `other` is a sealer with a different key.
pub fn token_sealer_contract(sealer: &dyn TokenSealer, other: &dyn TokenSealer) {
    let token = BearerToken::new("wsim_at_0123456789abcdefghijklmnopqrstuvwxyz");
    let context = b"cs_checkout/su_step_up";
    let sealed = sealer.seal(&token, context).unwrap();
    assert_eq!(sealer.open(&sealed, context).unwrap(), token, "round trip");
    assert!(
        !sealed
            .windows(token.expose().len())
            .any(|w| w == token.expose().as_bytes()),
        "the sealed bytes do not hold the token"
    );
    assert_ne!(
        sealer.seal(&token, context).unwrap(),
        sealed,
        "sealing twice gives different bytes"
    );
    assert_eq!(
        sealer.open(&sealed, b"cs_checkout/su_other"),
        Err(SealError::Unopenable),
        "bound to its context"
    );
    assert_eq!(
        other.open(&sealed, context),
        Err(SealError::Unopenable),
        "another key cannot open it"
    );
    assert_ne!(sealer.key_id(), other.key_id(), "keys are told apart");
    for i in 0..sealed.len() {
        let mut tampered = sealed.clone();
        tampered[i] ^= 0x01;
        assert_eq!(
            sealer.open(&tampered, context),
            Err(SealError::Unopenable),
            "a changed byte ({i}) is refused"
        );
    }
    assert_eq!(sealer.open(&[], context), Err(SealError::Unopenable));
    assert_eq!(
        sealer.open(&sealed[..sealed.len() - 1], context),
        Err(SealError::Unopenable)
    );
    assert!(!sealer.key_id().is_empty());
}
