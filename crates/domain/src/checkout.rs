//! The checkout aggregate and its state machine.
//!
//! | state | allowed transitions |
//! |---|---|
//! | `cart` | → `ready_for_payment` (by an edit), `cancelled`, `expired` |
//! | `ready_for_payment` | → `cart` (an edit removes required data), `authorizing`, `completed` (user token path), `cancelled`, `expired` |
//! | `authorizing` | → `completed`, `ready_for_payment` (authorization rejected or expired), `failed`, `cancelled` |
//! | `completed`, `cancelled`, `expired`, `failed` | terminal |
//!
//! Status is never assigned from outside: every change goes through a method that checks the
//! current state. The cart is frozen while `authorizing`, so the amount a person approves is
//! the amount charged. Storage updates compare-and-swap on [`Checkout::version`].

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{CheckoutId, PaymentAuthorizationId};
use crate::money::{Money, MoneyError};
use crate::validation::{Buyer, Fulfillment, ProductId, Quantity};

/// The store's own id for the checkout session behind a checkout (never shown to agents as
/// the checkout id).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StoreSessionId(pub String);

/// The order the store placed for a completed checkout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderConfirmation {
    /// The store's order id.
    pub order_id: String,
    /// The payment transaction id.
    pub transaction_id: String,
}

/// One line of a cart, priced by the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineItem {
    /// The product.
    pub product_id: ProductId,
    /// Product name at the time it was added.
    pub name: String,
    /// How many.
    pub quantity: Quantity,
    /// Price of one unit.
    pub unit_price: Money,
    /// `unit_price × quantity`.
    pub line_total: Money,
}

/// Why a cart's figures were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CartError {
    /// A line total is not unit price × quantity.
    #[error("line total of {0} is not unit price times quantity")]
    LineTotalMismatch(ProductId),
    /// The subtotal is not the sum of the line totals.
    #[error("subtotal is not the sum of the lines")]
    SubtotalMismatch,
    /// The total is not subtotal + tax + shipping.
    #[error("total is not subtotal + tax + shipping")]
    TotalMismatch,
    /// A negative price, tax or shipping.
    #[error("negative amount in cart")]
    NegativeAmount,
    /// Mixed currencies or an overflow.
    #[error(transparent)]
    Money(#[from] MoneyError),
}

/// A priced cart. Its totals always equal the sum of the lines plus tax plus shipping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cart {
    lines: Vec<LineItem>,
    subtotal: Money,
    tax: Money,
    shipping: Option<Money>,
    total: Money,
}

impl Cart {
    /// Builds a cart from priced lines, computing subtotal and total. `currency` of the tax
    /// decides the cart currency; every line and the shipping must use it.
    pub fn new(
        lines: Vec<LineItem>,
        tax: Money,
        shipping: Option<Money>,
    ) -> Result<Cart, CartError> {
        let mut subtotal = Money::zero(tax.currency());
        for line in &lines {
            if line.unit_price.is_negative() {
                return Err(CartError::NegativeAmount);
            }
            if line
                .unit_price
                .checked_mul(u32::from(line.quantity.get()))?
                != line.line_total
            {
                return Err(CartError::LineTotalMismatch(line.product_id.clone()));
            }
            subtotal = subtotal.checked_add(line.line_total)?;
        }
        if tax.is_negative() || shipping.is_some_and(|s| s.is_negative()) {
            return Err(CartError::NegativeAmount);
        }
        let mut total = subtotal.checked_add(tax)?;
        if let Some(shipping) = shipping {
            total = total.checked_add(shipping)?;
        }
        Ok(Cart {
            lines,
            subtotal,
            tax,
            shipping,
            total,
        })
    }

    /// Builds a cart from figures reported by the store, refusing them unless they add up.
    pub fn from_reported(
        lines: Vec<LineItem>,
        subtotal: Money,
        tax: Money,
        shipping: Option<Money>,
        total: Money,
    ) -> Result<Cart, CartError> {
        let cart = Cart::new(lines, tax, shipping)?;
        if cart.subtotal != subtotal {
            return Err(CartError::SubtotalMismatch);
        }
        if cart.total != total {
            return Err(CartError::TotalMismatch);
        }
        Ok(cart)
    }

    /// The lines.
    pub fn lines(&self) -> &[LineItem] {
        &self.lines
    }
    /// Sum of the line totals.
    pub fn subtotal(&self) -> Money {
        self.subtotal
    }
    /// Tax.
    pub fn tax(&self) -> Money {
        self.tax
    }
    /// Shipping, once the store has priced it.
    pub fn shipping(&self) -> Option<Money> {
        self.shipping
    }
    /// Subtotal + tax + shipping: the amount to pay.
    pub fn total(&self) -> Money {
        self.total
    }
}

/// Where a checkout is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckoutStatus {
    /// Items present; buyer or fulfillment missing.
    Cart,
    /// Items, buyer and fulfillment present: payment can start.
    ReadyForPayment,
    /// A payment authorization for the exact total is pending; the cart is frozen.
    Authorizing,
    /// The order is placed. Terminal.
    Completed,
    /// Cancelled by the agent. Terminal.
    Cancelled,
    /// Timed out before payment. Terminal.
    Expired,
    /// Payment or order placement failed for good. Terminal.
    Failed,
}

impl CheckoutStatus {
    /// Wire name, e.g. `ready_for_payment`.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckoutStatus::Cart => "cart",
            CheckoutStatus::ReadyForPayment => "ready_for_payment",
            CheckoutStatus::Authorizing => "authorizing",
            CheckoutStatus::Completed => "completed",
            CheckoutStatus::Cancelled => "cancelled",
            CheckoutStatus::Expired => "expired",
            CheckoutStatus::Failed => "failed",
        }
    }

    /// Parses a wire name.
    pub fn parse(text: &str) -> Option<CheckoutStatus> {
        [
            CheckoutStatus::Cart,
            CheckoutStatus::ReadyForPayment,
            CheckoutStatus::Authorizing,
            CheckoutStatus::Completed,
            CheckoutStatus::Cancelled,
            CheckoutStatus::Expired,
            CheckoutStatus::Failed,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }

    /// Whether no transition leaves this state.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            CheckoutStatus::Completed
                | CheckoutStatus::Cancelled
                | CheckoutStatus::Expired
                | CheckoutStatus::Failed
        )
    }
}

/// Whether a checkout may be retired (deleted for good) once the retention reaches `cutoff`:
/// it ended (completed, cancelled, expired, failed) and was last changed before `cutoff`, or
/// it was left open (cart, ready for payment) and its expiry passed before `cutoff`. A
/// checkout waiting for a payment is never retirable: its authorization ends first.
pub fn retirable(
    status: CheckoutStatus,
    updated_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    cutoff: DateTime<Utc>,
) -> bool {
    match status {
        CheckoutStatus::Cart | CheckoutStatus::ReadyForPayment => expires_at < cutoff,
        CheckoutStatus::Authorizing => false,
        ended => ended.is_terminal() && updated_at < cutoff,
    }
}

impl fmt::Display for CheckoutStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a pending payment authorization is, and the exact amount it is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PaymentHold {
    /// Guest path: an RFC 8628 device authorization the person approves in the wallet.
    Device {
        /// The gateway's authorization request.
        authorization_id: PaymentAuthorizationId,
        /// The amount approved and charged.
        amount: Money,
    },
    /// User-token path: the wallet asked the person to step up (approve a larger payment).
    StepUp {
        /// The wallet's step-up id.
        step_up_id: String,
        /// The amount approved and charged.
        amount: Money,
    },
}

impl PaymentHold {
    /// The exact amount the authorization is for.
    pub fn amount(&self) -> Money {
        match self {
            PaymentHold::Device { amount, .. } | PaymentHold::StepUp { amount, .. } => *amount,
        }
    }
}

/// Something the checkout still needs before payment can start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MissingField {
    /// At least one item.
    Items,
    /// The buyer's name and email.
    Buyer,
    /// Shipping address or pickup.
    Fulfillment,
}

impl MissingField {
    /// Wire name: `items`, `buyer`, `fulfillment`.
    pub fn as_str(self) -> &'static str {
        match self {
            MissingField::Items => "items",
            MissingField::Buyer => "buyer",
            MissingField::Fulfillment => "fulfillment",
        }
    }
}

/// The call an agent should make next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NextStep {
    /// `PATCH /checkout/{id}` with what is missing.
    UpdateCheckout,
    /// `POST /checkout/{id}/complete`.
    Complete,
    /// Ask the person to approve, then poll the payment status.
    AwaitAuthorization,
    /// Nothing more: the order is placed.
    Done,
    /// Start a new checkout (this one ended without an order).
    StartNewCheckout,
}

/// What an agent tried to do, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Change items, buyer or fulfillment.
    Edit,
    /// Start payment.
    StartPayment,
    /// Place the order.
    Complete,
    /// Cancel.
    Cancel,
    /// End a pending authorization without an order.
    ReleaseAuthorization,
    /// Mark failed.
    Fail,
    /// Time out.
    Expire,
}

/// A transition the state machine refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    /// The action is not allowed in the current state.
    #[error("{}", not_allowed_message(*action, *status))]
    NotAllowed {
        /// What was attempted.
        action: Action,
        /// The state the checkout is in.
        status: CheckoutStatus,
    },
    /// Payment cannot start until the listed data is present.
    #[error("the checkout is missing {}: add it with PATCH /checkout/{{id}} before completing", join_missing(.0))]
    NotReady(Vec<MissingField>),
    /// The checkout's time ran out.
    #[error("the checkout expired; start a new checkout")]
    Expired,
    /// The authorization named is not the one pending on this checkout.
    #[error("that payment authorization is not the one pending on this checkout")]
    AuthorizationMismatch,
    /// Another request is changing the checkout at the store right now.
    #[error("the checkout is being changed by another request; read it again and retry")]
    EditInProgress,
    /// Another request is placing the order of this approved step-up right now.
    #[error("the order of this approved payment is being placed; poll again")]
    OrderBeingPlaced,
}

/// How long a claimed edit or step-up charge keeps other requests away (longer than any
/// upstream timeout; a request that died frees it when it runs out).
pub const LEASE_SECS: i64 = 30;

/// How a payment on the user-token path (a step-up) ended without an order, kept on the
/// checkout so that a later poll of that step-up still learns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndedStepUp {
    /// The wallet's step-up id.
    pub step_up_id: String,
    /// `rejected`, `expired` or `failed`.
    pub outcome: StepUpEnd,
    /// Why it failed (a stable code), when it did.
    pub reason: Option<String>,
}

/// How a step-up ended without an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepUpEnd {
    /// The person rejected it.
    Rejected,
    /// Nobody approved in time.
    Expired,
    /// Approved, but the order could not be placed.
    Failed,
}

fn join_missing(missing: &[MissingField]) -> String {
    let names: Vec<&str> = missing.iter().map(|m| m.as_str()).collect();
    names.join(" and ")
}

fn not_allowed_message(action: Action, status: CheckoutStatus) -> String {
    match (action, status) {
        (Action::Edit, CheckoutStatus::Authorizing) => "the cart is frozen while a payment authorization is pending: wait for it to end, or cancel the checkout and start a new one".to_owned(),
        (Action::StartPayment, CheckoutStatus::Authorizing) => "a payment authorization is already pending: poll its payment-status endpoint".to_owned(),
        (Action::Cancel, CheckoutStatus::Completed) => "the checkout is completed and the order placed; it can no longer be cancelled".to_owned(),
        (_, CheckoutStatus::Completed) => "the checkout is already completed".to_owned(),
        (_, status) if status.is_terminal() => format!("the checkout is {status}; start a new checkout"),
        (action, status) => format!("cannot {} a checkout that is {status}", match action {
            Action::Edit => "edit",
            Action::StartPayment => "start payment for",
            Action::Complete => "complete",
            Action::Cancel => "cancel",
            Action::ReleaseAuthorization => "release the authorization of",
            Action::Fail => "fail",
            Action::Expire => "expire",
        }),
    }
}

/// Everything a checkout holds, as plain data: how storage adapters save and restore one.
/// [`Checkout::restore`] refuses records that break an invariant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckoutRecord {
    /// The gateway's id.
    pub id: CheckoutId,
    /// The organisation of the key that created it: only that organisation's keys may read
    /// or change it. Empty for a record no organisation owns (written before ownership).
    #[serde(default)]
    pub owner: String,
    /// The wallet user who paid, once the order is placed and the wallet said whose token
    /// paid; orders are shown only to the same person.
    #[serde(default)]
    pub payer: Option<String>,
    /// The store's session id.
    pub store_session_id: StoreSessionId,
    /// Current state.
    pub status: CheckoutStatus,
    /// Priced cart.
    pub cart: Cart,
    /// Buyer, once given.
    pub buyer: Option<Buyer>,
    /// Fulfillment, once given.
    pub fulfillment: Option<Fulfillment>,
    /// The pending authorization while `authorizing`.
    pub hold: Option<PaymentHold>,
    /// The placed order once `completed`.
    pub order: Option<OrderConfirmation>,
    /// Why it failed, once `failed` (a stable code).
    pub failure: Option<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// When an unpaid checkout expires.
    pub expires_at: DateTime<Utc>,
    /// While a request changes the checkout at the store: until when its claim holds.
    #[serde(default)]
    pub edit_lease: Option<DateTime<Utc>>,
    /// While an attempt places the order of an approved step-up: until when its claim holds.
    #[serde(default)]
    pub step_up_lease: Option<DateTime<Utc>>,
    /// How the last step-up ended without an order, until the next payment starts.
    #[serde(default)]
    pub ended_step_up: Option<EndedStepUp>,
    /// Compare-and-swap version; 0 before the first save.
    pub version: u64,
}

/// A record that breaks an invariant of the checkout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stored checkout breaks an invariant: {0}")]
pub struct InvariantViolation(pub &'static str);

/// A guest checkout: a priced cart with buyer and fulfillment, on its way to an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkout {
    record: CheckoutRecord,
}

impl Checkout {
    /// Opens a checkout around a store session. Its status follows from what is present.
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        owner: &str,
        id: CheckoutId,
        store_session_id: StoreSessionId,
        cart: Cart,
        buyer: Option<Buyer>,
        fulfillment: Option<Fulfillment>,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Checkout {
        let mut checkout = Checkout {
            record: CheckoutRecord {
                id,
                owner: owner.to_owned(),
                payer: None,
                store_session_id,
                status: CheckoutStatus::Cart,
                cart,
                buyer,
                fulfillment,
                hold: None,
                order: None,
                failure: None,
                created_at: now,
                updated_at: now,
                expires_at,
                edit_lease: None,
                step_up_lease: None,
                ended_step_up: None,
                version: 0,
            },
        };
        checkout.record.status = checkout.editable_status();
        checkout
    }

    /// Restores a checkout from storage, checking every invariant.
    pub fn restore(record: CheckoutRecord) -> Result<Checkout, InvariantViolation> {
        let checkout = Checkout { record };
        checkout.check_invariants()?;
        Ok(checkout)
    }

    /// The plain data, for storage.
    pub fn record(&self) -> &CheckoutRecord {
        &self.record
    }

    /// The gateway's id.
    pub fn id(&self) -> &CheckoutId {
        &self.record.id
    }

    /// The organisation that owns it (empty: none).
    pub fn owner(&self) -> &str {
        &self.record.owner
    }

    /// Whether `org` owns it: only the owner's keys may see it at all.
    pub fn is_owned_by(&self, org: &str) -> bool {
        !self.record.owner.is_empty() && self.record.owner == org
    }

    /// The wallet user who paid, once known.
    pub fn payer(&self) -> Option<&str> {
        self.record.payer.as_deref()
    }

    /// Records who paid for the placed order (the subject the wallet gave for the paying
    /// token). Only a completed checkout has a payer; the first one recorded stays.
    pub fn note_payer(&mut self, subject: &str) {
        if self.record.status == CheckoutStatus::Completed && self.record.payer.is_none() {
            self.record.payer = Some(subject.to_owned());
        }
    }
    /// The store's session id.
    pub fn store_session_id(&self) -> &StoreSessionId {
        &self.record.store_session_id
    }
    /// Current state.
    pub fn status(&self) -> CheckoutStatus {
        self.record.status
    }
    /// Priced cart.
    pub fn cart(&self) -> &Cart {
        &self.record.cart
    }
    /// Buyer, once given.
    pub fn buyer(&self) -> Option<&Buyer> {
        self.record.buyer.as_ref()
    }
    /// Fulfillment, once given.
    pub fn fulfillment(&self) -> Option<&Fulfillment> {
        self.record.fulfillment.as_ref()
    }
    /// The pending authorization while `authorizing`.
    pub fn hold(&self) -> Option<&PaymentHold> {
        self.record.hold.as_ref()
    }
    /// The placed order, once completed.
    pub fn order(&self) -> Option<&OrderConfirmation> {
        self.record.order.as_ref()
    }
    /// Failure code, once failed.
    pub fn failure(&self) -> Option<&str> {
        self.record.failure.as_deref()
    }
    /// When an unpaid checkout expires.
    pub fn expires_at(&self) -> DateTime<Utc> {
        self.record.expires_at
    }
    /// Creation time.
    pub fn created_at(&self) -> DateTime<Utc> {
        self.record.created_at
    }
    /// Last change.
    pub fn updated_at(&self) -> DateTime<Utc> {
        self.record.updated_at
    }
    /// Version for compare-and-swap storage updates: storage accepts an update only if the
    /// stored version equals this one, then stores it incremented (see [`Checkout::set_version`]).
    pub fn version(&self) -> u64 {
        self.record.version
    }
    /// Sets the version after storage accepted a write. Only repositories call this.
    pub fn set_version(&mut self, version: u64) {
        self.record.version = version;
    }

    /// What is still needed before payment can start.
    pub fn missing(&self) -> Vec<MissingField> {
        let mut missing = Vec::new();
        if self.record.cart.lines().is_empty() {
            missing.push(MissingField::Items);
        }
        if self.record.buyer.is_none() {
            missing.push(MissingField::Buyer);
        }
        if self.record.fulfillment.is_none() {
            missing.push(MissingField::Fulfillment);
        }
        missing
    }

    /// The call an agent should make next.
    pub fn next_step(&self) -> NextStep {
        match self.record.status {
            CheckoutStatus::Cart => NextStep::UpdateCheckout,
            CheckoutStatus::ReadyForPayment => NextStep::Complete,
            CheckoutStatus::Authorizing => NextStep::AwaitAuthorization,
            CheckoutStatus::Completed => NextStep::Done,
            CheckoutStatus::Cancelled | CheckoutStatus::Expired | CheckoutStatus::Failed => {
                NextStep::StartNewCheckout
            }
        }
    }

    /// Whether an unpaid checkout's time has run out at `now` (it then only awaits
    /// [`Checkout::expire`]).
    pub fn is_past_expiry(&self, now: DateTime<Utc>) -> bool {
        matches!(
            self.record.status,
            CheckoutStatus::Cart | CheckoutStatus::ReadyForPayment
        ) && now >= self.record.expires_at
    }

    /// Checks that an edit would be accepted now, before the store is asked to make it.
    pub fn ensure_editable(&self, now: DateTime<Utc>) -> Result<(), TransitionError> {
        self.ensure(
            Action::Edit,
            &[CheckoutStatus::Cart, CheckoutStatus::ReadyForPayment],
        )?;
        if self.is_past_expiry(now) {
            return Err(TransitionError::Expired);
        }
        Ok(())
    }

    /// Whether a request holds the claim to change the checkout at the store at `now`.
    pub fn is_being_edited(&self, now: DateTime<Utc>) -> bool {
        self.record.edit_lease.is_some_and(|until| until > now)
    }

    /// Claims the checkout for an edit before the store is asked to change the session:
    /// refused while payment is pending (the cart is frozen) or another edit holds the
    /// claim. Saved with compare-and-swap before the store call, so that an edit and a
    /// payment never both go ahead: whichever saves first wins, and the other is refused
    /// before it touches the store. The claim ends with [`Checkout::edit`] or
    /// [`Checkout::abandon_edit`], or after [`LEASE_SECS`].
    pub fn begin_edit(&mut self, now: DateTime<Utc>) -> Result<(), TransitionError> {
        self.ensure_editable(now)?;
        if self.is_being_edited(now) {
            return Err(TransitionError::EditInProgress);
        }
        self.record.edit_lease = Some(now + chrono::Duration::seconds(LEASE_SECS));
        self.record.updated_at = now;
        Ok(())
    }

    /// Gives up an edit claim (the store refused the change, or could not be reached).
    pub fn abandon_edit(&mut self, now: DateTime<Utc>) {
        if self.record.edit_lease.take().is_some() {
            self.record.updated_at = now;
        }
    }

    /// Applies an edit (as priced by the store), ending the edit claim. The status becomes
    /// `ready_for_payment` when items, buyer and fulfillment are all present, else `cart`.
    pub fn edit(
        &mut self,
        cart: Cart,
        buyer: Option<Buyer>,
        fulfillment: Option<Fulfillment>,
        now: DateTime<Utc>,
    ) -> Result<(), TransitionError> {
        self.ensure_editable(now)?;
        self.record.cart = cart;
        self.record.buyer = buyer;
        self.record.fulfillment = fulfillment;
        self.record.status = self.editable_status();
        self.record.edit_lease = None;
        self.record.updated_at = now;
        Ok(())
    }

    /// Checks that payment could start now and returns the exact amount it would be for.
    /// Refused while an edit holds its claim: the amount could still change at the store.
    pub fn ensure_payable(&self, now: DateTime<Utc>) -> Result<Money, TransitionError> {
        if self.record.status == CheckoutStatus::Cart {
            return Err(TransitionError::NotReady(self.missing()));
        }
        self.ensure(Action::StartPayment, &[CheckoutStatus::ReadyForPayment])?;
        if self.is_past_expiry(now) {
            return Err(TransitionError::Expired);
        }
        if self.is_being_edited(now) {
            return Err(TransitionError::EditInProgress);
        }
        Ok(self.record.cart.total())
    }

    /// Claims the placing of the order of the approved step-up `step_up_id`, so that of
    /// several pollers exactly one places it: refused with
    /// [`TransitionError::OrderBeingPlaced`] while another holds the claim ([`LEASE_SECS`]).
    pub fn claim_step_up_order(
        &mut self,
        step_up_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), TransitionError> {
        self.ensure(Action::Complete, &[CheckoutStatus::Authorizing])?;
        let holds = matches!(&self.record.hold, Some(PaymentHold::StepUp { step_up_id: id, .. }) if id == step_up_id);
        if !holds {
            return Err(TransitionError::AuthorizationMismatch);
        }
        if self.record.step_up_lease.is_some_and(|until| until > now) {
            return Err(TransitionError::OrderBeingPlaced);
        }
        self.record.step_up_lease = Some(now + chrono::Duration::seconds(LEASE_SECS));
        self.record.updated_at = now;
        Ok(())
    }

    /// Gives up the claim on a step-up's order (the attempt failed for now: a later poll tries
    /// again).
    pub fn release_step_up_claim(&mut self, now: DateTime<Utc>) {
        if self.record.step_up_lease.take().is_some() {
            self.record.updated_at = now;
        }
    }

    /// Ends the step-up `hold` without an order — rejected, expired, or failed for `reason`
    /// — and gives the checkout back for a new payment (`authorizing` → `ready_for_payment`).
    /// The outcome stays on the checkout until the next payment starts.
    pub fn end_step_up(
        &mut self,
        hold: &PaymentHold,
        outcome: StepUpEnd,
        reason: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), TransitionError> {
        let PaymentHold::StepUp { step_up_id, .. } = hold else {
            return Err(TransitionError::AuthorizationMismatch);
        };
        let step_up_id = step_up_id.clone();
        self.release_authorization(hold, now)?;
        self.record.ended_step_up = Some(EndedStepUp {
            step_up_id,
            outcome,
            reason: reason.map(str::to_owned),
        });
        Ok(())
    }

    /// How the last step-up ended without an order, until the next payment starts.
    pub fn ended_step_up(&self) -> Option<&EndedStepUp> {
        self.record.ended_step_up.as_ref()
    }

    /// Starts a payment authorization: `ready_for_payment` → `authorizing`, freezing the
    /// cart. The hold's amount must be the exact cart total.
    pub fn begin_authorization(
        &mut self,
        hold: PaymentHold,
        now: DateTime<Utc>,
    ) -> Result<(), TransitionError> {
        let total = self.ensure_payable(now)?;
        if hold.amount() != total {
            return Err(TransitionError::AuthorizationMismatch);
        }
        self.record.hold = Some(hold);
        self.record.status = CheckoutStatus::Authorizing;
        self.record.ended_step_up = None;
        self.record.updated_at = now;
        Ok(())
    }

    /// Places the order after the pending authorization `hold` was approved:
    /// `authorizing` → `completed`.
    pub fn complete_authorized(
        &mut self,
        hold: &PaymentHold,
        order: OrderConfirmation,
        now: DateTime<Utc>,
    ) -> Result<(), TransitionError> {
        self.ensure_hold(Action::Complete, hold)?;
        self.record.hold = None;
        self.record.step_up_lease = None;
        self.record.order = Some(order);
        self.record.status = CheckoutStatus::Completed;
        self.record.updated_at = now;
        Ok(())
    }

    /// Places the order on the user-token path without a pending authorization:
    /// `ready_for_payment` → `completed`.
    pub fn complete_direct(
        &mut self,
        order: OrderConfirmation,
        now: DateTime<Utc>,
    ) -> Result<(), TransitionError> {
        self.ensure(Action::Complete, &[CheckoutStatus::ReadyForPayment])?;
        if self.is_past_expiry(now) {
            return Err(TransitionError::Expired);
        }
        self.record.order = Some(order);
        self.record.status = CheckoutStatus::Completed;
        self.record.updated_at = now;
        Ok(())
    }

    /// Ends the pending authorization without an order (rejected or expired):
    /// `authorizing` → `ready_for_payment`, so a new payment can be started.
    pub fn release_authorization(
        &mut self,
        hold: &PaymentHold,
        now: DateTime<Utc>,
    ) -> Result<(), TransitionError> {
        self.ensure_hold(Action::ReleaseAuthorization, hold)?;
        self.record.hold = None;
        self.record.step_up_lease = None;
        self.record.status = CheckoutStatus::ReadyForPayment;
        self.record.updated_at = now;
        Ok(())
    }

    /// Payment or order placement failed for good: `authorizing` → `failed`.
    pub fn fail(
        &mut self,
        hold: &PaymentHold,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<(), TransitionError> {
        self.ensure_hold(Action::Fail, hold)?;
        self.record.hold = None;
        self.record.step_up_lease = None;
        self.record.failure = Some(reason.to_owned());
        self.record.status = CheckoutStatus::Failed;
        self.record.updated_at = now;
        Ok(())
    }

    /// Cancels: allowed from `cart`, `ready_for_payment` and `authorizing` (a later approval
    /// must then charge nothing). Returns the hold that was pending, if any.
    pub fn cancel(&mut self, now: DateTime<Utc>) -> Result<Option<PaymentHold>, TransitionError> {
        self.ensure(
            Action::Cancel,
            &[
                CheckoutStatus::Cart,
                CheckoutStatus::ReadyForPayment,
                CheckoutStatus::Authorizing,
            ],
        )?;
        self.record.status = CheckoutStatus::Cancelled;
        self.record.step_up_lease = None;
        self.record.edit_lease = None;
        self.record.updated_at = now;
        Ok(self.record.hold.take())
    }

    /// Times out an unpaid checkout whose expiry has passed.
    pub fn expire(&mut self, now: DateTime<Utc>) -> Result<(), TransitionError> {
        self.ensure(
            Action::Expire,
            &[CheckoutStatus::Cart, CheckoutStatus::ReadyForPayment],
        )?;
        if !self.is_past_expiry(now) {
            return Err(TransitionError::NotAllowed {
                action: Action::Expire,
                status: self.record.status,
            });
        }
        self.record.status = CheckoutStatus::Expired;
        self.record.updated_at = now;
        Ok(())
    }

    fn editable_status(&self) -> CheckoutStatus {
        if self.missing().is_empty() {
            CheckoutStatus::ReadyForPayment
        } else {
            CheckoutStatus::Cart
        }
    }

    fn ensure(&self, action: Action, allowed: &[CheckoutStatus]) -> Result<(), TransitionError> {
        if allowed.contains(&self.record.status) {
            Ok(())
        } else {
            Err(TransitionError::NotAllowed {
                action,
                status: self.record.status,
            })
        }
    }

    fn ensure_hold(&self, action: Action, hold: &PaymentHold) -> Result<(), TransitionError> {
        self.ensure(action, &[CheckoutStatus::Authorizing])?;
        if self.record.hold.as_ref() == Some(hold) {
            Ok(())
        } else {
            Err(TransitionError::AuthorizationMismatch)
        }
    }

    /// The invariants every reachable state satisfies.
    pub fn check_invariants(&self) -> Result<(), InvariantViolation> {
        let r = &self.record;
        let cart = &r.cart;
        if Cart::from_reported(
            cart.lines().to_vec(),
            cart.subtotal(),
            cart.tax(),
            cart.shipping(),
            cart.total(),
        )
        .is_err()
        {
            return Err(InvariantViolation("the cart's totals add up"));
        }
        let ready_data = self.missing().is_empty();
        match r.status {
            CheckoutStatus::Cart if ready_data => {
                return Err(InvariantViolation("cart status with nothing missing"));
            }
            CheckoutStatus::ReadyForPayment | CheckoutStatus::Authorizing if !ready_data => {
                return Err(InvariantViolation("payable status with data missing"));
            }
            _ => {}
        }
        if (r.status == CheckoutStatus::Authorizing) != r.hold.is_some() {
            return Err(InvariantViolation(
                "a hold exists exactly while authorizing",
            ));
        }
        if let Some(hold) = &r.hold
            && hold.amount() != r.cart.total()
        {
            return Err(InvariantViolation("the hold amount is the cart total"));
        }
        if (r.status == CheckoutStatus::Completed) != r.order.is_some() {
            return Err(InvariantViolation("an order exists exactly once completed"));
        }
        if r.payer.is_some() && r.status != CheckoutStatus::Completed {
            return Err(InvariantViolation("only a completed checkout has a payer"));
        }
        if r.step_up_lease.is_some() && !matches!(r.hold, Some(PaymentHold::StepUp { .. })) {
            return Err(InvariantViolation(
                "a step-up claim exists only with a step-up",
            ));
        }
        if (r.status == CheckoutStatus::Failed) != r.failure.is_some() {
            return Err(InvariantViolation(
                "a failure reason exists exactly once failed",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::ids::RandomSource;
    use crate::money::Currency;
    use crate::validation::{Address, Email};
    use chrono::TimeZone;
    use proptest::prelude::*;

    pub(crate) struct Fixed(pub u8);
    impl RandomSource for Fixed {
        fn fill_bytes(&self, dest: &mut [u8]) {
            dest.fill(self.0);
        }
    }

    pub(crate) fn t(seconds: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + seconds, 0).unwrap()
    }

    fn cad(minor: i64) -> Money {
        Money::from_minor(minor, Currency::CAD)
    }

    #[test]
    fn only_what_ended_before_the_cutoff_is_retirable() {
        use CheckoutStatus as S;
        let (changed, expires) = (t(10), t(100));
        for ended in [S::Completed, S::Cancelled, S::Expired, S::Failed] {
            assert!(retirable(ended, changed, expires, t(11)), "{ended}");
            assert!(
                !retirable(ended, changed, expires, t(10)),
                "{ended} at the cutoff"
            );
        }
        for open in [S::Cart, S::ReadyForPayment] {
            assert!(
                !retirable(open, changed, expires, t(50)),
                "{open} still open"
            );
            assert!(
                retirable(open, changed, expires, t(101)),
                "{open} left to expire"
            );
        }
        assert!(
            !retirable(S::Authorizing, changed, expires, t(10_000)),
            "a checkout waiting for a payment is kept until its authorization ends"
        );
    }

    pub(crate) fn cart(quantity: u8) -> Cart {
        let unit = cad(1899);
        let line_total = unit.checked_mul(u32::from(quantity)).unwrap();
        let tax = cad((line_total.minor_units() * 13 + 50) / 100);
        Cart::new(
            vec![LineItem {
                product_id: ProductId::parse("eth-yirga").unwrap(),
                name: "Ethiopian Yirgacheffe".into(),
                quantity: Quantity::parse(i64::from(quantity)).unwrap(),
                unit_price: unit,
                line_total,
            }],
            tax,
            None,
        )
        .unwrap()
    }

    fn buyer() -> Buyer {
        Buyer {
            name: "John Doe".into(),
            email: Email::parse("john@example.com").unwrap(),
            phone: None,
        }
    }

    fn shipping() -> Fulfillment {
        Fulfillment::Shipping {
            address: Address {
                street: "123 Main St".into(),
                city: "Toronto".into(),
                state: "ON".into(),
                postal_code: "M5V 1A1".into(),
                country: "CA".into(),
            },
        }
    }

    fn new_checkout() -> Checkout {
        Checkout::open(
            "acme",
            CheckoutId::generate(&Fixed(1)),
            StoreSessionId("sess_1".into()),
            cart(1),
            None,
            None,
            t(0),
            t(1800),
        )
    }

    fn device_hold(amount: Money) -> PaymentHold {
        PaymentHold::Device {
            authorization_id: PaymentAuthorizationId::generate(&Fixed(2)),
            amount,
        }
    }

    #[test]
    fn seed_cart_totals_21_46() {
        let cart = cart(1);
        assert_eq!(cart.subtotal(), cad(1899));
        assert_eq!(cart.tax(), cad(247));
        assert_eq!(cart.total(), cad(2146));
    }

    #[test]
    fn reported_figures_must_add_up() {
        let c = cart(2);
        let lines = c.lines().to_vec();
        assert!(Cart::from_reported(lines.clone(), c.subtotal(), c.tax(), None, c.total()).is_ok());
        // A stored record whose totals were tampered with is refused on restore.
        let mut record = new_checkout().record().clone();
        let mut json = serde_json::to_value(&record.cart).unwrap();
        json["total"]["amount"] = serde_json::json!(1);
        record.cart = serde_json::from_value(json).unwrap();
        assert!(Checkout::restore(record).is_err());
        assert_eq!(
            Cart::from_reported(lines.clone(), c.subtotal(), c.tax(), None, cad(1)),
            Err(CartError::TotalMismatch)
        );
        assert_eq!(
            Cart::from_reported(lines, cad(5), c.tax(), None, c.total()),
            Err(CartError::SubtotalMismatch)
        );
    }

    #[test]
    fn becomes_ready_once_buyer_and_fulfillment_are_present() {
        let mut checkout = new_checkout();
        assert_eq!(checkout.status(), CheckoutStatus::Cart);
        assert_eq!(
            checkout.missing(),
            vec![MissingField::Buyer, MissingField::Fulfillment]
        );
        assert_eq!(checkout.next_step(), NextStep::UpdateCheckout);
        checkout.edit(cart(1), Some(buyer()), None, t(1)).unwrap();
        assert_eq!(checkout.status(), CheckoutStatus::Cart);
        checkout
            .edit(cart(1), Some(buyer()), Some(shipping()), t(2))
            .unwrap();
        assert_eq!(checkout.status(), CheckoutStatus::ReadyForPayment);
        assert_eq!(checkout.next_step(), NextStep::Complete);
        // An edit that removes required data goes back to cart.
        checkout
            .edit(cart(1), None, Some(shipping()), t(3))
            .unwrap();
        assert_eq!(checkout.status(), CheckoutStatus::Cart);
    }

    #[test]
    fn cart_is_frozen_while_authorizing_and_the_hold_is_the_total() {
        let mut checkout = new_checkout();
        checkout
            .edit(cart(1), Some(buyer()), Some(shipping()), t(1))
            .unwrap();
        assert_eq!(
            checkout.begin_authorization(device_hold(cad(100)), t(2)),
            Err(TransitionError::AuthorizationMismatch)
        );
        let hold = device_hold(cad(2146));
        checkout.begin_authorization(hold.clone(), t(2)).unwrap();
        let refused = checkout.edit(cart(3), Some(buyer()), Some(shipping()), t(3));
        assert!(matches!(
            refused,
            Err(TransitionError::NotAllowed {
                action: Action::Edit,
                status: CheckoutStatus::Authorizing
            })
        ));
        assert!(refused.unwrap_err().to_string().contains("frozen"));
        assert_eq!(checkout.cart().total(), cad(2146));
        checkout
            .complete_authorized(
                &hold,
                OrderConfirmation {
                    order_id: "ord_1".into(),
                    transaction_id: "txn_1".into(),
                },
                t(4),
            )
            .unwrap();
        assert_eq!(checkout.status(), CheckoutStatus::Completed);
        assert!(
            checkout
                .cancel(t(5))
                .unwrap_err()
                .to_string()
                .contains("no longer be cancelled")
        );
    }

    #[test]
    fn payment_cannot_start_with_data_missing() {
        let checkout = new_checkout();
        assert_eq!(
            checkout.ensure_payable(t(1)),
            Err(TransitionError::NotReady(vec![
                MissingField::Buyer,
                MissingField::Fulfillment
            ]))
        );
    }

    #[test]
    fn expiry_applies_only_to_unpaid_checkouts_past_their_time() {
        let mut checkout = new_checkout();
        assert!(checkout.expire(t(10)).is_err());
        assert_eq!(
            checkout.ensure_editable(t(1800)),
            Err(TransitionError::Expired)
        );
        checkout.expire(t(1800)).unwrap();
        assert_eq!(checkout.status(), CheckoutStatus::Expired);
        assert_eq!(checkout.next_step(), NextStep::StartNewCheckout);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Edit {
            quantity: u8,
            buyer: bool,
            fulfillment: bool,
        },
        Begin {
            exact: bool,
        },
        CompleteHeld,
        CompleteDirect,
        Release,
        Fail,
        Cancel,
        Expire,
        Advance(i64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (1u8..5, any::<bool>(), any::<bool>()).prop_map(|(quantity, buyer, fulfillment)| {
                Op::Edit {
                    quantity,
                    buyer,
                    fulfillment,
                }
            }),
            any::<bool>().prop_map(|exact| Op::Begin { exact }),
            Just(Op::CompleteHeld),
            Just(Op::CompleteDirect),
            Just(Op::Release),
            Just(Op::Fail),
            Just(Op::Cancel),
            Just(Op::Expire),
            (0i64..1000).prop_map(Op::Advance),
        ]
    }

    proptest! {
        #[test]
        fn no_sequence_of_operations_reaches_an_illegal_state(ops in prop::collection::vec(op(), 1..40)) {
            let mut checkout = new_checkout();
            let mut now = t(0);
            let order = OrderConfirmation { order_id: "o".into(), transaction_id: "x".into() };
            for op in ops {
                let before = checkout.clone();
                let held = checkout.hold().cloned();
                let result = match op {
                    Op::Edit { quantity, buyer: b, fulfillment: f } => checkout
                        .edit(cart(quantity), b.then(buyer), f.then(shipping), now),
                    Op::Begin { exact } => {
                        let amount = if exact { checkout.cart().total() } else { cad(1) };
                        checkout.begin_authorization(device_hold(amount), now)
                    }
                    Op::CompleteHeld => match &held {
                        Some(hold) => checkout.complete_authorized(hold, order.clone(), now),
                        None => checkout.complete_authorized(&device_hold(cad(2146)), order.clone(), now),
                    },
                    Op::CompleteDirect => checkout.complete_direct(order.clone(), now),
                    Op::Release => match &held {
                        Some(hold) => checkout.release_authorization(hold, now),
                        None => checkout.release_authorization(&device_hold(cad(2146)), now),
                    },
                    Op::Fail => match &held {
                        Some(hold) => checkout.fail(hold, "declined", now),
                        None => checkout.fail(&device_hold(cad(2146)), "declined", now),
                    },
                    Op::Cancel => checkout.cancel(now).map(|_| ()),
                    Op::Expire => checkout.expire(now),
                    Op::Advance(seconds) => {
                        now += chrono::Duration::seconds(seconds);
                        Ok(())
                    }
                };
                prop_assert!(checkout.check_invariants().is_ok(), "{:?}", checkout.check_invariants());
                if result.is_err() {
                    prop_assert_eq!(&checkout, &before, "a refused transition changes nothing");
                }
                if before.status().is_terminal() {
                    prop_assert_eq!(checkout.status(), before.status(), "terminal states are final");
                }
                if before.status() == CheckoutStatus::Authorizing {
                    prop_assert_eq!(checkout.cart(), before.cart(), "the cart is frozen while authorizing");
                }
                prop_assert!(Checkout::restore(checkout.record().clone()).is_ok());
            }
        }

        #[test]
        fn totals_equal_lines_plus_tax_plus_shipping(
            lines in prop::collection::vec((0i64..1_000_000, 1u8..=99), 0..50),
            tax in 0i64..1_000_000,
            shipping in prop::option::of(0i64..100_000),
        ) {
            let lines: Vec<LineItem> = lines.iter().enumerate().map(|(i, (unit, quantity))| LineItem {
                product_id: ProductId::parse(&format!("p{i}")).unwrap(),
                name: format!("Product {i}"),
                quantity: Quantity::parse(i64::from(*quantity)).unwrap(),
                unit_price: cad(*unit),
                line_total: cad(unit * i64::from(*quantity)),
            }).collect();
            let expected: i64 = lines.iter().map(|l| l.line_total.minor_units()).sum::<i64>()
                + tax + shipping.unwrap_or(0);
            let cart = Cart::new(lines, cad(tax), shipping.map(cad)).unwrap();
            prop_assert_eq!(cart.total(), cad(expected));
            prop_assert_eq!(
                cart.subtotal().checked_add(cart.tax()).unwrap()
                    .checked_add(cart.shipping().unwrap_or(cad(0))).unwrap(),
                cart.total()
            );
        }
    }
}
