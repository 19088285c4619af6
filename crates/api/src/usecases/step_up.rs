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
//! To watch a step-up the gateway needs the person's token: it is kept in the memory of the
//! replica that started the step-up, for the step-up's lifetime only, and never stored. If
//! that replica stops, the agent's own poll (with the token) still completes the order.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use sacp_domain::checkout::{EndedStepUp, StepUpEnd};
use sacp_domain::{
    Checkout, CheckoutId, CheckoutStatus, PaymentHold, PaymentStatus, TransitionError,
};
use sacp_ports::wallet::{StepUp, StepUpStatus};
use sacp_ports::{BearerToken, UpstreamError};

use super::charge::{Setback, setback_of};
use super::{AppError, Gateway};

/// How often the gateway asks the wallet about a step-up it watches.
const WATCH_INTERVAL_SECS: i64 = 5;
/// How long a step-up is watched when the wallet gave no expiry (its own lifetime).
const DEFAULT_STEP_UP_SECS: i64 = 900;

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

/// A step-up this replica watches, with the person's token for it.
#[derive(Clone)]
struct Watched {
    step_up_id: String,
    token: BearerToken,
    until: DateTime<Utc>,
    next_at: DateTime<Utc>,
}

/// The step-ups this replica watches, by checkout (memory only).
#[derive(Clone, Default)]
pub(crate) struct WatchedStepUps(Arc<Mutex<HashMap<CheckoutId, Watched>>>);

impl std::fmt::Debug for WatchedStepUps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WatchedStepUps(***)")
    }
}

impl WatchedStepUps {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<CheckoutId, Watched>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
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
    /// Starts watching a step-up this replica just started, with the person's token, for the
    /// step-up's lifetime.
    pub(super) fn watch_step_up(
        &self,
        checkout: &CheckoutId,
        step_up: &StepUp,
        token: &BearerToken,
    ) {
        let now = self.clock.now();
        let until = step_up
            .expires_at
            .unwrap_or(now + Duration::seconds(DEFAULT_STEP_UP_SECS));
        let mut map = self.step_ups.map();
        map.retain(|_, watched| watched.until > now);
        map.insert(
            checkout.clone(),
            Watched {
                step_up_id: step_up.step_up_id.clone(),
                token: token.clone(),
                until,
                next_at: now + Duration::seconds(WATCH_INTERVAL_SECS),
            },
        );
    }

    /// Asks the wallet about every watched step-up whose time has come, placing the orders
    /// of approved ones (the background driver calls this every second).
    pub async fn advance_step_ups(&self) {
        let now = self.clock.now();
        let due: Vec<(CheckoutId, Watched)> = {
            let mut map = self.step_ups.map();
            map.retain(|_, watched| watched.until > now);
            map.iter_mut()
                .filter(|(_, watched)| watched.next_at <= now)
                .map(|(id, watched)| {
                    watched.next_at = now + Duration::seconds(WATCH_INTERVAL_SECS);
                    (id.clone(), watched.clone())
                })
                .collect()
        };
        for (checkout_id, watched) in due {
            let settled = match self.load_checkout(&checkout_id).await {
                Ok(checkout) => {
                    self.settle_step_up(checkout, &watched.step_up_id, &watched.token)
                        .await
                }
                Err(error) => Err(error),
            };
            let done = match &settled {
                Ok(view) => !matches!(
                    view.status,
                    PaymentStatus::Pending | PaymentStatus::Approved
                ),
                Err(AppError::NotFound(_)) => true,
                Err(error) => {
                    tracing::warn!(checkout = %checkout_id, %error, "watching a step-up failed; retrying");
                    false
                }
            };
            if done {
                self.step_ups.map().remove(&checkout_id);
            }
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
        self.settle_step_up(checkout, step_up_id, token).await
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
        Ok(StepUpView::of(PaymentStatus::Completed, completed))
    }
}
