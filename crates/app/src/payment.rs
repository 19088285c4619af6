//! Paying for a checkout: `complete` on the guest device-authorization path and on the
//! user-token path (with its step-up), payment-status polls, and placing an order at the
//! store. What happens after the person approves a guest payment is in [`super::charge`];
//! finishing a step-up in [`super::step_up`].

use crate::Answering;
use chrono::{DateTime, Utc};
use sacp_domain::{
    Checkout, Money, OrderConfirmation, PaymentAuthorization, PaymentAuthorizationId, PaymentHold,
    PaymentStatus,
};
use sacp_ports::store::CompletionOutcome;
use sacp_ports::wallet::{
    DeviceAuthorizationRequest, Introspection, PaymentTokenOutcome, PaymentTokenRequest,
};
use sacp_ports::{BearerToken, RepositoryError, UpstreamError};

use super::{AppError, CAS_ATTEMPTS, Gateway, telemetry};

/// Age after which a live authorization its checkout does not hold is taken for an orphan
/// of a crash (no request runs this long).
const ORPHAN_AFTER_SECS: i64 = 60;

/// What `complete` did.
#[derive(Debug, Clone)]
pub enum CompleteOutcome {
    /// Guest path: the person must approve in the wallet.
    AuthorizationRequired {
        /// The checkout, now `authorizing`.
        checkout: Checkout,
        /// The pending authorization (boxed: it is the largest of the outcomes).
        authorization: Box<PaymentAuthorization>,
    },
    /// User-token path: the order is placed.
    Completed(Checkout),
    /// User-token path: the wallet wants the person to approve a payment over their limit.
    StepUpRequired {
        /// The checkout, now `authorizing`.
        checkout: Checkout,
        /// The wallet's step-up id.
        step_up_id: String,
        /// When the step-up expires.
        expires_at: Option<DateTime<Utc>>,
        /// Which limit the payment is over (`per_transaction`, `daily_limit`,
        /// `monthly_limit`), as the wallet said.
        trigger: Option<String>,
    },
}

/// What a payment-status poll reports.
#[derive(Debug, Clone)]
pub struct PaymentStatusView {
    /// The status as the agent sees it.
    pub status: PaymentStatus,
    /// Seconds until the authorization expires (while pending).
    pub expires_in: u64,
    /// The authorization.
    pub authorization: PaymentAuthorization,
    /// Its checkout.
    pub checkout: Checkout,
}

/// The answer of a guest payment that started (or was already started): the checkout and
/// its pending authorization.
fn required(checkout: Checkout, authorization: PaymentAuthorization) -> CompleteOutcome {
    CompleteOutcome::AuthorizationRequired {
        checkout,
        authorization: Box::new(authorization),
    }
}

/// A short description of what is bought, shown to the person in the wallet.
fn describe(checkout: &Checkout) -> String {
    let lines: Vec<String> = checkout
        .cart()
        .lines()
        .iter()
        .map(|l| format!("{} × {}", l.quantity.get(), l.name))
        .collect();
    format!(
        "{} — total {}",
        lines.join(", "),
        checkout.cart().total().formatted()
    )
}

/// What a refused payment-token request means to the caller.
pub(super) fn payment_error(error: UpstreamError) -> AppError {
    match error {
        UpstreamError::Unauthorized => AppError::UserTokenInvalid,
        UpstreamError::Rejected { code } if code == "insufficient_scope" => {
            AppError::UserTokenScope("purchase".into())
        }
        UpstreamError::Rejected { code } if code == "no_payment_method" => {
            AppError::PaymentRefused(code)
        }
        other => AppError::wallet(other),
    }
}

impl Gateway {
    /// Starts payment. Without a user token: a device authorization for the exact total
    /// (calling again while it is pending answers with the same one). With a user token:
    /// introspects it, asks the wallet for a payment token and places the order, or reports
    /// the step-up the wallet requires.
    pub async fn complete_checkout(
        &self,
        owner: &str,
        id: &str,
        user_token: Option<&BearerToken>,
    ) -> Result<CompleteOutcome, AppError> {
        self.complete_checkout_answering(owner, id, user_token, None)
            .await
            .map(|(outcome, _)| outcome)
    }

    /// [`Gateway::complete_checkout`] that, with `answering`, stores the idempotent answer of
    /// a payment it starts in the transaction that starts it; tells whether it did (any
    /// other outcome is the caller's to store).
    pub async fn complete_checkout_answering(
        &self,
        owner: &str,
        id: &str,
        user_token: Option<&BearerToken>,
        answering: Option<Answering<'_, CompleteOutcome>>,
    ) -> Result<(CompleteOutcome, bool), AppError> {
        let checkout = self.get_checkout(owner, id).await?;
        match user_token {
            Some(token) => Ok((self.complete_with_user_token(checkout, token).await?, false)),
            None => self.start_device_authorization(checkout, answering).await,
        }
    }

    /// The pending device authorization of a checkout, if one is live.
    async fn live_authorization(&self, checkout: &Checkout) -> Option<PaymentAuthorization> {
        let Some(PaymentHold::Device {
            authorization_id, ..
        }) = checkout.hold()
        else {
            return None;
        };
        let authorization = self.authorizations.get(authorization_id).await.ok()?;
        let live = authorization.status() == sacp_domain::AuthorizationStatus::Pending
            && !authorization.is_past_expiry(self.clock.now());
        live.then_some(authorization)
    }

    async fn start_device_authorization(
        &self,
        checkout: Checkout,
        answering: Option<Answering<'_, CompleteOutcome>>,
    ) -> Result<(CompleteOutcome, bool), AppError> {
        if let Some(authorization) = self.live_authorization(&checkout).await {
            return Ok((required(checkout, authorization), false));
        }
        let now = self.clock.now();
        checkout.ensure_payable(now)?;
        let checkout = self.ensure_store_agrees(checkout).await?;
        let amount = checkout.ensure_payable(now)?;
        let merchant = self.store.merchant().await.map_err(AppError::store)?;
        let request = DeviceAuthorizationRequest {
            agent_name: format!("{} via {}", merchant.name, self.config.agent_name),
            agent_description: Some(describe(&checkout)),
            scopes: vec!["purchase".into()],
            spending_limit: amount,
            buyer_email: checkout.buyer().map(|b| b.email.clone()),
        };
        let grant = self
            .wallet
            .start_device_authorization(&request)
            .await
            .map_err(AppError::wallet)?;
        let checkout_id = checkout.id().clone();
        let start = || {
            PaymentAuthorization::start(
                PaymentAuthorizationId::generate(self.random.as_ref()),
                checkout_id.clone(),
                grant.clone(),
                amount,
                now,
            )
        };
        self.hold_for(checkout, &start, answering, now).await
    }

    /// Stores a new `authorization` with `checkout` holding it (and the request's answer,
    /// when it has a claim) in one write. Against a concurrent change it reads the checkout
    /// again: one that another request holds answers with that request's authorization; an
    /// orphan a crash left (a live authorization no checkout holds, older than any request)
    /// is cancelled and the write tried again; a lost claim saves the payment without the
    /// answer (the retry that took the claim over gets its own). `start` makes the
    /// authorization, a new one for each attempt after one that storage kept (ended).
    async fn hold_for(
        &self,
        checkout: Checkout,
        start: &(dyn Fn() -> PaymentAuthorization + Send + Sync),
        mut answering: Option<Answering<'_, CompleteOutcome>>,
        now: DateTime<Utc>,
    ) -> Result<(CompleteOutcome, bool), AppError> {
        let mut authorization = start();
        let checkout_id = checkout.id().clone();
        let mut current = checkout;
        let mut fresh = false;
        let mut orphan_retired = false;
        for _ in 0..CAS_ATTEMPTS {
            if authorization.version() != 0 {
                authorization = start();
            }
            let mut holding = current.clone();
            let written = match holding.begin_authorization(authorization.hold(), now) {
                // A fresh read was already checked for a payment another request started.
                Err(refused) if fresh => return Err(refused.into()),
                // The copy read before the upstream calls may be stale: read it again.
                Err(_) => Err(RepositoryError::Conflict),
                Ok(()) => {
                    let answer = answering.as_ref().map(|answering| {
                        answering.answer(&required(holding.clone(), authorization.clone()), now)
                    });
                    let written = self
                        .authorizations
                        .insert_holding(
                            &mut authorization,
                            &mut holding,
                            answer.as_ref(),
                            self.checkouts.as_ref(),
                        )
                        .await;
                    if written.is_ok() {
                        self.alarms
                            .authorizations
                            .due_at(authorization.next_poll_at());
                        return Ok((required(holding, authorization), answer.is_some()));
                    }
                    written
                }
            };
            // The checkout already has a live authorization (`Constraint`): the one it holds
            // (answer with it), one a concurrent request is about to hold (retry shortly), or
            // an orphan a crash left (retire it, then try once more).
            let live_elsewhere = match written {
                // The claim was lost to a retry that will get its own answer; the payment
                // itself goes ahead.
                Err(RepositoryError::NotFound) if answering.is_some() => {
                    answering = None;
                    continue;
                }
                // (A written payment returned above.)
                Ok(()) | Err(RepositoryError::Conflict) => false,
                Err(RepositoryError::Constraint(_)) => true,
                Err(other) => return Err(AppError::Storage(other)),
            };
            current = self.load_checkout(&checkout_id).await?;
            fresh = true;
            if let Some(live) = self.live_authorization(&current).await {
                return Ok((required(current, live), false));
            }
            if live_elsewhere {
                let orphan = self
                    .authorizations
                    .active_for_checkout(&checkout_id)
                    .await?;
                match orphan {
                    Some(orphan)
                        if !orphan_retired
                            && now - orphan.created_at()
                                > chrono::Duration::seconds(ORPHAN_AFTER_SECS) =>
                    {
                        self.settle_authorization(orphan.id(), |a, now| a.cancel(now).is_ok())
                            .await?;
                        orphan_retired = true;
                    }
                    _ => return Err(AppError::Busy),
                }
            }
        }
        Err(AppError::Busy)
    }

    async fn complete_with_user_token(
        &self,
        checkout: Checkout,
        token: &BearerToken,
    ) -> Result<CompleteOutcome, AppError> {
        match self
            .wallet
            .introspect(token)
            .await
            .map_err(AppError::wallet)?
        {
            Introspection::Active(info) => token.note_subject(&info.subject),
            Introspection::Inactive => return Err(AppError::UserTokenInvalid),
        }
        let now = self.clock.now();
        checkout.ensure_payable(now)?;
        let checkout = self.ensure_store_agrees(checkout).await?;
        let amount = checkout.ensure_payable(now)?;
        match self.request_payment(&checkout, amount, token).await? {
            PaymentTokenOutcome::Issued(payment) => {
                let order = self.place_order(&checkout, &payment.token, token).await?;
                let payer = token.subject().map(str::to_owned);
                let (completed, ()) = self
                    .update_checkout(checkout.id(), |c| {
                        if c.order() == Some(&order) {
                            return Ok(());
                        }
                        c.complete_direct(order.clone(), now)?;
                        if let Some(payer) = &payer {
                            c.note_payer(payer);
                        }
                        Ok(())
                    })
                    .await?;
                telemetry::payment_ended("completed");
                Ok(CompleteOutcome::Completed(completed))
            }
            PaymentTokenOutcome::StepUpRequired(step_up) => {
                let hold = PaymentHold::StepUp {
                    step_up_id: step_up.step_up_id.clone(),
                    amount,
                };
                let (checkout, ()) = self
                    .update_checkout(checkout.id(), |c| {
                        Ok(c.begin_authorization(hold.clone(), now)?)
                    })
                    .await?;
                // The gateway watches the step-up itself and places the order once the
                // person approves, whether or not the agent polls.
                self.watch_step_up(checkout.id(), &step_up, token).await;
                Ok(CompleteOutcome::StepUpRequired {
                    checkout,
                    step_up_id: step_up.step_up_id,
                    expires_at: step_up.expires_at,
                    trigger: step_up.reason,
                })
            }
        }
    }

    /// Asks the wallet for a payment token of `amount` for the checkout's store session, with
    /// the person's `token`.
    pub(super) async fn request_payment(
        &self,
        checkout: &Checkout,
        amount: Money,
        token: &BearerToken,
    ) -> Result<PaymentTokenOutcome, AppError> {
        let merchant = self.store.merchant().await.map_err(AppError::store)?;
        let request = PaymentTokenRequest {
            amount,
            merchant_id: merchant.id,
            merchant_name: Some(merchant.name),
            session_id: Some(checkout.store_session_id().0.clone()),
        };
        let outcome = self
            .wallet
            .request_payment_token(token, &request)
            .await
            .map_err(payment_error)?;
        if matches!(outcome, PaymentTokenOutcome::Issued(_)) {
            telemetry::token_minted();
        }
        Ok(outcome)
    }

    /// Places the order at the store. A session the store already completed (a retry after a
    /// crash or a concurrent poll) yields the order it recorded instead of a second charge.
    pub(super) async fn place_order(
        &self,
        checkout: &Checkout,
        payment_token: &BearerToken,
        user_token: &BearerToken,
    ) -> Result<OrderConfirmation, AppError> {
        let session_id = checkout.store_session_id();
        match self
            .store
            .complete_session(session_id, payment_token, user_token)
            .await
        {
            Ok(CompletionOutcome::Completed(order)) => Ok(order),
            Ok(CompletionOutcome::AwaitingAuthorization { .. }) => {
                Err(AppError::store(UpstreamError::MalformedResponse(
                    "the store asked for a step-up although a payment token was given".into(),
                )))
            }
            Err(UpstreamError::Rejected { code }) => {
                let session = self
                    .store
                    .session(session_id)
                    .await
                    .map_err(AppError::store)?;
                match session.order {
                    Some(order) => Ok(order),
                    None => Err(AppError::PaymentRefused(code)),
                }
            }
            // The store, not the wallet, refused the person's token.
            Err(UpstreamError::Unauthorized) => Err(AppError::StoreRefusedUserToken),
            Err(other) => Err(AppError::store(other)),
        }
    }

    /// The payment status an agent of the organisation `owner` polls: answered from stored
    /// state only.
    pub async fn payment_status(
        &self,
        owner: &str,
        checkout_id: &str,
        request_id: &str,
    ) -> Result<PaymentStatusView, AppError> {
        // The checkout the path names, of the caller's organisation.
        let asked = |checkout: &Checkout| {
            checkout.id().as_str() == checkout_id && checkout.is_owned_by(owner)
        };
        if let Ok(id) = PaymentAuthorizationId::parse(request_id) {
            // A payment this replica just completed is answered as the driver wrote it (it
            // never changes again); the usual poll is one read of the authorization with
            // its checkout.
            if let Some(ended) = self.ended.get(&id)
                && asked(&ended.checkout)
            {
                return self.status_view(ended.checkout, ended.authorization).await;
            }
            if let Ok((authorization, checkout)) = self
                .authorizations
                .with_checkout(&id, self.checkouts.as_ref())
                .await
                && asked(&checkout)
            {
                self.note_watched(&authorization).await;
                return self.status_view(checkout, authorization).await;
            }
        }
        // Anything else is answered as before, each part read on its own: which one is not
        // found (or that storage failed) is told exactly.
        let checkout = self.load_owned(owner, checkout_id).await?;
        let authorization = self.find_authorization(request_id).await?;
        if authorization.checkout_id() != checkout.id() {
            return Err(AppError::NotFound("payment authorization"));
        }
        self.note_watched(&authorization).await;
        self.status_view(checkout, authorization).await
    }

    /// The agent is watching a pending payment: the wallet is polled within one interval
    /// again, whatever the backoff had scheduled (a lost race with the driver changes
    /// nothing: it just polled).
    async fn note_watched(&self, authorization: &PaymentAuthorization) {
        let mut watched = authorization.clone();
        if !watched.watched(self.clock.now()) {
            return;
        }
        match self.authorizations.update(&mut watched).await {
            Ok(()) => self.alarms.authorizations.due_at(watched.next_poll_at()),
            Err(RepositoryError::Conflict) => {}
            Err(error) => tracing::debug!(%error, "a watched payment keeps its backoff"),
        }
    }

    /// Where the checkout's latest guest payment stands (live or ended); `None` if it never
    /// had one. For clients that track a checkout rather than a payment request (MCP).
    pub async fn latest_payment_status(
        &self,
        owner: &str,
        checkout_id: &str,
    ) -> Result<Option<PaymentStatusView>, AppError> {
        let checkout = self.load_owned(owner, checkout_id).await?;
        let latest = self
            .authorizations
            .latest_for_checkout(checkout.id())
            .await
            .map_err(AppError::Storage)?;
        match latest {
            Some(authorization) => {
                self.note_watched(&authorization).await;
                Ok(Some(self.status_view(checkout, authorization).await?))
            }
            None => Ok(None),
        }
    }

    /// Where a payment stands. When the checkout was read before the authorization and the
    /// order was placed in between (the authorization is used, the checkout read has no
    /// order yet), it is read again, so that `completed` always comes with its order.
    async fn status_view(
        &self,
        mut checkout: Checkout,
        authorization: PaymentAuthorization,
    ) -> Result<PaymentStatusView, AppError> {
        if authorization.payment_status() == PaymentStatus::Completed && checkout.order().is_none()
        {
            checkout = self.load_checkout(checkout.id()).await?;
        }
        let now = self.clock.now();
        let status = match authorization.payment_status() {
            // Expiry is a matter of time: report it before the driver records it.
            PaymentStatus::Pending
                if authorization.status() == sacp_domain::AuthorizationStatus::Pending
                    && authorization.is_past_expiry(now) =>
            {
                PaymentStatus::Expired
            }
            other => other,
        };
        Ok(PaymentStatusView {
            status,
            expires_in: authorization.expires_in(now),
            authorization,
            checkout,
        })
    }

    async fn find_authorization(&self, request_id: &str) -> Result<PaymentAuthorization, AppError> {
        let id = PaymentAuthorizationId::parse(request_id)
            .map_err(|_| AppError::NotFound("payment authorization"))?;
        self.authorizations.get(&id).await.map_err(|e| match e {
            RepositoryError::NotFound => AppError::NotFound("payment authorization"),
            other => AppError::Storage(other),
        })
    }

    /// Where the QR code of a pending authorization points (the wallet's page with the code
    /// filled in). Gone once the authorization is no longer pending.
    pub async fn qr_target(&self, request_id: &str) -> Result<String, AppError> {
        let authorization = self.find_authorization(request_id).await?;
        let now = self.clock.now();
        if authorization.status() != sacp_domain::AuthorizationStatus::Pending
            || authorization.is_past_expiry(now)
        {
            return Err(AppError::Gone(format!(
                "this payment authorization is {}; the QR code is no longer valid",
                if authorization.is_past_expiry(now)
                    && authorization.status() == sacp_domain::AuthorizationStatus::Pending
                {
                    "expired"
                } else {
                    authorization.status().as_str()
                }
            )));
        }
        Ok(authorization.verification_uri_complete().to_owned())
    }

    /// Applies `change` to an authorization with compare-and-swap retries; `change` returns
    /// whether it changed anything (nothing is written otherwise).
    pub(super) async fn settle_authorization(
        &self,
        id: &PaymentAuthorizationId,
        change: impl Fn(&mut PaymentAuthorization, DateTime<Utc>) -> bool,
    ) -> Result<PaymentAuthorization, AppError> {
        let loaded = self.authorizations.get(id).await?;
        self.settle_loaded_authorization(loaded, change).await
    }

    /// [`Gateway::settle_authorization`] starting from `loaded`, an authorization the caller
    /// already read: read again only when it changed meanwhile (the version check fails) or
    /// when `change` finds nothing to do on it (so that "nothing to do" is always decided
    /// on a fresh read).
    pub(super) async fn settle_loaded_authorization(
        &self,
        loaded: PaymentAuthorization,
        change: impl Fn(&mut PaymentAuthorization, DateTime<Utc>) -> bool,
    ) -> Result<PaymentAuthorization, AppError> {
        let id = loaded.id().clone();
        let mut current = Some(loaded);
        for _ in 0..CAS_ATTEMPTS {
            let (mut authorization, fresh) = match current.take() {
                Some(loaded) => (loaded, false),
                None => (self.authorizations.get(&id).await?, true),
            };
            let was_terminal = authorization.status().is_terminal();
            if !change(&mut authorization, self.clock.now()) {
                if fresh {
                    return Ok(authorization);
                }
                continue;
            }
            match self.authorizations.update(&mut authorization).await {
                Ok(()) => {
                    // The compare-and-swap lets one writer end it: counted once.
                    if !was_terminal
                        && let Some(outcome) = telemetry::outcome_of(authorization.status())
                    {
                        telemetry::payment_ended(outcome);
                    }
                    return Ok(authorization);
                }
                Err(RepositoryError::Conflict) => continue,
                Err(other) => return Err(other.into()),
            }
        }
        Err(AppError::Busy)
    }
}
