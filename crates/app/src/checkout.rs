//! Create, change, read and cancel guest checkouts.

use chrono::{DateTime, Utc};
use sacp_domain::idempotency::{Answer, StoredResponse};
use sacp_domain::validation::{BuyerInput, FulfillmentInput, ItemInput};
use sacp_domain::{
    Buyer, Checkout, CheckoutId, Fulfillment, Items, PaymentHold, TransitionError, ValidationErrors,
};
use sacp_ports::store::{SessionPatch, StoreSession};
use sacp_ports::{RepositoryError, UpstreamError};

use super::{Answering, lost_claim};
use super::{AppError, Gateway};

/// What an agent sends to create or change a checkout, before validation. `None` leaves a
/// part as it is.
#[derive(Debug, Clone, Default)]
pub struct CheckoutChanges {
    /// Replaces every line.
    pub items: Option<Vec<ItemInput>>,
    /// Sets the buyer.
    pub buyer: Option<BuyerInput>,
    /// Sets the fulfillment.
    pub fulfillment: Option<FulfillmentInput>,
}

/// Validated changes.
struct ValidChanges {
    items: Option<Items>,
    buyer: Option<Buyer>,
    fulfillment: Option<Fulfillment>,
}

impl CheckoutChanges {
    /// Validates every part, collecting all problems with their field paths. With
    /// `items_required`, absent items are one of those problems.
    fn validate(&self, items_required: bool) -> Result<ValidChanges, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        if items_required && self.items.is_none() {
            errors.push(
                "items",
                "required",
                "is required: [{\"product_id\": \"...\", \"quantity\": 1}]",
            );
        }
        let items = self
            .items
            .as_ref()
            .and_then(|items| match Items::parse(items) {
                Ok(items) => Some(items),
                Err(e) => {
                    errors.append(e);
                    None
                }
            });
        let buyer = self
            .buyer
            .as_ref()
            .and_then(|buyer| match Buyer::parse(buyer) {
                Ok(buyer) => Some(buyer),
                Err(e) => {
                    errors.merge_under("buyer", e);
                    None
                }
            });
        let fulfillment = self
            .fulfillment
            .as_ref()
            .and_then(|f| match Fulfillment::parse(f) {
                Ok(f) => Some(f),
                Err(e) => {
                    errors.merge_under("fulfillment", e);
                    None
                }
            });
        errors.into_result(ValidChanges {
            items,
            buyer,
            fulfillment,
        })
    }
}

/// Maps errors of session calls to what the agent should hear.
fn session_error(error: UpstreamError) -> AppError {
    match error {
        UpstreamError::ItemsUnavailable { product_ids } => AppError::ItemsUnavailable(product_ids),
        UpstreamError::NotFound => AppError::NotFound("checkout session at the store"),
        UpstreamError::Rejected { code } if code == "session_expired" => {
            AppError::Transition(TransitionError::Expired)
        }
        other => AppError::store(other),
    }
}

impl Gateway {
    /// Opens a checkout for the organisation `owner`: validates the items (and buyer and
    /// fulfillment if given), opens a session at the store and records the checkout.
    ///
    /// With `answering`, the idempotent answer is stored in the same transaction as the
    /// checkout.
    pub async fn create_checkout(
        &self,
        owner: &str,
        changes: &CheckoutChanges,
        answering: Option<Answering<'_, Checkout>>,
    ) -> Result<Checkout, AppError> {
        self.create_checkout_answered(owner, changes, answering)
            .await
            .map(|(checkout, _)| checkout)
    }

    /// [`Gateway::create_checkout`], also returning the idempotent answer it stored with
    /// the checkout (with `answering`): the answer the request gets, so that the first
    /// answer and its replays are the same bytes and it is rendered once.
    pub async fn create_checkout_answered(
        &self,
        owner: &str,
        changes: &CheckoutChanges,
        answering: Option<Answering<'_, Checkout>>,
    ) -> Result<(Checkout, Option<StoredResponse>), AppError> {
        let valid = changes.validate(true)?;
        let Some(items) = valid.items else {
            // validate(true) refuses absent items; keep the type system honest anyway.
            return Err(AppError::BadRequest("items are required".into()));
        };
        let session = self
            .store
            .create_session(&items, valid.buyer.as_ref(), valid.fulfillment.as_ref())
            .await
            .map_err(session_error)?;
        let now = self.clock.now();
        let mut checkout = Checkout::open(
            owner,
            CheckoutId::generate(self.random.as_ref()),
            session.id,
            session.cart,
            session.buyer,
            session.fulfillment,
            now,
            session.expires_at,
        );
        match answering {
            Some(answering) => {
                let answer = answering.answer(&checkout, now);
                self.checkouts
                    .insert_answering(&mut checkout, &answer)
                    .await
                    .map_err(lost_claim)?;
                Ok((checkout, Some(answer.response)))
            }
            None => {
                self.checkouts.insert(&mut checkout).await?;
                Ok((checkout, None))
            }
        }
    }

    /// Reads a checkout of the organisation `owner`, recording its expiry if its time ran
    /// out. Another organisation's checkout is not found, as if it did not exist.
    pub async fn get_checkout(&self, owner: &str, id: &str) -> Result<Checkout, AppError> {
        let checkout = self.load_owned(owner, id).await?;
        let id = checkout.id().clone();
        let now = self.clock.now();
        if !checkout.is_past_expiry(now) {
            return Ok(checkout);
        }
        let (expired, ()) = self
            .update_checkout(&id, |c| {
                if c.is_past_expiry(now) {
                    c.expire(now)?;
                }
                Ok(())
            })
            .await?;
        Ok(expired)
    }

    /// Changes items, buyer or fulfillment. Refused while a payment authorization is
    /// pending (the cart is frozen) and once the checkout ended.
    pub async fn update_checkout_details(
        &self,
        owner: &str,
        id: &str,
        changes: &CheckoutChanges,
    ) -> Result<Checkout, AppError> {
        self.update_checkout_details_answering(owner, id, changes, None)
            .await
    }

    /// [`Gateway::update_checkout_details`] that, with `answering`, stores the idempotent
    /// answer in the transaction that saves the change.
    pub async fn update_checkout_details_answering(
        &self,
        owner: &str,
        id: &str,
        changes: &CheckoutChanges,
        answering: Option<Answering<'_, Checkout>>,
    ) -> Result<Checkout, AppError> {
        let valid = changes.validate(false)?;
        if valid.items.is_none() && valid.buyer.is_none() && valid.fulfillment.is_none() {
            let mut errors = ValidationErrors::default();
            errors.push(
                "body",
                "required",
                "send at least one of items, buyer, fulfillment",
            );
            return Err(errors.into());
        }
        let now = self.clock.now();
        // The edit is claimed before the store hears of it: an edit and a payment racing
        // each other cannot both go ahead, and a refused edit never changes the store's
        // session — what the person approves is what the store holds.
        let claimed = self.claim_edit(owner, id, now).await?;
        let patch = SessionPatch {
            items: valid.items,
            buyer: valid.buyer,
            fulfillment: valid.fulfillment,
        };
        // An expiry the store reports is recorded by the next read, from the expiry time the
        // store gave when the session opened.
        let session = match self
            .store
            .update_session(claimed.store_session_id(), &patch)
            .await
        {
            Ok(session) => session,
            Err(error) => {
                let _ = self
                    .update_loaded_checkout(claimed, |c| {
                        c.abandon_edit(now);
                        Ok(())
                    })
                    .await;
                return Err(session_error(error));
            }
        };
        let answer_of = answering
            .as_ref()
            .map(|answering| move |checkout: &Checkout| answering.answer(checkout, now));
        let (saved, ()) = self
            .update_loaded_checkout_answering(
                claimed,
                |c| apply_session(c, &session, now),
                answer_of
                    .as_ref()
                    .map(|f| f as &(dyn Fn(&Checkout) -> Answer + Send + Sync)),
            )
            .await?;
        Ok(saved)
    }

    /// Claims checkout `id` of `owner` for an edit: the read and the claim in one
    /// transaction when the checkout is editable, else the step-by-step path that reports
    /// why not (not found, expired — recorded —, being edited, frozen or ended).
    async fn claim_edit(
        &self,
        owner: &str,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<Checkout, AppError> {
        let checkout_id = CheckoutId::parse(id).map_err(|_| AppError::NotFound("checkout"))?;
        let owner_of = owner.to_owned();
        let edit = Box::new(move |c: &mut Checkout| {
            c.is_owned_by(&owner_of) && !c.is_past_expiry(now) && c.begin_edit(now).is_ok()
        });
        match self.checkouts.read_and_update(&checkout_id, edit).await {
            Ok((claimed, true)) => return Ok(claimed),
            Ok((_, false)) | Err(RepositoryError::Conflict) => {}
            Err(RepositoryError::NotFound) => return Err(AppError::NotFound("checkout")),
            Err(other) => return Err(AppError::Storage(other)),
        }
        let checkout = self.get_checkout(owner, id).await?;
        let (claimed, ()) = self
            .update_loaded_checkout(checkout, |c| Ok(c.begin_edit(now)?))
            .await?;
        Ok(claimed)
    }

    /// Before a payment starts: the store's session must hold what the checkout holds (an
    /// edit whose request died between the store and the gateway could have changed it). If
    /// it differs, the checkout takes the store's view and the payment is refused, so the
    /// agent reads the checkout again before the person is asked to approve anything.
    pub(super) async fn ensure_store_agrees(
        &self,
        checkout: Checkout,
    ) -> Result<Checkout, AppError> {
        let session = self
            .store
            .session(checkout.store_session_id())
            .await
            .map_err(session_error)?;
        let agrees = session.cart == *checkout.cart()
            && session.buyer.as_ref() == checkout.buyer()
            && session.fulfillment.as_ref() == checkout.fulfillment();
        if agrees {
            return Ok(checkout);
        }
        let now = self.clock.now();
        tracing::warn!(checkout = %checkout.id(), "the store's session differs from the checkout; taking the store's view before any payment");
        self.update_loaded_checkout(checkout, |c| apply_session(c, &session, now))
            .await?;
        Err(AppError::Transition(TransitionError::EditInProgress))
    }

    /// Cancels a checkout (and a pending payment authorization with it; a later approval then
    /// charges nothing). Refused once completed.
    pub async fn cancel_checkout(&self, owner: &str, id: &str) -> Result<Checkout, AppError> {
        let checkout = self.get_checkout(owner, id).await?;
        let now = self.clock.now();
        // Check the transition before asking the store, so that an illegal cancel changes
        // nothing anywhere.
        checkout.clone().cancel(now)?;
        // The store is asked first: it refuses once the order is placed, which settles a race
        // with a payment being completed at the same moment.
        match self.store.cancel_session(checkout.store_session_id()).await {
            Ok(()) | Err(UpstreamError::NotFound) => {}
            // The store placed the order meanwhile (a concurrent approval won the race).
            Err(UpstreamError::Rejected { code }) if code == "session_not_cancellable" => {
                return Err(AppError::Transition(TransitionError::NotAllowed {
                    action: sacp_domain::checkout::Action::Cancel,
                    status: sacp_domain::CheckoutStatus::Completed,
                }));
            }
            Err(other) => return Err(AppError::store(other)),
        }
        let (cancelled, hold) = self
            .update_checkout(checkout.id(), |c| Ok(c.cancel(now)?))
            .await?;
        if let Some(PaymentHold::Device {
            authorization_id, ..
        }) = hold
        {
            self.settle_authorization(&authorization_id, |a, now| a.cancel(now).is_ok())
                .await?;
            // An approval already collected is given back to the wallet at once. One not yet
            // collected cannot be withdrawn (the wallet has no way to cancel a device code):
            // the person may still approve it there, and nothing is charged.
            self.release_collected(&authorization_id).await;
        } else if let Some(PaymentHold::StepUp { step_up_id, .. }) = &hold {
            // The person's token kept for the step-up is dropped at once.
            self.forget_step_up(cancelled.id(), step_up_id).await;
        }
        Ok(cancelled)
    }
}

/// Applies the store's view of a session to a checkout.
fn apply_session(
    checkout: &mut Checkout,
    session: &StoreSession,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), AppError> {
    checkout.edit(
        session.cart.clone(),
        session.buyer.clone(),
        session.fulfillment.clone(),
        now,
    )?;
    Ok(())
}
