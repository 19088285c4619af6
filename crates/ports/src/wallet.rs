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
    /// Why a step-up is needed, as the wallet's code (e.g. `per_transaction_limit`).
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
    /// every poll after approval mints a new token, so exactly-once use is the caller's job.
    /// [`UpstreamError::Rejected`] with `invalid_grant` for an unknown code.
    async fn poll_device_token(
        &self,
        device_code: &DeviceCode,
    ) -> Result<DevicePoll, UpstreamError>;

    /// A token for the gateway itself (client credentials in the request body).
    /// [`UpstreamError::Rejected`] with `invalid_client` or `access_denied`.
    async fn client_credentials(&self) -> Result<IssuedToken, UpstreamError>;

    /// Introspects a user token. An unknown, expired or revoked token is
    /// `Ok(Introspection::Inactive)`; [`UpstreamError::Rejected`] with `invalid_client` when
    /// the gateway's introspection credentials are refused.
    async fn introspect(&self, token: &BearerToken) -> Result<Introspection, UpstreamError>;

    /// Asks for a payment token of an exact amount, as the user. A step-up is an `Ok`
    /// outcome. [`UpstreamError::Unauthorized`] for a refused user token;
    /// [`UpstreamError::Rejected`] with `insufficient_scope`, `invalid_request` or
    /// `no_payment_method`; [`UpstreamError::Unavailable`] for `payment_provider_error`.
    async fn request_payment_token(
        &self,
        user_token: &BearerToken,
        request: &PaymentTokenRequest,
    ) -> Result<PaymentTokenOutcome, UpstreamError>;

    /// Where a step-up is. [`UpstreamError::NotFound`] for unknown ids;
    /// [`UpstreamError::Unauthorized`] for a refused user token.
    async fn step_up_status(
        &self,
        user_token: &BearerToken,
        step_up_id: &str,
    ) -> Result<StepUpStatus, UpstreamError>;
}
