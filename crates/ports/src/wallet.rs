//! The wallet port: device authorization, tokens, introspection, payment tokens (WSIM).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sacp_domain::validation::Email;
use sacp_domain::{DeviceCode, DeviceGrant, Money};

use crate::error::UpstreamError;
use crate::token::BearerToken;

/// A request to start an RFC 8628 device authorization for one payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceAuthorizationRequest {
    /// Shown to the person as who is asking (e.g. the gateway and merchant name).
    pub agent_name: String,
    /// Shown to the person: what is being bought.
    pub agent_description: Option<String>,
    /// Scopes asked for; the guest payment path asks for `purchase` only.
    pub scopes: Vec<String>,
    /// Spending limit per transaction, per day and per month: the exact checkout total.
    pub spending_limit: Money,
    /// The buyer's email, so the wallet can notify them.
    pub buyer_email: Option<Email>,
}

/// A token the wallet issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// The access token.
    pub access_token: BearerToken,
    /// Lifetime in seconds.
    pub expires_in: u64,
    /// Space-separated scopes granted.
    pub scope: String,
}

/// The answer to one poll of a device authorization (RFC 8628 §3.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DevicePoll {
    /// The person has not acted yet (`authorization_pending`).
    Pending,
    /// Poll less often: add 5 seconds to the interval (`slow_down`).
    SlowDown,
    /// Approved: a user access token.
    Approved(IssuedToken),
    /// The person rejected (`access_denied`).
    Denied,
    /// The codes expired (`expired_token`).
    Expired,
}

impl DevicePoll {
    /// The poll outcome an RFC 8628 token-endpoint error code stands for, when it is one
    /// (`authorization_pending`, `slow_down`, `access_denied`, `expired_token`).
    pub fn from_error_code(code: &str) -> Option<DevicePoll> {
        match code {
            "authorization_pending" => Some(DevicePoll::Pending),
            "slow_down" => Some(DevicePoll::SlowDown),
            "access_denied" => Some(DevicePoll::Denied),
            "expired_token" => Some(DevicePoll::Expired),
            _ => None,
        }
    }
}

/// What introspection says of an active user token (RFC 7662).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    /// The person (wallet owner) the token acts for.
    pub subject: String,
    /// The client the token was issued to.
    pub client_id: Option<String>,
    /// Granted permissions (scopes).
    pub scopes: Vec<String>,
    /// Expiry.
    pub expires_at: DateTime<Utc>,
    /// Per-transaction spending limit, if any.
    pub per_transaction_limit: Option<Money>,
}

/// Result of introspecting a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Introspection {
    /// The token is valid.
    Active(TokenInfo),
    /// Unknown, expired or revoked.
    Inactive,
}

/// A request for a payment token of an exact amount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentTokenRequest {
    /// Exact amount to charge.
    pub amount: Money,
    /// Merchant the token is for (from the store's discovery document).
    pub merchant_id: String,
    /// Merchant display name.
    pub merchant_name: Option<String>,
    /// The store session being paid, for the wallet's records.
    pub session_id: Option<String>,
}

/// A payment token the store can charge once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentToken {
    /// The wallet's payment id.
    pub payment_id: String,
    /// The token to hand to the store.
    pub token: BearerToken,
    /// Lifetime in seconds.
    pub expires_in: u64,
}

/// A pending step-up: the person must approve a payment above their limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepUp {
    /// The wallet's step-up id.
    pub step_up_id: String,
    /// When the step-up expires.
    pub expires_at: Option<DateTime<Utc>>,
    /// Which limit the payment is over, as the wallet's `trigger_type`: `per_transaction`,
    /// `daily_limit` or `monthly_limit`.
    pub reason: Option<String>,
}

/// The wallet's answer to a payment token request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentTokenOutcome {
    /// Within limits: a token.
    Issued(PaymentToken),
    /// Over a limit: the person must step up.
    StepUpRequired(StepUp),
}

/// Where a step-up is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepUpStatus {
    /// Waiting for the person.
    Pending,
    /// Approved, with a fresh payment token.
    Approved(PaymentToken),
    /// Approved by the person, but the wallet could not issue the payment token now (its card
    /// issuer failed: `"error": "payment_provider_error"`). Transient: ask again later.
    ApprovedWithoutToken,
    /// Rejected by the person.
    Rejected,
    /// Expired.
    Expired,
}

/// The person's wallet.
///
/// Error contract (every method): [`UpstreamError::Unavailable`] when the wallet cannot be
/// reached or fails (5xx), [`UpstreamError::Timeout`] when it does not answer in time,
/// [`UpstreamError::MalformedResponse`] when its answer breaks the contract. Outcomes the
/// protocol defines (pending, denied, inactive token, step-up) are `Ok` values, not errors.
#[async_trait]
pub trait Wallet: Send + Sync {
    /// Starts a device authorization. [`UpstreamError::Rejected`] with `invalid_request` or
    /// `invalid_scope`.
    async fn start_device_authorization(
        &self,
        request: &DeviceAuthorizationRequest,
    ) -> Result<DeviceGrant, UpstreamError>;

    /// Polls a device authorization once. Note: the wallet does not consume the device code;
    /// every poll after approval mints a new token, so exactly-once use is the caller's job —
    /// and two polls of one code within one second fail ([`UpstreamError::Unavailable`]: its
    /// tokens are second-granular), so never poll a code twice in a second. An approved code
    /// past its lifetime is [`DevicePoll::Expired`] like any other.
    /// [`UpstreamError::Rejected`] with `invalid_grant` for an unknown code, `invalid_client`
    /// when the wallet refuses the gateway's client (suspended or unknown).
    async fn poll_device_token(
        &self,
        device_code: &DeviceCode,
    ) -> Result<DevicePoll, UpstreamError>;

    /// A token for the gateway itself (client credentials in the request body).
    /// [`UpstreamError::Rejected`] with `invalid_client` (also for a suspended client) or
    /// `access_denied`; two requests within one second: the second is
    /// [`UpstreamError::Unavailable`].
    async fn client_credentials(&self) -> Result<IssuedToken, UpstreamError>;

    /// Introspects a user token. An unknown, expired or revoked token is
    /// `Ok(Introspection::Inactive)`; [`UpstreamError::Rejected`] with `invalid_client` when
    /// the gateway's introspection credentials are refused.
    async fn introspect(&self, token: &BearerToken) -> Result<Introspection, UpstreamError>;

    /// Asks for a payment token of an exact amount, as the user. A step-up is an `Ok`
    /// outcome. [`UpstreamError::Unauthorized`] for a refused user token;
    /// [`UpstreamError::Rejected`] with `insufficient_scope`, `invalid_request`, or
    /// `no_payment_method` when the person has no active card (the wallet says so only in its
    /// description: see [`payment_token_error`]); [`UpstreamError::Unavailable`] for
    /// `payment_provider_error` (the card issuer failed: transient).
    async fn request_payment_token(
        &self,
        user_token: &BearerToken,
        request: &PaymentTokenRequest,
    ) -> Result<PaymentTokenOutcome, UpstreamError>;

    /// Where a step-up is, read with any active token of the wallet client that asked for it.
    /// [`UpstreamError::NotFound`] for unknown ids; [`UpstreamError::Unauthorized`] for a
    /// refused user token.
    async fn step_up_status(
        &self,
        user_token: &BearerToken,
        step_up_id: &str,
    ) -> Result<StepUpStatus, UpstreamError>;

    /// Revokes a user token (RFC 7009): the gateway gives up a token it collected once it
    /// needs it no more. The wallet answers success whatever the token.
    async fn revoke_token(&self, token: &BearerToken) -> Result<(), UpstreamError>;
}

/// The description the wallet gives, in a 400 `invalid_request`, when the person has no
/// active card.
const NO_PAYMENT_METHOD_DESCRIPTION: &str = "no payment methods available";

/// The one mapping of a refused payment-token request to [`UpstreamError`], shared by the
/// HTTP adapter and the fake: the wallet has no code of its own for "no payment method"
/// (it answers 400 `invalid_request`, "No payment methods available"), so the description
/// decides; anything else maps as [`crate::error::from_http_status`] does.
pub fn payment_token_error(
    status: u16,
    code: Option<&str>,
    description: Option<&str>,
) -> UpstreamError {
    let no_card = status == 400
        && code == Some("invalid_request")
        && description.is_some_and(|d| {
            d.trim()
                .trim_end_matches('.')
                .eq_ignore_ascii_case(NO_PAYMENT_METHOD_DESCRIPTION)
        });
    if no_card {
        return UpstreamError::rejected("no_payment_method");
    }
    crate::error::from_http_status(status, code, None)
}
