//! The background driver's work on a guest payment authorization: poll the wallet until the
//! person decides, then turn the approval into an order — exactly once, within a deadline,
//! with a bounded number of wallet calls, and with a truthful status all along.
//!
//! Exactly-once rests on three things: every piece of work on an authorization is claimed
//! with compare-and-swap before it is done (one poll per interval, one charge attempt per
//! lease); the approval is recorded before the charge starts; and every attempt first asks
//! the store whether the session already has an order, so a retry after a crash or a lost
//! answer never charges twice.
//!
//! After approval, the access token the wallet gave is kept in this replica's memory (never
//! stored) until the order is placed or the attempt ends, then revoked at the wallet. An
//! attempt on another replica, or after a restart, collects the approval again from the
//! device code while the wallet still honours it; once it no longer does, the authorization
//! ends as failed with `approval_expired`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use sacp_domain::authorization::{Work, failure};
use sacp_domain::{
    AuthorizationStatus, Checkout, CheckoutStatus, OrderConfirmation, PaymentAuthorization,
    PaymentAuthorizationId,
};
use sacp_ports::wallet::{DevicePoll, Introspection, PaymentTokenOutcome};
use sacp_ports::{BearerToken, RepositoryError, UpstreamError};

use super::{AppError, Gateway};

/// Access tokens collected from approvals, kept in memory by authorization until the order
/// is placed or the authorization ends (never written anywhere).
#[derive(Clone, Default)]
pub(crate) struct CollectedTokens(Arc<Mutex<HashMap<PaymentAuthorizationId, Collected>>>);

#[derive(Clone)]
struct Collected {
    token: BearerToken,
    expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for CollectedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CollectedTokens(***)")
    }
}

impl CollectedTokens {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<PaymentAuthorizationId, Collected>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Keeps `token` for `id` until `expires_at`; forgets tokens past their time.
    fn keep(
        &self,
        id: &PaymentAuthorizationId,
        token: BearerToken,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) {
        let mut map = self.map();
        map.retain(|_, kept| kept.expires_at > now);
        map.insert(id.clone(), Collected { token, expires_at });
    }

    /// The token kept for `id`, if it is still good at `now`.
    fn get(&self, id: &PaymentAuthorizationId, now: DateTime<Utc>) -> Option<BearerToken> {
        self.map()
            .get(id)
            .filter(|kept| kept.expires_at > now)
            .map(|kept| kept.token.clone())
    }

    /// Forgets the token of `id`, returning it (to be revoked).
    pub(crate) fn take(&self, id: &PaymentAuthorizationId) -> Option<BearerToken> {
        self.map().remove(id).map(|kept| kept.token)
    }
}

/// How an attempt to place the order ended, when it did not place it.
pub(super) enum Setback {
    /// May pass: try again after the backoff.
    Transient(String),
    /// Will not pass: end the authorization with this reason.
    Permanent(&'static str),
}

/// What a refused payment means for the attempt.
pub(super) fn setback_of(error: AppError) -> Setback {
    match error {
        AppError::PaymentRefused(code) => match code.as_str() {
            "no_payment_method" => Setback::Permanent(failure::NO_PAYMENT_METHOD),
            "declined" => Setback::Permanent(failure::DECLINED),
            "step_up_required" => Setback::Permanent(failure::OVER_WALLET_LIMIT),
            // A payment token the store found used or expired: another attempt gets a new one.
            "invalid_payment_token" => Setback::Transient(code),
            _ => Setback::Permanent(failure::ORDER_NOT_PLACED),
        },
        AppError::UserTokenScope(_) => Setback::Permanent(failure::WALLET_TOKEN_REFUSED),
        AppError::StoreRefusedUserToken => Setback::Permanent(failure::STORE_REFUSED_TOKEN),
        other => Setback::Transient(other.to_string()),
    }
}

/// Work on one authorization that [`Gateway::claim_all`] won, for
/// [`Gateway::advance_claimed`].
#[derive(Debug)]
pub struct ClaimedWork {
    authorization: PaymentAuthorization,
    step: Step,
}

impl ClaimedWork {
    /// The authorization the work is on.
    pub fn id(&self) -> &PaymentAuthorizationId {
        self.authorization.id()
    }
}

#[derive(Debug)]
enum Step {
    /// A pending authorization past its expiry: end it.
    Expire,
    /// Claimed work.
    Work(Work),
}

/// What the driver's scan found ([`Gateway::due_authorizations`]).
#[derive(Debug, Clone, Default)]
pub struct DueWork {
    /// Due now, soonest first.
    pub due: Vec<PaymentAuthorization>,
    /// When the next live authorization falls due, as far as storage knows.
    pub next_at: Option<DateTime<Utc>>,
}

/// Seconds `now` is past `due` (0 when not yet due).
fn lag_seconds(now: DateTime<Utc>, due: DateTime<Utc>) -> f64 {
    let behind = now - due;
    (behind.num_milliseconds().max(0) as f64) / 1000.0
}

impl Gateway {
    /// Authorizations with work due now, soonest first, and when the next one falls due.
    pub async fn due_authorizations(&self, limit: usize) -> Result<DueWork, AppError> {
        let now = self.clock.now();
        let found = self.authorizations.due(now, limit).await?;
        // Soonest first: the first one is the oldest due poll.
        let lag = found
            .due
            .first()
            .map_or(0.0, |oldest| lag_seconds(now, oldest.next_poll_at()));
        metrics::gauge!(sacp_ports::telemetry::DRIVER_LAG).set(lag);
        Ok(DueWork {
            due: found.due,
            next_at: found.next_at,
        })
    }

    /// One step of the background driver on one authorization: expire it, poll the wallet
    /// once (no sooner than its interval), make one attempt to place the order, or — once
    /// the deadline or the attempts are spent — the final check. Safe to call from several
    /// workers and replicas at once: each piece of work is claimed first.
    pub async fn advance_authorization(&self, id: &PaymentAuthorizationId) -> Result<(), AppError> {
        let authorization = self.authorizations.get(id).await?;
        self.advance_loaded_authorization(authorization).await
    }

    /// [`Gateway::advance_authorization`] from a copy the caller read: the claim's
    /// compare-and-swap tells whether it is still current, so it is not read again; a copy
    /// that changed meanwhile is left for the next scan.
    pub async fn advance_loaded_authorization(
        &self,
        authorization: PaymentAuthorization,
    ) -> Result<(), AppError> {
        match self.claim_all(vec![authorization]).await.pop() {
            Some(claimed) => self.advance_claimed(claimed).await,
            None => Ok(()),
        }
    }

    /// Claims the work of every authorization of a scan, the claims written together (one
    /// transaction where storage has them); returns the work won. Copies that changed since
    /// they were read, or that another worker claimed first, are left out. Pending ones
    /// past their expiry need no claim: ending them is a compare-and-swap of its own.
    pub async fn claim_all(&self, due: Vec<PaymentAuthorization>) -> Vec<ClaimedWork> {
        let now = self.clock.now();
        let mut claimed = Vec::with_capacity(due.len());
        let mut claims = Vec::with_capacity(due.len());
        let mut works = Vec::with_capacity(due.len());
        for mut authorization in due {
            if authorization.status() == AuthorizationStatus::Pending
                && authorization.is_past_expiry(now)
            {
                claimed.push(ClaimedWork {
                    authorization,
                    step: Step::Expire,
                });
                continue;
            }
            if let Ok(work) = authorization.claim(now) {
                claims.push(authorization);
                works.push(work);
            }
        }
        let results = self.authorizations.update_all(&mut claims).await;
        for ((authorization, work), result) in claims.into_iter().zip(works).zip(results) {
            match result {
                Ok(()) => claimed.push(ClaimedWork {
                    authorization,
                    step: Step::Work(work),
                }),
                Err(RepositoryError::Conflict) => {}
                Err(error) => {
                    tracing::warn!(authorization = %authorization.id(), %error, "claiming a payment authorization failed; the next scan retries");
                }
            }
        }
        claimed
    }

    /// Does the work [`Gateway::claim_all`] claimed: expire, poll the wallet, attempt the
    /// order, or the final check.
    pub async fn advance_claimed(&self, claimed: ClaimedWork) -> Result<(), AppError> {
        let ClaimedWork {
            authorization,
            step,
        } = claimed;
        match step {
            Step::Expire => {
                self.end_authorization(authorization.id(), |a, now| a.expire(now).is_ok())
                    .await
            }
            Step::Work(Work::Poll) => self.poll_wallet(authorization).await,
            Step::Work(Work::Charge { .. }) => self.charge(authorization, None).await,
            Step::Work(Work::Conclude) => self.conclude(authorization).await,
        }
    }

    async fn poll_wallet(&self, authorization: PaymentAuthorization) -> Result<(), AppError> {
        let id = authorization.id().clone();
        match self
            .wallet
            .poll_device_token(authorization.device_code())
            .await
        {
            Ok(DevicePoll::Pending) => Ok(()),
            Ok(DevicePoll::SlowDown) => {
                self.settle_authorization(&id, |a, now| a.slow_down(now).is_ok())
                    .await?;
                Ok(())
            }
            Ok(DevicePoll::Denied) => {
                self.end_authorization(&id, |a, now| a.reject(now).is_ok())
                    .await
            }
            Ok(DevicePoll::Expired) => {
                self.end_authorization(&id, |a, now| a.expire(now).is_ok())
                    .await
            }
            Err(UpstreamError::Rejected { code }) if code == "invalid_grant" => {
                self.end_authorization(&id, |a, now| a.expire(now).is_ok())
                    .await
            }
            Ok(DevicePoll::Approved(issued)) => {
                let now = self.clock.now();
                let lifetime =
                    chrono::Duration::seconds(i64::try_from(issued.expires_in).unwrap_or(0));
                self.collected
                    .keep(&id, issued.access_token.clone(), now + lifetime, now);
                // Record the approval and claim the first attempt in one write, before
                // charging; the checkout is read with it (one transaction where storage has
                // both) unless the copy changed meanwhile.
                let approve_and_claim = |a: &mut PaymentAuthorization, now| {
                    a.approve(now).is_ok() && a.claim(now).is_ok()
                };
                let mut approved = authorization.clone();
                if approve_and_claim(&mut approved, now) {
                    match self
                        .authorizations
                        .update_reading_checkout(&mut approved, self.checkouts.as_ref())
                        .await
                    {
                        Ok(Ok(checkout)) => {
                            return self
                                .charge_loaded(approved, checkout, Some(issued.access_token))
                                .await;
                        }
                        // Written, but the checkout could not be read with it: read
                        // on its own (which tells a missing checkout from an outage).
                        Ok(Err(_)) => {
                            return self.charge(approved, Some(issued.access_token)).await;
                        }
                        Err(RepositoryError::Conflict) => {}
                        Err(error) => return Err(error.into()),
                    }
                }
                let approved = self
                    .settle_loaded_authorization(authorization, approve_and_claim)
                    .await?;
                if approved.status() != AuthorizationStatus::Charging {
                    return Ok(());
                }
                self.charge(approved, Some(issued.access_token)).await
            }
            Err(UpstreamError::Rejected { code }) if code == "invalid_client" => {
                tracing::error!(authorization = %id, "the wallet refuses the gateway's client (GATEWAY_CLIENT_ID suspended or unknown); retrying next interval");
                Ok(())
            }
            Err(error) => {
                tracing::warn!(authorization = %id, error = %error, "wallet poll failed; retrying next interval");
                Ok(())
            }
        }
    }

    /// One attempt to place the order of an approved authorization (claimed `charging`),
    /// unless the checkout no longer waits for it (then nothing is charged).
    async fn charge(
        &self,
        authorization: PaymentAuthorization,
        token: Option<BearerToken>,
    ) -> Result<(), AppError> {
        let checkout = self.load_checkout(authorization.checkout_id()).await?;
        self.charge_loaded(authorization, checkout, token).await
    }

    /// [`Gateway::charge`] with the checkout already read.
    async fn charge_loaded(
        &self,
        authorization: PaymentAuthorization,
        checkout: Checkout,
        token: Option<BearerToken>,
    ) -> Result<(), AppError> {
        if checkout.hold() != Some(&authorization.hold()) {
            return self.let_go(&checkout, &authorization).await;
        }
        // An earlier attempt may have placed the order before it could record it.
        let session = match self.store.session(checkout.store_session_id()).await {
            Ok(session) => session,
            Err(error) => return self.retry_later(authorization, &error.to_string()).await,
        };
        if let Some(order) = session.order {
            return self
                .record_order(checkout, authorization, order, None)
                .await;
        }
        let now = self.clock.now();
        let token = match token.or_else(|| self.collected.get(authorization.id(), now)) {
            Some(token) => token,
            None => match self.collect_again(&authorization).await {
                Ok(token) => token,
                Err(setback) => return self.setback(checkout, authorization, setback).await,
            },
        };
        match self.pay(&checkout, &authorization, &token).await {
            Ok(order) => {
                let payer = self.payer_of(&token).await;
                self.record_order(checkout, authorization, order, payer)
                    .await
            }
            Err(AppError::UserTokenInvalid) => {
                // The token the approval gave is refused (expired or revoked): the next
                // attempt collects the approval again.
                self.collected.take(authorization.id());
                self.retry_later(authorization, "the wallet refused the collected token")
                    .await
            }
            Err(error) => {
                self.setback(checkout, authorization, setback_of(error))
                    .await
            }
        }
    }

    /// The approval collected again from the device code (the wallet does not consume it),
    /// while the wallet still honours it.
    async fn collect_again(
        &self,
        authorization: &PaymentAuthorization,
    ) -> Result<BearerToken, Setback> {
        match self
            .wallet
            .poll_device_token(authorization.device_code())
            .await
        {
            Ok(DevicePoll::Approved(issued)) => {
                let now = self.clock.now();
                let lifetime =
                    chrono::Duration::seconds(i64::try_from(issued.expires_in).unwrap_or(0));
                self.collected.keep(
                    authorization.id(),
                    issued.access_token.clone(),
                    now + lifetime,
                    now,
                );
                Ok(issued.access_token)
            }
            // Expired (the real wallet checks expiry before approval) or gone: the approval
            // can never be collected again.
            Ok(DevicePoll::Expired) | Ok(DevicePoll::Denied) => {
                Err(Setback::Permanent(failure::APPROVAL_EXPIRED))
            }
            Err(UpstreamError::Rejected { code }) if code == "invalid_grant" => {
                Err(Setback::Permanent(failure::APPROVAL_EXPIRED))
            }
            Ok(other) => Err(Setback::Transient(format!("{other:?}"))),
            Err(error) => Err(Setback::Transient(error.to_string())),
        }
    }

    /// The attempt did not place the order: try again later, or end it with its reason.
    async fn setback(
        &self,
        checkout: Checkout,
        authorization: PaymentAuthorization,
        setback: Setback,
    ) -> Result<(), AppError> {
        match setback {
            Setback::Transient(why) => self.retry_later(authorization, &why).await,
            Setback::Permanent(reason) => self.fail_approval(checkout, authorization, reason).await,
        }
    }

    async fn retry_later(
        &self,
        authorization: PaymentAuthorization,
        why: &str,
    ) -> Result<(), AppError> {
        let id = authorization.id().clone();
        let attempts = authorization.attempts();
        let settled = self
            .settle_loaded_authorization(authorization, |a, now| a.retry_later(now).is_ok())
            .await?;
        tracing::warn!(authorization = %id, attempts, next_at = %settled.next_poll_at(), why, "placing the order failed for now; retrying after a backoff");
        Ok(())
    }

    /// Ends a pending authorization without an order (`change` rejects or expires it) and
    /// gives the checkout back for a new payment.
    async fn end_authorization(
        &self,
        id: &PaymentAuthorizationId,
        change: impl Fn(&mut PaymentAuthorization, DateTime<Utc>) -> bool,
    ) -> Result<(), AppError> {
        let ended = self.settle_authorization(id, change).await?;
        if !ended.status().is_terminal() {
            return Ok(());
        }
        let hold = ended.hold();
        let now = self.clock.now();
        self.update_checkout(ended.checkout_id(), |c| {
            if c.hold() == Some(&hold) {
                c.release_authorization(&hold, now)?;
            }
            Ok(())
        })
        .await?;
        Ok(())
    }

    /// The deadline or the attempts are spent: an earlier attempt may still have placed the
    /// order (its answer lost); otherwise the authorization ends, and nothing was charged.
    async fn conclude(&self, authorization: PaymentAuthorization) -> Result<(), AppError> {
        let checkout = self.load_checkout(authorization.checkout_id()).await?;
        if checkout.hold() != Some(&authorization.hold()) {
            return self.let_go(&checkout, &authorization).await;
        }
        match self.store.session(checkout.store_session_id()).await {
            Ok(session) => match session.order {
                Some(order) => {
                    self.record_order(checkout, authorization, order, None)
                        .await
                }
                None => {
                    self.fail_approval(checkout, authorization, failure::ORDER_NOT_PLACED)
                        .await
                }
            },
            // Only the store can tell: ask it again later, the wallet no more.
            Err(error) => self.retry_later(authorization, &error.to_string()).await,
        }
    }

    /// The checkout no longer holds this authorization: it was cancelled (charge nothing) or
    /// completed by an earlier attempt (the approval is used).
    async fn let_go(
        &self,
        checkout: &Checkout,
        authorization: &PaymentAuthorization,
    ) -> Result<(), AppError> {
        let completed = checkout.status() == CheckoutStatus::Completed;
        self.settle_authorization(authorization.id(), |a, now| {
            if completed {
                a.consume(now).is_ok()
            } else {
                a.cancel(now).is_ok()
            }
        })
        .await?;
        self.release_collected(authorization.id()).await;
        Ok(())
    }

    /// The order is placed: the checkout completes (with who paid, when known) and the
    /// approval is used; the collected token is given back to the wallet.
    async fn record_order(
        &self,
        checkout: Checkout,
        authorization: PaymentAuthorization,
        order: OrderConfirmation,
        payer: Option<String>,
    ) -> Result<(), AppError> {
        let hold = authorization.hold();
        let id = authorization.id().clone();
        let complete = |c: &mut Checkout| -> Result<(), AppError> {
            if c.order() == Some(&order) {
                return Ok(());
            }
            c.complete_authorized(&hold, order.clone(), self.clock.now())?;
            if let Some(payer) = &payer {
                c.note_payer(payer);
            }
            Ok(())
        };
        // Usually nothing changed since the copies were read: both writes go together (one
        // transaction where storage has them). Otherwise, each step on its own with
        // re-reads, as below.
        let mut completed = checkout.clone();
        let mut consumed = authorization.clone();
        let now = self.clock.now();
        let together = completed.order().is_none()
            && complete(&mut completed).is_ok()
            && consumed.consume(now).is_ok();
        let written = if together {
            self.authorizations
                .update_after_checkout(&mut completed, &mut consumed, self.checkouts.as_ref())
                .await
        } else {
            (Err(RepositoryError::Conflict), None)
        };
        match written {
            (Ok(()), Some(Ok(()))) => {
                if let Some(outcome) = crate::telemetry::outcome_of(consumed.status()) {
                    crate::telemetry::payment_ended(outcome);
                }
                self.ended.keep(completed, consumed);
            }
            (checkout_written, _) => {
                if checkout_written.is_err() {
                    self.update_loaded_checkout(checkout, complete).await?;
                }
                self.settle_loaded_authorization(authorization, |a, now| a.consume(now).is_ok())
                    .await?;
            }
        }
        self.release_collected(&id).await;
        tracing::info!(authorization = %id, order = %order.order_id, "payment authorization consumed: order placed");
        Ok(())
    }

    /// Ends an approved authorization without an order, for `reason`, and gives the checkout
    /// back for a new payment (the person can fix the cause — add a card — and pay again).
    async fn fail_approval(
        &self,
        checkout: Checkout,
        authorization: PaymentAuthorization,
        reason: &'static str,
    ) -> Result<(), AppError> {
        let hold = authorization.hold();
        let id = authorization.id().clone();
        let now = self.clock.now();
        self.settle_loaded_authorization(authorization, |a, now| a.fail(reason, now).is_ok())
            .await?;
        self.update_loaded_checkout(checkout, |c| {
            if c.hold() == Some(&hold) {
                c.release_authorization(&hold, now)?;
            }
            Ok(())
        })
        .await?;
        self.release_collected(&id).await;
        tracing::warn!(authorization = %id, reason, "approved payment failed; nothing was charged");
        Ok(())
    }

    /// Forgets the token collected for `id` and revokes it at the wallet (best effort: the
    /// wallet answers success whatever the token, and an unrevoked one expires in an hour).
    pub(crate) async fn release_collected(&self, id: &PaymentAuthorizationId) {
        if let Some(token) = self.collected.take(id)
            && let Err(error) = self.wallet.revoke_token(&token).await
        {
            tracing::warn!(authorization = %id, %error, "collected wallet token not revoked; it expires on its own");
        }
    }

    /// Whose wallet `token` belongs to, as the wallet says; `None` when it cannot tell now
    /// (the order is placed all the same, and is then shown to nobody through the gateway).
    pub(super) async fn payer_of(&self, token: &BearerToken) -> Option<String> {
        if let Some(subject) = token.subject() {
            return Some(subject.to_owned());
        }
        match self.wallet.introspect(token).await {
            Ok(Introspection::Active(info)) => {
                token.note_subject(&info.subject);
                Some(info.subject)
            }
            Ok(Introspection::Inactive) => None,
            Err(error) => {
                tracing::warn!(%error, "the wallet could not say who paid; the order will not be shown through the gateway");
                None
            }
        }
    }

    /// A payment token for the approved amount, then the order.
    async fn pay(
        &self,
        checkout: &Checkout,
        authorization: &PaymentAuthorization,
        token: &BearerToken,
    ) -> Result<OrderConfirmation, AppError> {
        match self
            .request_payment(checkout, authorization.amount(), token)
            .await?
        {
            PaymentTokenOutcome::Issued(payment) => {
                self.place_order(checkout, &payment.token, token).await
            }
            PaymentTokenOutcome::StepUpRequired(_) => {
                Err(AppError::PaymentRefused("step_up_required".into()))
            }
        }
    }
}
