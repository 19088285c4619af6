//! The user-token path's step-up: the wallet wants the person to approve a payment above the
//! token's limits. The order is placed once the person approves — exactly once, whoever
//! notices first: the agent polling `/step-up/{id}` with the token, or the gateway itself,
//! which watches every step-up it started.
//!
//! Exactly-once: placing the order of an approved step-up is claimed on the checkout with
//! compare-and-swap ([`sacp_domain::Checkout::claim_step_up_order`]); of concurrent pollers,
//! on any replica, one places it and the others answer "approved, being placed". Before
//! placing it, the claimer asks the store whether the session already has an order.
//!
//! To watch a step-up the gateway needs the person's token until the step-up ends. It is
//! stored only sealed ([`sacp_ports::TokenSealer`], bound to its checkout and step-up) in the
//! shared [`sacp_ports::StepUpWatches`], and deleted once the step-up ends or its lifetime
//! passes: any replica holding the same sealing key finishes it, so a replica stopping loses
//! nothing. A token is never written anywhere in the clear.

use chrono::Duration;
use sacp_domain::checkout::{EndedStepUp, StepUpEnd};
use sacp_domain::{
    Checkout, CheckoutId, CheckoutStatus, PaymentHold, PaymentStatus, TransitionError,
};
use sacp_ports::wallet::{StepUp, StepUpStatus};
use sacp_ports::{BearerToken, StepUpWatch, UpstreamError};

use super::charge::{Setback, setback_of};
use super::{AppError, Gateway, telemetry};

/// How often the gateway asks the wallet about a step-up it watches.
const WATCH_INTERVAL_SECS: i64 = 5;
/// How long a step-up is watched at most (the wallet's own lifetime for it): the person's
/// token is kept no longer, whatever expiry the wallet announces.
const MAX_WATCH_SECS: i64 = 900;

/// What a step-up poll reports.
#[derive(Debug, Clone)]
pub struct StepUpView {
    /// `pending`, `approved` (being placed), `completed`, `rejected`, `expired` or `failed`.
    pub status: PaymentStatus,
    /// Why it failed, once `failed`.
    pub reason: Option<String>,
    /// The checkout.
    pub checkout: Checkout,
}

impl StepUpView {
    fn of(status: PaymentStatus, checkout: Checkout) -> StepUpView {
        StepUpView {
            status,
            reason: None,
            checkout,
        }
    }
}

/// How many watched step-ups one round of the driver takes on.
const WATCH_BATCH: usize = 64;

/// What a sealed token is bound to: its checkout, step-up and wallet user, each part
/// length-prefixed so that no two different triples read alike.
fn seal_context(checkout: &CheckoutId, step_up_id: &str, subject: Option<&str>) -> Vec<u8> {
    let mut context = b"sacp step-up token v1".to_vec();
    for part in [checkout.as_str(), step_up_id, subject.unwrap_or("")] {
        context.extend_from_slice(&u64::try_from(part.len()).unwrap_or(u64::MAX).to_be_bytes());
        context.extend_from_slice(part.as_bytes());
    }
    context
}

impl StepUpView {
    /// Whether the step-up has ended (no more wallet calls can change it).
    fn is_final(&self) -> bool {
        !matches!(
            self.status,
            PaymentStatus::Pending | PaymentStatus::Approved
        )
    }
}

/// The view of a step-up that ended without an order.
fn ended_view(ended: &EndedStepUp, checkout: Checkout) -> StepUpView {
    let status = match ended.outcome {
        StepUpEnd::Rejected => PaymentStatus::Rejected,
        StepUpEnd::Expired => PaymentStatus::Expired,
        StepUpEnd::Failed => PaymentStatus::Failed,
    };
    StepUpView {
        status,
        reason: ended.reason.clone(),
        checkout,
    }
}

impl Gateway {
    /// Starts watching a step-up just started, with the person's token sealed, for the
    /// step-up's lifetime. Watching is a convenience on top of the agent's own polls: if the
    /// token cannot be sealed or stored, the step-up still completes when the agent polls.
    pub(super) async fn watch_step_up(
        &self,
        checkout: &CheckoutId,
        step_up: &StepUp,
        token: &BearerToken,
    ) {
        let now = self.clock.now();
        let longest = now + Duration::seconds(MAX_WATCH_SECS);
        let until = step_up.expires_at.map_or(longest, |at| at.min(longest));
        let sealer = &self.step_ups.sealer;
        let subject = token.subject();
        let context = seal_context(checkout, &step_up.step_up_id, subject);
        let watch = match sealer.seal(token, &context) {
            Ok(sealed_token) => StepUpWatch {
                checkout_id: checkout.clone(),
                step_up_id: step_up.step_up_id.clone(),
                sealed_token,
                key_id: sealer.key_id().to_owned(),
                subject: subject.map(str::to_owned),
                until,
                next_at: now + Duration::seconds(WATCH_INTERVAL_SECS),
            },
            Err(error) => {
                tracing::warn!(checkout = %checkout, %error, "cannot seal the person's token; the step-up completes when the agent polls");
                return;
            }
        };
        match self.step_ups.watches.put(&watch).await {
            Ok(()) => self.alarms.step_ups.due_at(watch.next_at),
            Err(error) => {
                tracing::warn!(checkout = %checkout, %error, "cannot store the step-up watch; the step-up completes when the agent polls");
            }
        }
    }

    /// Forgets a watched step-up (its token with it) once it has ended.
    pub(super) async fn forget_step_up(&self, checkout: &CheckoutId, step_up_id: &str) {
        if let Err(error) = self.step_ups.watches.remove(checkout, step_up_id).await {
            // The watch ends with its lifetime anyway.
            tracing::warn!(checkout = %checkout, %error, "cannot drop an ended step-up watch now");
        }
    }

    /// Asks the wallet about every watched step-up whose time has come, placing the orders
    /// of approved ones. Each due watch is claimed for one interval, so that replicas
    /// sharing the storage never ask twice. Returns when to look again as far as this call
    /// knows (the claimed watches' next turn, a retry after a storage failure, or at once
    /// after a full batch); `None` when it found nothing to watch.
    pub async fn advance_step_ups(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        let now = self.clock.now();
        let sealer = &self.step_ups.sealer;
        let claimed_until = now + Duration::seconds(WATCH_INTERVAL_SECS);
        let due = match self
            .step_ups
            .watches
            .claim_due(sealer.key_id(), now, claimed_until, WATCH_BATCH)
            .await
        {
            Ok(due) => due,
            Err(error) => {
                tracing::warn!(%error, "cannot read the watched step-ups now; retrying");
                return Some(now + Duration::seconds(1));
            }
        };
        let next = match due.len() {
            0 => None,
            n if n >= WATCH_BATCH => Some(now),
            _ => Some(claimed_until),
        };
        // Each watch may take a few upstream calls: all are advanced at once, so none waits
        // past its claim behind the others.
        let mut advancing = tokio::task::JoinSet::new();
        for watch in due {
            let gateway = self.clone();
            advancing.spawn(async move { gateway.advance_watch(watch).await });
        }
        while advancing.join_next().await.is_some() {}
        next
    }

    /// Asks the wallet about one claimed step-up with the person's token, opened from its
    /// seal; forgets the watch once the step-up has ended or can no longer be advanced.
    async fn advance_watch(&self, watch: StepUpWatch) {
        let context = seal_context(
            &watch.checkout_id,
            &watch.step_up_id,
            watch.subject.as_deref(),
        );
        let token = match self.step_ups.sealer.open(&watch.sealed_token, &context) {
            Ok(token) => token,
            Err(error) => {
                tracing::warn!(checkout = %watch.checkout_id, %error, "a watched step-up's token does not open; the agent's poll completes it");
                self.forget_step_up(&watch.checkout_id, &watch.step_up_id)
                    .await;
                return;
            }
        };
        if let Some(subject) = &watch.subject {
            token.note_subject(subject);
        }
        let settled = match self.load_checkout(&watch.checkout_id).await {
            Ok(checkout) => {
                self.settle_step_up(checkout, &watch.step_up_id, &token)
                    .await
            }
            Err(error) => Err(error),
        };
        let done = match &settled {
            Ok(view) => view.is_final(),
            // Gone, or the token no longer works: nothing this watch can do any more (the
            // agent's poll with a valid token still can).
            Err(
                AppError::NotFound(_)
                | AppError::UserTokenInvalid
                | AppError::UserTokenScope(_)
                | AppError::Transition(_),
            ) => true,
            Err(error) => {
                tracing::warn!(checkout = %watch.checkout_id, %error, "watching a step-up failed; retrying");
                false
            }
        };
        if done {
            self.forget_step_up(&watch.checkout_id, &watch.step_up_id)
                .await;
        }
    }

    /// Polls a step-up on the user-token path with the person's token; once approved, places
    /// the order (exactly once, see the module).
    pub async fn step_up_status(
        &self,
        owner: &str,
        checkout_id: &str,
        step_up_id: &str,
        user_token: Option<&BearerToken>,
    ) -> Result<StepUpView, AppError> {
        let checkout = self.get_checkout(owner, checkout_id).await?;
        let token = user_token.ok_or(AppError::UserTokenRequired)?;
        let id = checkout.id().clone();
        let view = self.settle_step_up(checkout, step_up_id, token).await?;
        if view.is_final() {
            self.forget_step_up(&id, step_up_id).await;
        }
        Ok(view)
    }

    async fn settle_step_up(
        &self,
        checkout: Checkout,
        step_up_id: &str,
        token: &BearerToken,
    ) -> Result<StepUpView, AppError> {
        let hold = match checkout.hold() {
            Some(
                hold @ PaymentHold::StepUp {
                    step_up_id: pending,
                    ..
                },
            ) if pending == step_up_id => hold.clone(),
            _ if checkout.status() == CheckoutStatus::Completed => {
                return Ok(StepUpView::of(PaymentStatus::Completed, checkout));
            }
            _ => match checkout.ended_step_up() {
                Some(ended) if ended.step_up_id == step_up_id => {
                    let ended = ended.clone();
                    return Ok(ended_view(&ended, checkout));
                }
                _ => return Err(AppError::NotFound("step-up")),
            },
        };
        let status = self
            .wallet
            .step_up_status(token, step_up_id)
            .await
            .map_err(|e| match e {
                UpstreamError::NotFound => AppError::NotFound("step-up"),
                other => super::payment::payment_error(other),
            })?;
        let now = self.clock.now();
        match status {
            StepUpStatus::Pending => Ok(StepUpView::of(PaymentStatus::Pending, checkout)),
            // Approved, but the card issuer fails: no token yet; a later poll asks again.
            StepUpStatus::ApprovedWithoutToken => {
                Ok(StepUpView::of(PaymentStatus::Approved, checkout))
            }
            StepUpStatus::Rejected | StepUpStatus::Expired => {
                let outcome = if matches!(status, StepUpStatus::Rejected) {
                    StepUpEnd::Rejected
                } else {
                    StepUpEnd::Expired
                };
                let (released, ()) = self
                    .update_loaded_checkout(checkout, |c| {
                        if c.hold() == Some(&hold) {
                            c.end_step_up(&hold, outcome, None, now)?;
                        }
                        Ok(())
                    })
                    .await?;
                telemetry::payment_ended(if matches!(outcome, StepUpEnd::Rejected) {
                    "rejected"
                } else {
                    "expired"
                });
                Ok(match released.ended_step_up() {
                    Some(ended) if ended.step_up_id == step_up_id => {
                        let ended = ended.clone();
                        ended_view(&ended, released)
                    }
                    _ => StepUpView::of(PaymentStatus::Expired, released),
                })
            }
            StepUpStatus::Approved(payment) => {
                let id = checkout.id().clone();
                let claimed = self
                    .update_loaded_checkout(checkout, |c| {
                        Ok(c.claim_step_up_order(step_up_id, now)?)
                    })
                    .await;
                match claimed {
                    Ok((checkout, ())) => {
                        self.place_step_up_order(checkout, hold, &payment.token, token)
                            .await
                    }
                    // Another poller holds the claim, or has just finished: say where it is.
                    Err(AppError::Transition(error)) => {
                        let current = self.load_checkout(&id).await?;
                        match (error, current.status(), current.ended_step_up()) {
                            (_, CheckoutStatus::Completed, _) => {
                                Ok(StepUpView::of(PaymentStatus::Completed, current))
                            }
                            (_, _, Some(ended)) if ended.step_up_id == step_up_id => {
                                let ended = ended.clone();
                                Ok(ended_view(&ended, current))
                            }
                            (TransitionError::OrderBeingPlaced, _, _) => {
                                Ok(StepUpView::of(PaymentStatus::Approved, current))
                            }
                            (other, _, _) => Err(AppError::Transition(other)),
                        }
                    }
                    Err(other) => Err(other),
                }
            }
        }
    }

    /// Places the order of an approved step-up whose claim this request holds: the store's
    /// session is read first (an earlier attempt may have placed it); a failure that may
    /// pass gives the claim up for a later poll, one that will not ends the step-up.
    async fn place_step_up_order(
        &self,
        checkout: Checkout,
        hold: PaymentHold,
        payment_token: &BearerToken,
        user_token: &BearerToken,
    ) -> Result<StepUpView, AppError> {
        let now = self.clock.now();
        let placed = match self.store.session(checkout.store_session_id()).await {
            Ok(session) => match session.order {
                Some(order) => Ok(order),
                None => self
                    .place_order(&checkout, payment_token, user_token)
                    .await
                    .map_err(setback_of),
            },
            Err(error) => Err(Setback::Transient(error.to_string())),
        };
        let order = match placed {
            Ok(order) => order,
            Err(Setback::Transient(why)) => {
                tracing::warn!(checkout = %checkout.id(), why, "placing a step-up's order failed for now; a later poll retries");
                let (released, ()) = self
                    .update_loaded_checkout(checkout, |c| {
                        c.release_step_up_claim(now);
                        Ok(())
                    })
                    .await?;
                return Ok(StepUpView::of(PaymentStatus::Approved, released));
            }
            Err(Setback::Permanent(reason)) => {
                let (ended, ()) = self
                    .update_loaded_checkout(checkout, |c| {
                        if c.hold() == Some(&hold) {
                            c.end_step_up(&hold, StepUpEnd::Failed, Some(reason), now)?;
                        }
                        Ok(())
                    })
                    .await?;
                telemetry::payment_ended("failed");
                return Ok(StepUpView {
                    status: PaymentStatus::Failed,
                    reason: Some(reason.to_owned()),
                    checkout: ended,
                });
            }
        };
        let payer = self.payer_of(user_token).await;
        let (completed, ()) = self
            .update_loaded_checkout(checkout, |c| {
                if c.order() == Some(&order) {
                    return Ok(());
                }
                c.complete_authorized(&hold, order.clone(), now)?;
                if let Some(payer) = &payer {
                    c.note_payer(payer);
                }
                Ok(())
            })
            .await?;
        telemetry::payment_ended("completed");
        Ok(StepUpView::of(PaymentStatus::Completed, completed))
    }
}
