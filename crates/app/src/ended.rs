//! Payments this replica just completed, kept a few seconds for the agent's next poll.
//!
//! An agent polls the payment status every interval until it reads `completed`; the poll
//! that reads it usually comes after the driver here placed the order. A completed
//! checkout and its consumed authorization never change again, so that poll can be
//! answered from what the driver wrote instead of reading it back: one read less per
//! checkout. Another replica's poll (or one after the entry went) reads storage as before.
//! The entries are few and short-lived: at most [`CAPACITY`], none older than [`KEPT`] (nor
//! than the retention, should an operator set it shorter).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sacp_domain::{Checkout, PaymentAuthorization, PaymentAuthorizationId};

/// How long a completed payment is kept for polls.
const KEPT: Duration = Duration::from_secs(10);

/// Most payments kept; past it the oldest go first.
const CAPACITY: usize = 4096;

/// A completed payment: the checkout and its authorization, as written.
#[derive(Clone)]
pub(crate) struct Ended {
    pub(crate) checkout: Checkout,
    pub(crate) authorization: PaymentAuthorization,
}

/// The completed payments, by authorization id, oldest first in `order`.
#[derive(Default)]
struct Kept {
    by_id: HashMap<PaymentAuthorizationId, Ended>,
    order: VecDeque<(Instant, PaymentAuthorizationId)>,
}

/// See the module documentation.
pub(crate) struct EndedPayments {
    kept: Mutex<Kept>,
    lifetime: Duration,
}

impl EndedPayments {
    /// Keeps payments for [`KEPT`], or `retention` if that is shorter.
    pub(crate) fn new(retention: Duration) -> EndedPayments {
        EndedPayments {
            kept: Mutex::default(),
            lifetime: KEPT.min(retention),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.kept
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Keeps a payment that just completed (checkout completed, authorization consumed).
    pub(crate) fn keep(&self, checkout: Checkout, authorization: PaymentAuthorization) {
        let now = Instant::now();
        let mut kept = self.lock();
        kept.forget_old(now, self.lifetime);
        while kept.by_id.len() >= CAPACITY {
            if !kept.forget_oldest() {
                break;
            }
        }
        let id = authorization.id().clone();
        kept.order.push_back((now, id.clone()));
        kept.by_id.insert(
            id,
            Ended {
                checkout,
                authorization,
            },
        );
    }

    /// The completed payment `id`, if it is still kept.
    pub(crate) fn get(&self, id: &PaymentAuthorizationId) -> Option<Ended> {
        let mut kept = self.lock();
        kept.forget_old(Instant::now(), self.lifetime);
        kept.by_id.get(id).cloned()
    }
}

impl Kept {
    fn forget_old(&mut self, now: Instant, lifetime: Duration) {
        while self
            .order
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) >= lifetime)
        {
            self.forget_oldest();
        }
    }

    fn forget_oldest(&mut self) -> bool {
        match self.order.pop_front() {
            Some((_, id)) => {
                self.by_id.remove(&id);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use sacp_ports::contract::CountingRandom;
    use sacp_ports::contract::repository::{sample_authorization, sample_checkout};

    fn payment(random: &CountingRandom) -> (Checkout, PaymentAuthorization) {
        let checkout = sample_checkout(random);
        let start = Utc.timestamp_opt(1_900_000_000, 0).unwrap();
        let authorization = sample_authorization(random, checkout.id(), start);
        (checkout, authorization)
    }

    #[test]
    fn the_oldest_go_first_past_the_capacity() {
        let random = CountingRandom::default();
        let ended = EndedPayments::new(Duration::from_secs(60));
        let (checkout, first) = payment(&random);
        ended.keep(checkout, first.clone());
        let mut last = first.clone();
        for _ in 0..CAPACITY {
            let (checkout, authorization) = payment(&random);
            last = authorization.clone();
            ended.keep(checkout, authorization);
        }
        assert!(ended.get(first.id()).is_none(), "the oldest made room");
        assert_eq!(
            ended.get(last.id()).map(|e| e.authorization),
            Some(last),
            "the newest is kept"
        );
        assert_eq!(ended.lock().by_id.len(), CAPACITY);
    }

    #[test]
    fn nothing_is_kept_longer_than_the_retention() {
        let random = CountingRandom::default();
        let ended = EndedPayments::new(Duration::ZERO);
        let (checkout, authorization) = payment(&random);
        ended.keep(checkout, authorization.clone());
        assert!(ended.get(authorization.id()).is_none());
    }
}
