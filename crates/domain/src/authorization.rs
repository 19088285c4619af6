//! The lifecycle of a guest payment authorization (RFC 8628 device authorization).
//!
//! ```text
//! pending ──approve──▶ approved ◀──retry_later── charging ──consume──▶ consumed (order placed)
//!    │                    └──────claim────────▶     │
//!    ├──reject──▶ rejected                          └──fail(reason)──▶ failed
//!    ├──expire──▶ expired
//!    └──cancel──▶ cancelled   (from any state that is not final)
//! ```
//!
//! Before approval, polling follows RFC 8628 §3.5: the wallet is asked no more often than
//! `interval`; a `slow_down` answer adds 5 seconds to the interval for good. The wallet is
//! polled at its interval while an approval is likely — the first
//! [`EAGER_POLLING_SECS`], and whenever the agent is watching ([`PaymentAuthorization::watched`])
//! — and otherwise ever less often toward the code's expiry (RFC 8628 lets a client poll
//! slower), so an abandoned checkout costs the wallet some twenty polls, not one every
//! interval for fifteen minutes. After approval
//! the charge has a deadline ([`CHARGE_WINDOW_SECS`]) and a budget ([`MAX_CHARGE_ATTEMPTS`]):
//! each attempt is claimed (`charging`, with a lease), a transient failure waits a growing
//! backoff, a permanent one fails at once with its reason, and once the deadline or the
//! budget is spent only a last check that the order was not placed remains
//! ([`Work::Conclude`]). Time is always passed in.

use std::fmt;

use chrono::{DateTime, Duration, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use crate::checkout::PaymentHold;
use crate::ids::{CheckoutId, PaymentAuthorizationId};
use crate::money::Money;

/// Seconds RFC 8628 §3.5 adds to the polling interval on every `slow_down`.
pub const SLOW_DOWN_STEP_SECS: u32 = 5;
/// Interval used when the wallet does not send one (RFC 8628 §3.2 default).
pub const DEFAULT_INTERVAL_SECS: u32 = 5;
/// How long a claimed charge attempt keeps other workers away from an approved
/// authorization (longer than any upstream timeout, so attempts never overlap).
pub const CHARGE_LEASE_SECS: i64 = 30;
/// How long after the approval the order may still be placed; past it, nothing more is
/// asked of the wallet.
pub const CHARGE_WINDOW_SECS: i64 = 600;
/// Most charge attempts for one approval (each may ask the wallet for a payment token, and
/// for the approval again when it was collected elsewhere).
pub const MAX_CHARGE_ATTEMPTS: u32 = 5;
/// Wait before the second attempt; it triples for each one after (5 s, 15 s, 45 s, …).
pub const FIRST_BACKOFF_SECS: i64 = 5;
/// How long after the request the wallet is polled at its interval: the person usually
/// approves right after getting the link.
pub const EAGER_POLLING_SECS: i64 = 60;
/// After that, the wait between polls is this fraction of the request's age (at least the
/// interval)…
pub const BACKOFF_AGE_DIVISOR: i32 = 4;
/// …and at most this long.
pub const MAX_POLL_GAP_SECS: i64 = 120;

/// Why an approved payment failed: the stable codes an agent reads in a payment status.
pub mod failure {
    /// The person's wallet has no active card.
    pub const NO_PAYMENT_METHOD: &str = "no_payment_method";
    /// The store's payment was declined.
    pub const DECLINED: &str = "declined";
    /// The amount is above what the wallet lets the approval spend.
    pub const OVER_WALLET_LIMIT: &str = "over_wallet_limit";
    /// The approval could not be collected from the wallet again (its code expired).
    pub const APPROVAL_EXPIRED: &str = "approval_expired";
    /// The order could not be placed before the deadline or within the attempts.
    pub const ORDER_NOT_PLACED: &str = "order_not_placed";
    /// The wallet refused the token the approval gave (revoked meanwhile).
    pub const WALLET_TOKEN_REFUSED: &str = "wallet_token_refused";
    /// The store refused the person's wallet token.
    pub const STORE_REFUSED_TOKEN: &str = "store_refused_token";
}

/// The work a claim reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// Poll the wallet once.
    Poll,
    /// Get a payment token and place the order (attempt number `attempt`, from 1).
    Charge {
        /// Which attempt this is.
        attempt: u32,
    },
    /// The deadline or the attempt budget is spent: only check whether an earlier attempt
    /// placed the order, and end the authorization either way (no wallet call).
    Conclude,
}

/// The wallet's device code: a secret that lets its holder collect the person's approval.
/// It never leaves the gateway (no response, URL or log) and prints as `***`.
#[derive(Clone)]
pub struct DeviceCode(SecretString);

impl DeviceCode {
    /// Wraps a device code received from the wallet.
    pub fn new(code: String) -> DeviceCode {
        DeviceCode(SecretString::from(code))
    }

    /// The code itself, for the one call that sends it back to the wallet and for storage.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for DeviceCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DeviceCode(***)")
    }
}

impl PartialEq for DeviceCode {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for DeviceCode {}

/// What the wallet returned when the device authorization was started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceGrant {
    /// Secret code the gateway polls with.
    pub device_code: DeviceCode,
    /// Short code the person types in the wallet (e.g. `WSIM-3TY6VX`).
    pub user_code: String,
    /// Page where the person enters the code.
    pub verification_uri: String,
    /// The same page with the code filled in.
    pub verification_uri_complete: String,
    /// Lifetime of the codes, in seconds.
    pub expires_in: u32,
    /// Minimum seconds between polls, if the wallet sent one.
    pub interval: Option<u32>,
    /// Whether the wallet notified the buyer (when an email was given).
    pub notification_sent: bool,
}

/// Where an authorization is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthorizationStatus {
    /// Waiting for the person.
    Pending,
    /// The person approved; the order is to be placed (the next attempt is due at
    /// `next_poll_at`).
    Approved,
    /// The person approved and an attempt to place the order holds the lease until
    /// `next_poll_at`.
    Charging,
    /// The approval was used: the order is placed. Terminal.
    Consumed,
    /// The person rejected it. Terminal.
    Rejected,
    /// Nobody acted in time. Terminal.
    Expired,
    /// The checkout was cancelled; any approval charges nothing. Terminal.
    Cancelled,
    /// The payment or order placement failed. Terminal.
    Failed,
}

impl AuthorizationStatus {
    /// Wire and storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthorizationStatus::Pending => "pending",
            AuthorizationStatus::Approved => "approved",
            AuthorizationStatus::Charging => "charging",
            AuthorizationStatus::Consumed => "consumed",
            AuthorizationStatus::Rejected => "rejected",
            AuthorizationStatus::Expired => "expired",
            AuthorizationStatus::Cancelled => "cancelled",
            AuthorizationStatus::Failed => "failed",
        }
    }

    /// Parses a storage name.
    pub fn parse(text: &str) -> Option<AuthorizationStatus> {
        [
            AuthorizationStatus::Pending,
            AuthorizationStatus::Approved,
            AuthorizationStatus::Charging,
            AuthorizationStatus::Consumed,
            AuthorizationStatus::Rejected,
            AuthorizationStatus::Expired,
            AuthorizationStatus::Cancelled,
            AuthorizationStatus::Failed,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }

    /// Whether the authorization can change no more.
    pub fn is_terminal(self) -> bool {
        !matches!(
            self,
            AuthorizationStatus::Pending
                | AuthorizationStatus::Approved
                | AuthorizationStatus::Charging
        )
    }
}

/// What an agent polling the payment status is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    /// Waiting for the person.
    Pending,
    /// The person approved; the order is being placed.
    Approved,
    /// The order is placed.
    Completed,
    /// The person rejected the payment.
    Rejected,
    /// Nobody approved in time.
    Expired,
    /// The checkout was cancelled.
    Cancelled,
    /// The payment failed.
    Failed,
}

impl PaymentStatus {
    /// Wire name: `pending`, `approved`, `completed`, `rejected`, `expired`, `cancelled`,
    /// `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Pending => "pending",
            PaymentStatus::Approved => "approved",
            PaymentStatus::Completed => "completed",
            PaymentStatus::Rejected => "rejected",
            PaymentStatus::Expired => "expired",
            PaymentStatus::Cancelled => "cancelled",
            PaymentStatus::Failed => "failed",
        }
    }
}

/// A transition of the authorization lifecycle that is not allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("payment authorization is {from:?}; cannot {action}")]
pub struct AuthorizationTransitionError {
    /// The state it was in.
    pub from: AuthorizationStatus,
    /// What was attempted.
    pub action: &'static str,
}

/// Plain data of an authorization, for storage. [`PaymentAuthorization::restore`] reads it
/// back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationRecord {
    /// The gateway's id (`par_...`), what agents poll with.
    pub id: PaymentAuthorizationId,
    /// The checkout being paid.
    pub checkout_id: CheckoutId,
    /// The wallet's secret device code.
    pub device_code: DeviceCode,
    /// Code shown to the person.
    pub user_code: String,
    /// Where the person enters the code.
    pub verification_uri: String,
    /// The same with the code filled in.
    pub verification_uri_complete: String,
    /// Exact amount the person approves and is charged.
    pub amount: Money,
    /// Current state.
    pub status: AuthorizationStatus,
    /// Seconds between polls of the wallet (grows by 5 on every `slow_down`).
    pub interval_secs: u32,
    /// Earliest time of the next poll.
    pub next_poll_at: DateTime<Utc>,
    /// Whether the wallet notified the buyer.
    pub notification_sent: bool,
    /// When it was started.
    pub created_at: DateTime<Utc>,
    /// When the codes stop working.
    pub expires_at: DateTime<Utc>,
    /// When the person approved.
    pub approved_at: Option<DateTime<Utc>>,
    /// After approval: the time by which the order must be placed.
    pub charge_deadline: Option<DateTime<Utc>>,
    /// Charge attempts started.
    pub attempts: u32,
    /// Why it failed (a stable code such as `no_payment_method`), once `failed`.
    pub failure: Option<String>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Compare-and-swap version; 0 before the first save.
    pub version: u64,
}

/// A guest payment authorization for one checkout and one exact amount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentAuthorization {
    record: AuthorizationRecord,
}

impl PaymentAuthorization {
    /// Starts tracking a device authorization the wallet granted at `now`.
    pub fn start(
        id: PaymentAuthorizationId,
        checkout_id: CheckoutId,
        grant: DeviceGrant,
        amount: Money,
        now: DateTime<Utc>,
    ) -> PaymentAuthorization {
        let interval_secs = grant.interval.unwrap_or(DEFAULT_INTERVAL_SECS).max(1);
        PaymentAuthorization {
            record: AuthorizationRecord {
                id,
                checkout_id,
                device_code: grant.device_code,
                user_code: grant.user_code,
                verification_uri: grant.verification_uri,
                verification_uri_complete: grant.verification_uri_complete,
                amount,
                status: AuthorizationStatus::Pending,
                interval_secs,
                next_poll_at: now + Duration::seconds(i64::from(interval_secs)),
                notification_sent: grant.notification_sent,
                created_at: now,
                expires_at: now + Duration::seconds(i64::from(grant.expires_in)),
                approved_at: None,
                charge_deadline: None,
                attempts: 0,
                failure: None,
                updated_at: now,
                version: 0,
            },
        }
    }

    /// Restores an authorization from storage.
    pub fn restore(record: AuthorizationRecord) -> PaymentAuthorization {
        PaymentAuthorization { record }
    }

    /// The plain data, for storage.
    pub fn record(&self) -> &AuthorizationRecord {
        &self.record
    }
    /// The gateway's id.
    pub fn id(&self) -> &PaymentAuthorizationId {
        &self.record.id
    }
    /// The checkout being paid.
    pub fn checkout_id(&self) -> &CheckoutId {
        &self.record.checkout_id
    }
    /// The wallet's secret device code.
    pub fn device_code(&self) -> &DeviceCode {
        &self.record.device_code
    }
    /// Code shown to the person.
    pub fn user_code(&self) -> &str {
        &self.record.user_code
    }
    /// Where the person enters the code.
    pub fn verification_uri(&self) -> &str {
        &self.record.verification_uri
    }
    /// The verification page with the code filled in.
    pub fn verification_uri_complete(&self) -> &str {
        &self.record.verification_uri_complete
    }
    /// Exact amount.
    pub fn amount(&self) -> Money {
        self.record.amount
    }
    /// Current state.
    pub fn status(&self) -> AuthorizationStatus {
        self.record.status
    }
    /// Current polling interval in seconds.
    pub fn interval_secs(&self) -> u32 {
        self.record.interval_secs
    }
    /// Earliest time of the next poll.
    pub fn next_poll_at(&self) -> DateTime<Utc> {
        self.record.next_poll_at
    }
    /// Whether the wallet notified the buyer.
    pub fn notification_sent(&self) -> bool {
        self.record.notification_sent
    }
    /// When the codes stop working.
    pub fn expires_at(&self) -> DateTime<Utc> {
        self.record.expires_at
    }
    /// When it was started.
    pub fn created_at(&self) -> DateTime<Utc> {
        self.record.created_at
    }
    /// When it last changed (for an ended one: when it ended).
    pub fn updated_at(&self) -> DateTime<Utc> {
        self.record.updated_at
    }
    /// When the person approved, once they did.
    pub fn approved_at(&self) -> Option<DateTime<Utc>> {
        self.record.approved_at
    }
    /// Charge attempts started.
    pub fn attempts(&self) -> u32 {
        self.record.attempts
    }
    /// Why it failed, once failed.
    pub fn failure(&self) -> Option<&str> {
        self.record.failure.as_deref()
    }
    /// Whether the person approved (the order is being placed, or was).
    pub fn is_approved(&self) -> bool {
        matches!(
            self.record.status,
            AuthorizationStatus::Approved | AuthorizationStatus::Charging
        )
    }
    /// Compare-and-swap version (see [`crate::checkout::Checkout::version`]).
    pub fn version(&self) -> u64 {
        self.record.version
    }
    /// Sets the version after storage accepted a write. Only repositories call this.
    pub fn set_version(&mut self, version: u64) {
        self.record.version = version;
    }

    /// The hold this authorization places on its checkout.
    pub fn hold(&self) -> PaymentHold {
        PaymentHold::Device {
            authorization_id: self.record.id.clone(),
            amount: self.record.amount,
        }
    }

    /// Whole seconds left before the codes expire (0 once past).
    pub fn expires_in(&self, now: DateTime<Utc>) -> u64 {
        u64::try_from((self.record.expires_at - now).num_seconds()).unwrap_or(0)
    }

    /// Whether the codes have expired at `now`.
    pub fn is_past_expiry(&self, now: DateTime<Utc>) -> bool {
        now >= self.record.expires_at
    }

    /// Whether the background driver has work to do on this authorization at `now`: a
    /// pending one whose poll time has come (or whose expiry passed), an approved one whose
    /// next attempt is due, or a charging one whose attempt's lease ran out (its worker died).
    pub fn is_due(&self, now: DateTime<Utc>) -> bool {
        match self.record.status {
            AuthorizationStatus::Pending => {
                now >= self.record.next_poll_at || self.is_past_expiry(now)
            }
            AuthorizationStatus::Approved | AuthorizationStatus::Charging => {
                now >= self.record.next_poll_at
            }
            _ => false,
        }
    }

    /// Whether the charge may no longer be tried: its deadline passed or its attempts are
    /// spent.
    fn charge_spent(&self, now: DateTime<Utc>) -> bool {
        self.record.attempts >= MAX_CHARGE_ATTEMPTS
            || self.record.charge_deadline.is_some_and(|d| now >= d)
    }

    /// Reserves the next piece of work: for a pending authorization one poll of the wallet
    /// (the next is then one interval away); after approval a charge attempt, or once the
    /// deadline or the budget is spent the final check — either way `charging`, with a lease
    /// of [`CHARGE_LEASE_SECS`]. Refused unless due. Saving the claim with compare-and-swap
    /// before acting is what keeps several workers or replicas from polling inside one
    /// interval or charging twice at once.
    pub fn claim(&mut self, now: DateTime<Utc>) -> Result<Work, AuthorizationTransitionError> {
        if !self.is_due(now) {
            return Err(self.refuse("claim work now"));
        }
        let work = match self.record.status {
            AuthorizationStatus::Pending => {
                self.record.next_poll_at = self.next_poll_after(now);
                Work::Poll
            }
            AuthorizationStatus::Approved | AuthorizationStatus::Charging => {
                let work = if self.charge_spent(now) {
                    Work::Conclude
                } else {
                    self.record.attempts += 1;
                    Work::Charge {
                        attempt: self.record.attempts,
                    }
                };
                self.record.status = AuthorizationStatus::Charging;
                self.record.next_poll_at = now + Duration::seconds(CHARGE_LEASE_SECS);
                work
            }
            _ => return Err(self.refuse("claim work now")),
        };
        self.record.updated_at = now;
        Ok(work)
    }

    /// A charge attempt failed in a way that may pass (the wallet or the store unreachable,
    /// the card issuer failing): the next attempt waits a backoff that triples each time,
    /// and never starts after the deadline (the final check is then due instead).
    pub fn retry_later(&mut self, now: DateTime<Utc>) -> Result<(), AuthorizationTransitionError> {
        self.require(AuthorizationStatus::Charging, "retry the charge")?;
        let exponent = self.record.attempts.saturating_sub(1).min(8);
        let backoff = Duration::seconds(FIRST_BACKOFF_SECS * 3i64.pow(exponent));
        let next = now + backoff;
        // Up to the deadline, no wait runs past it (the final check is due then); after it,
        // the final check itself backs off.
        self.record.next_poll_at = match self.record.charge_deadline {
            Some(deadline) if deadline > now && next > deadline => deadline,
            _ => next,
        };
        self.record.status = AuthorizationStatus::Approved;
        self.record.updated_at = now;
        Ok(())
    }

    /// The wallet answered `slow_down`: the interval grows by 5 s for good (RFC 8628 §3.5).
    pub fn slow_down(&mut self, now: DateTime<Utc>) -> Result<(), AuthorizationTransitionError> {
        self.require(AuthorizationStatus::Pending, "slow down")?;
        self.record.interval_secs = self
            .record
            .interval_secs
            .saturating_add(SLOW_DOWN_STEP_SECS);
        self.record.next_poll_at = now + self.interval();
        self.record.updated_at = now;
        Ok(())
    }

    /// The person approved: the charge is due at once, and must succeed within
    /// [`CHARGE_WINDOW_SECS`].
    pub fn approve(&mut self, now: DateTime<Utc>) -> Result<(), AuthorizationTransitionError> {
        self.transition(
            AuthorizationStatus::Pending,
            AuthorizationStatus::Approved,
            "approve",
            now,
        )?;
        self.record.next_poll_at = now;
        self.record.approved_at = Some(now);
        self.record.charge_deadline = Some(now + Duration::seconds(CHARGE_WINDOW_SECS));
        Ok(())
    }

    /// The person rejected.
    pub fn reject(&mut self, now: DateTime<Utc>) -> Result<(), AuthorizationTransitionError> {
        self.transition(
            AuthorizationStatus::Pending,
            AuthorizationStatus::Rejected,
            "reject",
            now,
        )
    }

    /// Nobody acted in time (the wallet said `expired_token`, or the expiry passed).
    pub fn expire(&mut self, now: DateTime<Utc>) -> Result<(), AuthorizationTransitionError> {
        self.transition(
            AuthorizationStatus::Pending,
            AuthorizationStatus::Expired,
            "expire",
            now,
        )
    }

    /// The approval was used to place the order.
    pub fn consume(&mut self, now: DateTime<Utc>) -> Result<(), AuthorizationTransitionError> {
        if !self.is_approved() {
            return Err(self.refuse("consume"));
        }
        self.record.status = AuthorizationStatus::Consumed;
        self.record.updated_at = now;
        Ok(())
    }

    /// The approved payment cannot be completed, for `reason` (a stable code the agent can
    /// act on: `no_payment_method`, `declined`, `order_not_placed`…).
    pub fn fail(
        &mut self,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<(), AuthorizationTransitionError> {
        if !self.is_approved() {
            return Err(self.refuse("fail"));
        }
        self.record.status = AuthorizationStatus::Failed;
        self.record.failure = Some(reason.to_owned());
        self.record.updated_at = now;
        Ok(())
    }

    /// The checkout was cancelled: nothing may be charged any more.
    pub fn cancel(&mut self, now: DateTime<Utc>) -> Result<(), AuthorizationTransitionError> {
        if self.record.status.is_terminal() {
            return Err(self.refuse("cancel"));
        }
        self.record.status = AuthorizationStatus::Cancelled;
        self.record.updated_at = now;
        Ok(())
    }

    /// What an agent polling the payment status is told.
    pub fn payment_status(&self) -> PaymentStatus {
        match self.record.status {
            AuthorizationStatus::Pending => PaymentStatus::Pending,
            AuthorizationStatus::Approved | AuthorizationStatus::Charging => {
                PaymentStatus::Approved
            }
            AuthorizationStatus::Consumed => PaymentStatus::Completed,
            AuthorizationStatus::Rejected => PaymentStatus::Rejected,
            AuthorizationStatus::Expired => PaymentStatus::Expired,
            AuthorizationStatus::Cancelled => PaymentStatus::Cancelled,
            AuthorizationStatus::Failed => PaymentStatus::Failed,
        }
    }

    fn interval(&self) -> Duration {
        Duration::seconds(i64::from(self.record.interval_secs))
    }

    /// When a pending authorization polled at `now` is next polled: one interval on while
    /// an approval is likely, then a quarter of its age (between the interval and
    /// [`MAX_POLL_GAP_SECS`]); never after the code expires (then it is expired without
    /// asking the wallet).
    fn next_poll_after(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let age = now - self.record.created_at;
        let gap = if age < Duration::seconds(EAGER_POLLING_SECS) {
            self.interval()
        } else {
            // Whole seconds: a schedule a person (and a test clock) can follow.
            Duration::seconds(age.num_seconds() / i64::from(BACKOFF_AGE_DIVISOR))
                .max(self.interval())
                .min(Duration::seconds(MAX_POLL_GAP_SECS).max(self.interval()))
        };
        (now + gap).min(self.record.expires_at.max(now + self.interval()))
    }

    /// The agent is watching this payment (it read its status): while it is pending, the
    /// wallet is polled again within one interval, however far the backoff had moved the
    /// next poll. Returns whether anything changed (then it is to be saved).
    pub fn watched(&mut self, now: DateTime<Utc>) -> bool {
        let soon = now + self.interval();
        if self.record.status != AuthorizationStatus::Pending || self.record.next_poll_at <= soon {
            return false;
        }
        self.record.next_poll_at = soon;
        self.record.updated_at = now;
        true
    }

    fn transition(
        &mut self,
        from: AuthorizationStatus,
        to: AuthorizationStatus,
        action: &'static str,
        now: DateTime<Utc>,
    ) -> Result<(), AuthorizationTransitionError> {
        self.require(from, action)?;
        self.record.status = to;
        self.record.updated_at = now;
        Ok(())
    }

    fn require(
        &self,
        status: AuthorizationStatus,
        action: &'static str,
    ) -> Result<(), AuthorizationTransitionError> {
        if self.record.status == status {
            Ok(())
        } else {
            Err(self.refuse(action))
        }
    }

    fn refuse(&self, action: &'static str) -> AuthorizationTransitionError {
        AuthorizationTransitionError {
            from: self.record.status,
            action,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkout::tests::{Fixed, t};
    use crate::money::Currency;
    use proptest::prelude::*;

    fn grant(interval: Option<u32>) -> DeviceGrant {
        DeviceGrant {
            device_code: DeviceCode::new("dc-secret".into()),
            user_code: "WSIM-3TY6VX".into(),
            verification_uri: "https://wallet/m/device".into(),
            verification_uri_complete: "https://wallet/m/device?code=WSIM-3TY6VX".into(),
            expires_in: 900,
            interval,
            notification_sent: false,
        }
    }

    fn started(interval: Option<u32>) -> PaymentAuthorization {
        PaymentAuthorization::start(
            PaymentAuthorizationId::generate(&Fixed(3)),
            CheckoutId::generate(&Fixed(4)),
            grant(interval),
            Money::from_minor(2146, Currency::CAD),
            t(0),
        )
    }

    #[test]
    fn device_code_never_prints() {
        let auth = started(Some(5));
        let debug = format!("{auth:?}");
        assert!(!debug.contains("dc-secret"), "{debug}");
        assert!(debug.contains("***"));
    }

    #[test]
    fn polls_are_spaced_by_the_interval() {
        let mut auth = started(Some(5));
        assert!(!auth.is_due(t(4)));
        assert!(auth.claim(t(4)).is_err());
        assert!(auth.is_due(t(5)));
        auth.claim(t(5)).unwrap();
        assert!(
            !auth.is_due(t(9)),
            "a claimed poll pushes the next one an interval away"
        );
        assert!(auth.claim(t(9)).is_err());
        auth.claim(t(10)).unwrap();
    }

    #[test]
    fn slow_down_adds_five_seconds_for_good() {
        let mut auth = started(Some(5));
        auth.claim(t(5)).unwrap();
        auth.slow_down(t(5)).unwrap();
        assert_eq!(auth.interval_secs(), 10);
        assert_eq!(auth.next_poll_at(), t(15));
        auth.claim(t(15)).unwrap();
        assert_eq!(auth.next_poll_at(), t(25), "the larger interval stays");
        auth.slow_down(t(25)).unwrap();
        assert_eq!(auth.interval_secs(), 15);
    }

    /// Polls an abandoned authorization as the driver would, until it can only expire.
    fn polls_until_expiry(auth: &mut PaymentAuthorization) -> Vec<i64> {
        let mut polls = Vec::new();
        let mut now = auth.next_poll_at();
        while !auth.is_past_expiry(now) {
            auth.claim(now).expect("due");
            polls.push((now - t(0)).num_seconds());
            now = auth.next_poll_at();
        }
        polls
    }

    #[test]
    fn an_abandoned_request_is_polled_at_its_interval_first_then_ever_less_often() {
        let mut auth = started(Some(5));
        let polls = polls_until_expiry(&mut auth);
        assert!(polls.len() <= 30, "{} polls: {polls:?}", polls.len());
        let eager: Vec<i64> = polls.iter().copied().take_while(|s| *s <= 60).collect();
        assert_eq!(
            eager,
            (1..=12).map(|n| n * 5).collect::<Vec<_>>(),
            "every 5 s for a minute"
        );
        let gaps: Vec<i64> = polls.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(
            gaps.windows(2).all(|g| g[1] >= g[0]),
            "gaps never shrink: {gaps:?}"
        );
        assert!(gaps.iter().all(|g| *g <= MAX_POLL_GAP_SECS), "{gaps:?}");
        assert!(
            polls
                .last()
                .is_some_and(|last| *last >= 900 - MAX_POLL_GAP_SECS),
            "polled until near the end: {polls:?}"
        );
    }

    #[test]
    fn an_agent_watching_brings_the_next_poll_within_one_interval() {
        let mut auth = started(Some(5));
        // Five minutes in, the backoff has moved the next poll far away.
        let mut now = t(0);
        while now < t(300) {
            now = auth.next_poll_at();
            auth.claim(now).unwrap();
        }
        assert!(auth.next_poll_at() - now > Duration::seconds(30));
        let watched_at = now + Duration::seconds(2);
        assert!(auth.watched(watched_at));
        assert_eq!(auth.next_poll_at(), watched_at + Duration::seconds(5));
        assert!(!auth.watched(watched_at), "nothing more to change");
        // Early on, or once approved, watching changes nothing.
        let mut fresh = started(Some(5));
        assert!(!fresh.watched(t(1)));
        let mut approved = started(Some(5));
        approved.claim(t(5)).unwrap();
        approved.approve(t(6)).unwrap();
        assert!(!approved.watched(t(7)));
    }

    #[test]
    fn missing_interval_defaults_to_five_seconds() {
        assert_eq!(started(None).interval_secs(), 5);
        assert_eq!(
            started(Some(0)).interval_secs(),
            1,
            "never poll in a busy loop"
        );
    }

    #[test]
    fn lifecycle_pending_approved_consumed() {
        let mut auth = started(Some(5));
        assert_eq!(auth.payment_status(), PaymentStatus::Pending);
        auth.approve(t(30)).unwrap();
        assert_eq!(
            auth.payment_status(),
            PaymentStatus::Approved,
            "once approved, never again 'waiting for the person'"
        );
        assert!(auth.is_due(t(30)));
        assert!(auth.reject(t(31)).is_err());
        assert_eq!(auth.claim(t(30)), Ok(Work::Charge { attempt: 1 }));
        assert_eq!(auth.status(), AuthorizationStatus::Charging);
        assert_eq!(auth.payment_status(), PaymentStatus::Approved);
        auth.consume(t(31)).unwrap();
        assert_eq!(auth.payment_status(), PaymentStatus::Completed);
        assert!(
            auth.consume(t(32)).is_err(),
            "an approval is used at most once"
        );
        assert!(auth.cancel(t(32)).is_err());
        assert!(!auth.is_due(t(1000)));
    }

    #[test]
    fn expiry_arithmetic() {
        let auth = started(Some(5));
        assert_eq!(auth.expires_in(t(0)), 900);
        assert_eq!(auth.expires_in(t(850)), 50);
        assert_eq!(auth.expires_in(t(2000)), 0);
        assert!(auth.is_past_expiry(t(900)));
        assert!(auth.is_due(t(900)));
    }

    #[test]
    fn after_approval_the_charge_has_a_budget_a_backoff_and_a_deadline() {
        let mut auth = started(Some(5));
        auth.approve(t(0)).unwrap();
        let mut now = t(0);
        let mut waits = Vec::new();
        for attempt in 1..=MAX_CHARGE_ATTEMPTS {
            assert_eq!(auth.claim(now), Ok(Work::Charge { attempt }));
            assert!(
                auth.claim(now + Duration::seconds(CHARGE_LEASE_SECS - 1))
                    .is_err(),
                "the lease keeps other workers away"
            );
            auth.retry_later(now).unwrap();
            waits.push((auth.next_poll_at() - now).num_seconds());
            now = auth.next_poll_at();
        }
        // 5, 15, 45, 135 … and the fifth wait (405 s) is cut short by the 600 s deadline.
        assert_eq!(waits, vec![5, 15, 45, 135, 400]);
        assert_eq!(
            auth.claim(now),
            Ok(Work::Conclude),
            "the budget spent, only the final check remains"
        );
        auth.fail("order_not_placed", now).unwrap();
        assert_eq!(auth.payment_status(), PaymentStatus::Failed);
        assert_eq!(auth.failure(), Some("order_not_placed"));
        assert!(!auth.is_due(now + Duration::days(1)));

        // Past the deadline, no attempt starts, whatever the budget says.
        let mut late = started(Some(5));
        late.approve(t(0)).unwrap();
        assert_eq!(late.claim(t(0)), Ok(Work::Charge { attempt: 1 }));
        late.retry_later(t(CHARGE_WINDOW_SECS - 1)).unwrap();
        assert_eq!(
            late.next_poll_at(),
            t(CHARGE_WINDOW_SECS),
            "no wait runs past the deadline"
        );
        assert_eq!(late.claim(t(CHARGE_WINDOW_SECS)), Ok(Work::Conclude));
        late.retry_later(t(CHARGE_WINDOW_SECS)).unwrap();
        assert!(
            late.next_poll_at() > t(CHARGE_WINDOW_SECS),
            "a final check that must wait backs off instead of spinning"
        );
    }

    #[test]
    fn a_worker_that_died_mid_charge_leaves_the_next_attempt_due_after_its_lease() {
        let mut auth = started(Some(5));
        auth.approve(t(0)).unwrap();
        auth.claim(t(0)).unwrap();
        assert!(!auth.is_due(t(CHARGE_LEASE_SECS - 1)));
        assert_eq!(
            auth.claim(t(CHARGE_LEASE_SECS)),
            Ok(Work::Charge { attempt: 2 })
        );
    }

    #[test]
    fn a_permanent_failure_ends_it_at_once_with_its_reason() {
        let mut auth = started(Some(5));
        assert!(auth.fail("declined", t(1)).is_err(), "only after approval");
        auth.approve(t(1)).unwrap();
        auth.claim(t(1)).unwrap();
        auth.fail("no_payment_method", t(2)).unwrap();
        assert_eq!(auth.status(), AuthorizationStatus::Failed);
        assert_eq!(auth.failure(), Some("no_payment_method"));
        assert!(auth.cancel(t(3)).is_err());
    }

    proptest! {
        #[test]
        fn terminal_states_are_final(ops in prop::collection::vec(0u8..9, 1..40)) {
            let mut auth = started(Some(5));
            let mut now = t(0);
            for op in ops {
                now += Duration::seconds(3);
                let before = auth.clone();
                let result = match op {
                    0 => auth.claim(now).map(|_| ()),
                    1 => auth.slow_down(now),
                    2 => auth.approve(now),
                    3 => auth.reject(now),
                    4 => auth.expire(now),
                    5 => auth.consume(now),
                    6 => auth.retry_later(now),
                    7 => auth.fail("declined", now),
                    _ => auth.cancel(now),
                };
                if before.status().is_terminal() {
                    prop_assert!(result.is_err());
                    prop_assert_eq!(&auth, &before);
                }
                if result.is_err() {
                    prop_assert_eq!(&auth, &before);
                }
                prop_assert!(auth.interval_secs() >= before.interval_secs(), "the interval never shrinks");
                prop_assert!(auth.attempts() <= MAX_CHARGE_ATTEMPTS, "the budget holds");
                prop_assert_eq!(auth.failure().is_some(), auth.status() == AuthorizationStatus::Failed);
            }
        }
    }
}
