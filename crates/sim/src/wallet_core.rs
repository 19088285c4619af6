//! The simulated wallet (WSIM): state and rules, shared by its HTTP surface and its
//! in-process fake.
//!
//! Quirks of the observed wallet are kept on purpose: the device code is not consumed (every
//! poll after approval mints a new access token), an over-limit payment-token request answers
//! 200 with `step_up_required: true`, introspection needs HTTP Basic credentials while the
//! token endpoint refuses them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Duration, Utc};
use rand::RngExt;
use sacp_domain::{Currency, Money};
use sacp_ports::Clock;

use crate::SimError;
use crate::faults::Faults;

/// Lifetime of a device code unless a fault shortens it.
pub const DEVICE_CODE_TTL_SECS: u32 = 900;
/// Poll interval the wallet asks for.
pub const POLL_INTERVAL_SECS: u32 = 5;
const ACCESS_TOKEN_TTL_SECS: i64 = 3600;
const PAYMENT_TOKEN_TTL_SECS: i64 = 300;
const STEP_UP_TTL_SECS: i64 = 900;
const USER_CODE_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
const SCOPES: [&str; 4] = ["browse", "cart", "purchase", "history"];

/// The demo wallet owner every approval acts for.
pub const DEMO_OWNER: &str = "usr_demo_jdoe";

/// The wallet's users, by the email they signed up with: a device authorization naming one
/// of them as buyer notifies that user (and only then says `notification_sent: true`). The
/// seed conversation's buyer is one.
pub const KNOWN_USERS: &[(&str, &str)] = &[("john@example.com", DEMO_OWNER)];

/// Spending limits the real wallet applies when a device authorization sends none:
/// 50 per transaction, 200 a day, 1000 a month (CAD).
const DEFAULT_LIMITS_MINOR: (i64, i64, i64) = (5_000, 20_000, 100_000);

/// Configuration of a simulated wallet.
#[derive(Debug, Clone)]
pub struct WalletConfig {
    /// Public base URL of the wallet (`http://host:port/wsim`), used in verification links.
    pub public_base: String,
    /// Client id accepted for client credentials.
    pub client_id: String,
    /// Client secret accepted for client credentials.
    pub client_secret: String,
    /// Basic credentials accepted by introspection.
    pub introspection_client_id: String,
    /// Basic credentials accepted by introspection.
    pub introspection_client_secret: String,
}

impl WalletConfig {
    /// The sandbox defaults (client `sacp-gateway` / `sandbox-secret`, introspection client
    /// `sacp-introspect` / `sandbox-introspect-secret`).
    pub fn sandbox(public_base: impl Into<String>) -> WalletConfig {
        WalletConfig {
            public_base: public_base.into(),
            client_id: "sacp-gateway".into(),
            client_secret: "sandbox-secret".into(),
            introspection_client_id: "sacp-introspect".into(),
            introspection_client_secret: "sandbox-introspect-secret".into(),
        }
    }
}

/// Spending limits in minor units of one currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest single payment.
    pub per_transaction: Option<Money>,
    /// Largest total per day.
    pub daily: Option<Money>,
    /// Largest total per month.
    pub monthly: Option<Money>,
}

impl Limits {
    /// Decimal-string form for introspection (`{"per_transaction": "25", ...}`).
    fn to_json(self) -> serde_json::Value {
        let text = |m: Option<Money>| m.map(|m| m.to_decimal_string());
        let currency = self
            .per_transaction
            .or(self.daily)
            .or(self.monthly)
            .map(|m| m.currency().code().to_owned());
        serde_json::json!({
            "per_transaction": text(self.per_transaction),
            "daily": text(self.daily),
            "monthly": text(self.monthly),
            "currency": currency,
        })
    }
}

/// A device authorization request, as received.
#[derive(Debug, Clone, Default)]
pub struct DeviceRequest {
    /// Who asks (required).
    pub agent_name: Option<String>,
    /// What for.
    pub agent_description: Option<String>,
    /// Space-separated scopes.
    pub scope: Option<String>,
    /// Limits as decimal text, with their currency.
    pub per_transaction: Option<String>,
    /// Daily limit text.
    pub daily: Option<String>,
    /// Monthly limit text.
    pub monthly: Option<String>,
    /// Limit currency (default CAD).
    pub currency: Option<String>,
    /// The buyer to notify.
    pub buyer_email: Option<String>,
}

/// The wallet's answer to a device authorization request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceGrantOut {
    /// Secret polling code.
    pub device_code: String,
    /// Code the person types.
    pub user_code: String,
    /// Approval page.
    pub verification_uri: String,
    /// Approval page with the code.
    pub verification_uri_complete: String,
    /// Lifetime.
    pub expires_in: u32,
    /// Poll interval.
    pub interval: u32,
    /// Present when a buyer email was given.
    pub notification_sent: Option<bool>,
}

/// A minted access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenOut {
    /// The token.
    pub access_token: String,
    /// Lifetime in seconds.
    pub expires_in: i64,
    /// Granted scopes.
    pub scope: String,
}

/// A payment token issued within limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentTokenOut {
    /// Payment id.
    pub payment_id: String,
    /// The token the store charges.
    pub payment_token: String,
    /// Lifetime in seconds.
    pub expires_in: i64,
}

/// A step-up the person must approve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepUpOut {
    /// Step-up id.
    pub step_up_id: String,
    /// Expiry.
    pub expires_at: DateTime<Utc>,
    /// Why.
    pub reason: String,
    /// Which limit triggered it.
    pub trigger_type: String,
}

/// Answer to a payment token request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentAnswer {
    /// Within limits.
    Issued(PaymentTokenOut),
    /// Over a limit.
    StepUp(StepUpOut),
}

/// Decision state of a device authorization or step-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Nobody acted yet.
    Pending,
    /// Approved.
    Approved,
    /// Rejected.
    Rejected,
}

/// What the approval page shows of a device authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceView {
    /// The code.
    pub user_code: String,
    /// Who asks (merchant / agent).
    pub agent_name: String,
    /// What is bought.
    pub agent_description: Option<String>,
    /// Exact amount asked for (the per-transaction limit).
    pub amount: Option<Money>,
    /// Scopes asked for.
    pub scopes: Vec<String>,
    /// Decision so far.
    pub decision: Decision,
    /// Whether the code expired.
    pub expired: bool,
}

/// What the step-up page shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepUpView {
    /// Step-up id.
    pub id: String,
    /// Merchant.
    pub merchant: String,
    /// Amount.
    pub amount: Money,
    /// Decision so far.
    pub decision: Decision,
    /// Whether it expired.
    pub expired: bool,
}

/// Status of a step-up as the API reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepUpState {
    /// Waiting.
    Pending,
    /// Approved, with a payment token.
    Approved(PaymentTokenOut),
    /// Approved, but the card issuer failed: no token now (`error: payment_provider_error`).
    ApprovedWithoutToken,
    /// Rejected.
    Rejected,
    /// Expired.
    Expired,
}

/// A payment the store redeemed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redemption {
    /// Payment id.
    pub payment_id: String,
    /// Card last four digits.
    pub last_four: String,
}

/// Counters, for tests that must prove how often something happened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalletStats {
    /// Device authorizations started.
    pub device_authorizations: u64,
    /// Device token polls answered.
    pub device_polls: u64,
    /// Access tokens minted from approved device codes.
    pub device_tokens_minted: u64,
    /// Payment tokens issued (directly or by step-up).
    pub payment_tokens_issued: u64,
    /// Payment-token requests received, answered or refused.
    pub payment_token_requests: u64,
    /// Tokens revoked (RFC 7009) that were live.
    pub tokens_revoked: u64,
}

/// What the introspection endpoint says of a token.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenIntrospection {
    /// `active: true` fields as JSON, or `None` for inactive.
    pub active: Option<serde_json::Value>,
}

struct DeviceRecord {
    user_code: String,
    agent_name: String,
    agent_description: Option<String>,
    scopes: Vec<String>,
    limits: Limits,
    expires_at: DateTime<Utc>,
    decision: Decision,
    /// The second of the last token minted from this code: the real wallet's tokens are
    /// second-granular and unique, so a second mint within one second fails (500).
    minted_second: Option<i64>,
}

struct AccessRecord {
    owner: String,
    client_id: String,
    agent_id: String,
    agent_name: String,
    scopes: Vec<String>,
    limits: Limits,
    issued_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    spent: i64,
}

struct PaymentRecord {
    payment_id: String,
    amount: Money,
    merchant_id: String,
    expires_at: DateTime<Utc>,
    redeemed: bool,
}

struct StepUpRecord {
    token: String,
    amount: Money,
    merchant_id: String,
    merchant_name: String,
    expires_at: DateTime<Utc>,
    decision: Decision,
    issued: Option<PaymentTokenOut>,
}

#[derive(Default)]
struct State {
    devices: HashMap<String, DeviceRecord>,
    user_codes: HashMap<String, String>,
    tokens: HashMap<String, AccessRecord>,
    /// Every access token issued, revoked ones included (tests prove none leaks).
    issued: Vec<String>,
    payments: HashMap<String, PaymentRecord>,
    step_ups: HashMap<String, StepUpRecord>,
    faults: Faults,
    stats: WalletStats,
    /// The second of the last client-credentials token (see `DeviceRecord::minted_second`).
    client_token_second: Option<i64>,
}

/// The simulated wallet.
pub struct WalletCore {
    clock: Arc<dyn Clock>,
    config: WalletConfig,
    state: Mutex<State>,
}

impl std::fmt::Debug for WalletCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalletCore")
            .field("public_base", &self.config.public_base)
            .finish_non_exhaustive()
    }
}

fn random_token(prefix: &str, bytes: usize) -> String {
    let mut rng = rand::rng();
    let hex: String = (0..bytes)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect();
    format!("{prefix}{hex}")
}

fn user_code() -> String {
    let mut rng = rand::rng();
    let code: String = (0..6)
        .map(|_| {
            let index = rng.random_range(0..USER_CODE_ALPHABET.len());
            char::from(USER_CODE_ALPHABET[index])
        })
        .collect();
    format!("WSIM-{code}")
}

fn parse_limit(text: Option<&str>, currency: Currency) -> Result<Option<Money>, SimError> {
    match text.map(str::trim).filter(|t| !t.is_empty()) {
        None => Ok(None),
        Some(text) => Money::parse_decimal(text, currency)
            .ok()
            .filter(|m| !m.is_negative())
            .map(Some)
            .ok_or_else(|| {
                SimError::oauth(
                    400,
                    "invalid_request",
                    "spending limits must be decimal amounts",
                )
            }),
    }
}

impl WalletCore {
    /// A wallet with no authorizations yet.
    pub fn new(config: WalletConfig, clock: Arc<dyn Clock>) -> WalletCore {
        WalletCore {
            clock,
            config,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means a panic elsewhere mid-update; the maps stay usable
        // for a simulator.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The configuration.
    pub fn config(&self) -> &WalletConfig {
        &self.config
    }

    /// Current faults.
    pub fn faults(&self) -> Faults {
        self.state().faults.clone()
    }

    /// Replaces the faults.
    pub fn set_faults(&self, faults: Faults) {
        self.state().faults = faults;
    }

    /// Counters.
    pub fn stats(&self) -> WalletStats {
        self.state().stats
    }

    /// `POST /oauth/device_authorization`.
    pub fn start_device(&self, request: &DeviceRequest) -> Result<DeviceGrantOut, SimError> {
        let agent_name = request
            .agent_name
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| SimError::oauth(400, "invalid_request", "agent_name is required"))?;
        // Unknown scopes beside a known one are dropped; none known is refused.
        let scopes: Vec<String> = request
            .scope
            .as_deref()
            .unwrap_or("browse")
            .split_ascii_whitespace()
            .filter(|s| SCOPES.contains(s))
            .map(str::to_owned)
            .collect();
        if scopes.is_empty() {
            return Err(SimError::oauth(
                400,
                "invalid_scope",
                "scope must include at least one of: browse cart purchase history",
            ));
        }
        let currency = Currency::parse(request.currency.as_deref().unwrap_or("CAD"))
            .map_err(|_| SimError::oauth(400, "invalid_request", "unknown currency"))?;
        let none_sent = request.per_transaction.is_none()
            && request.daily.is_none()
            && request.monthly.is_none();
        let limits = if none_sent {
            let (per_transaction, daily, monthly) = DEFAULT_LIMITS_MINOR;
            Limits {
                per_transaction: Some(Money::from_minor(per_transaction, Currency::CAD)),
                daily: Some(Money::from_minor(daily, Currency::CAD)),
                monthly: Some(Money::from_minor(monthly, Currency::CAD)),
            }
        } else {
            Limits {
                per_transaction: parse_limit(request.per_transaction.as_deref(), currency)?,
                daily: parse_limit(request.daily.as_deref(), currency)?,
                monthly: parse_limit(request.monthly.as_deref(), currency)?,
            }
        };
        let now = self.clock.now();
        let mut state = self.state();
        let ttl = state
            .faults
            .device_code_ttl_secs
            .unwrap_or(DEVICE_CODE_TTL_SECS);
        let interval = state
            .faults
            .poll_interval_secs
            .unwrap_or(POLL_INTERVAL_SECS);
        let device_code = random_token("", 32);
        let mut code = user_code();
        while state.user_codes.contains_key(&code) {
            code = user_code();
        }
        state.user_codes.insert(code.clone(), device_code.clone());
        state.devices.insert(
            device_code.clone(),
            DeviceRecord {
                user_code: code.clone(),
                agent_name: agent_name.to_owned(),
                agent_description: request.agent_description.clone(),
                scopes,
                limits,
                expires_at: now + Duration::seconds(i64::from(ttl)),
                decision: Decision::Pending,
                minted_second: None,
            },
        );
        state.stats.device_authorizations += 1;
        let verification_uri = format!("{}/m/device", self.config.public_base);
        Ok(DeviceGrantOut {
            verification_uri_complete: format!("{verification_uri}?code={code}"),
            verification_uri,
            device_code,
            user_code: code,
            expires_in: ttl,
            interval,
            // Only a wallet user can be notified; anyone else's email is not.
            notification_sent: request.buyer_email.as_ref().map(|email| {
                KNOWN_USERS
                    .iter()
                    .any(|(known, _)| known.eq_ignore_ascii_case(email.trim()))
            }),
        })
    }

    /// `POST /oauth/token` with the device-code grant.
    pub fn poll_device(&self, device_code: &str) -> Result<TokenOut, SimError> {
        let now = self.clock.now();
        let mut state = self.state();
        state.stats.device_polls += 1;
        if state.faults.suspended_client {
            return Err(SimError::oauth(
                401,
                "invalid_client",
                "the client is suspended",
            ));
        }
        let slow_down = state.faults.slow_down;
        let Some(device) = state.devices.get_mut(device_code) else {
            return Err(SimError::oauth(400, "invalid_grant", "unknown device code"));
        };
        // As the real wallet: expiry is checked before the decision, so an approved code
        // cannot be collected again after its lifetime.
        if now >= device.expires_at {
            return Err(SimError::oauth(
                400,
                "expired_token",
                "the device code expired",
            ));
        }
        match device.decision {
            Decision::Rejected => Err(SimError::oauth(400, "access_denied", "the user rejected")),
            Decision::Pending if slow_down => {
                Err(SimError::oauth(400, "slow_down", "poll less often"))
            }
            Decision::Pending => Err(SimError::oauth(
                400,
                "authorization_pending",
                "waiting for the user",
            )),
            Decision::Approved => {
                // Quirks kept on purpose: the device code stays valid and mints a new token on
                // every poll — but not twice within one second (the second answers 500).
                let second = now.timestamp();
                if device.minted_second == Some(second) {
                    return Err(SimError::oauth(
                        500,
                        "server_error",
                        "duplicate key value violates unique constraint",
                    ));
                }
                device.minted_second = Some(second);
                let scopes = device.scopes.clone();
                let limits = device.limits;
                let agent_name = device.agent_name.clone();
                state.stats.device_tokens_minted += 1;
                Ok(self.mint(&mut state, DEMO_OWNER, &agent_name, scopes, limits, now))
            }
        }
    }

    fn mint(
        &self,
        state: &mut State,
        owner: &str,
        agent_name: &str,
        scopes: Vec<String>,
        limits: Limits,
        now: DateTime<Utc>,
    ) -> TokenOut {
        let token = random_token("wsim_at_", 24);
        state.issued.push(token.clone());
        let scope = scopes.join(" ");
        state.tokens.insert(
            token.clone(),
            AccessRecord {
                owner: owner.to_owned(),
                client_id: self.config.client_id.clone(),
                agent_id: format!("agt_{}", self.config.client_id),
                agent_name: agent_name.to_owned(),
                scopes,
                limits,
                issued_at: now,
                expires_at: now + Duration::seconds(ACCESS_TOKEN_TTL_SECS),
                spent: 0,
            },
        );
        TokenOut {
            access_token: token,
            expires_in: ACCESS_TOKEN_TTL_SECS,
            scope,
        }
    }

    /// `POST /oauth/token` with the client-credentials grant. `basic_used` is whether the
    /// caller sent HTTP Basic credentials, which this wallet refuses.
    pub fn client_credentials(
        &self,
        client_id: Option<&str>,
        client_secret: Option<&str>,
        basic_used: bool,
    ) -> Result<TokenOut, SimError> {
        if basic_used {
            return Err(SimError::oauth(
                401,
                "invalid_client",
                "send client_id and client_secret in the request body",
            ));
        }
        if client_id != Some(self.config.client_id.as_str())
            || client_secret != Some(self.config.client_secret.as_str())
        {
            return Err(SimError::oauth(401, "invalid_client", "unknown client"));
        }
        let now = self.clock.now();
        let mut state = self.state();
        if state.faults.suspended_client {
            return Err(SimError::oauth(
                401,
                "invalid_client",
                "the client is suspended",
            ));
        }
        if state.client_token_second == Some(now.timestamp()) {
            return Err(SimError::oauth(
                500,
                "server_error",
                "duplicate key value violates unique constraint",
            ));
        }
        state.client_token_second = Some(now.timestamp());
        let limits = Limits {
            per_transaction: None,
            daily: None,
            monthly: None,
        };
        let client = self.config.client_id.clone();
        Ok(self.mint(
            &mut state,
            &client,
            &client,
            vec!["browse".into()],
            limits,
            now,
        ))
    }

    /// `POST /oauth/introspect`. `basic` is the caller's Basic credentials.
    pub fn introspect(
        &self,
        basic: Option<(&str, &str)>,
        token: &str,
    ) -> Result<TokenIntrospection, SimError> {
        let expected = (
            self.config.introspection_client_id.as_str(),
            self.config.introspection_client_secret.as_str(),
        );
        if basic != Some(expected) {
            return Err(SimError::oauth(
                401,
                "invalid_client",
                "introspection needs Basic credentials",
            ));
        }
        let now = self.clock.now();
        let state = self.state();
        let Some(record) = state.tokens.get(token).filter(|r| now < r.expires_at) else {
            return Ok(TokenIntrospection { active: None });
        };
        let spent = record
            .limits
            .per_transaction
            .map(|m| Money::from_minor(record.spent, m.currency()).to_decimal_string())
            .unwrap_or_else(|| "0".to_owned());
        Ok(TokenIntrospection {
            active: Some(serde_json::json!({
                "active": true,
                "client_id": record.client_id,
                "agent_id": record.agent_id,
                "owner_id": record.owner,
                "permissions": record.scopes,
                "exp": record.expires_at.timestamp(),
                "iat": record.issued_at.timestamp(),
                "iss": self.config.public_base,
                "spending_limits": record.limits.to_json(),
                "current_usage": {"daily": spent, "monthly": spent},
                "agent_name": record.agent_name,
                "agent_status": "active",
            })),
        })
    }

    /// `POST /oauth/revoke`: always succeeds.
    pub fn revoke(&self, token: &str) {
        let mut state = self.state();
        if state.tokens.remove(token).is_some() {
            state.stats.tokens_revoked += 1;
        }
    }

    fn active_token<'s>(
        &self,
        state: &'s mut State,
        bearer: Option<&str>,
    ) -> Result<&'s mut AccessRecord, SimError> {
        let now = self.clock.now();
        let Some(bearer) = bearer else {
            return Err(SimError::oauth(
                401,
                "unauthorized",
                "a Bearer token is required",
            ));
        };
        state
            .tokens
            .get_mut(bearer)
            .filter(|r| now < r.expires_at)
            .ok_or_else(|| SimError::oauth(401, "invalid_token", "the token is invalid or expired"))
    }

    /// Who a bearer token acts for, when active (used by the simulated store, which
    /// introspects user tokens at the wallet).
    pub fn token_owner(&self, bearer: &str) -> Option<String> {
        let now = self.clock.now();
        self.state()
            .tokens
            .get(bearer)
            .filter(|r| now < r.expires_at)
            .map(|r| r.owner.clone())
    }

    /// `POST /payments/token`.
    pub fn payment_token(
        &self,
        bearer: Option<&str>,
        amount: Option<&str>,
        currency: Option<&str>,
        merchant_id: Option<&str>,
        merchant_name: Option<&str>,
    ) -> Result<PaymentAnswer, SimError> {
        let currency = Currency::parse(currency.unwrap_or("CAD"))
            .map_err(|_| SimError::oauth(400, "invalid_request", "unknown currency"))?;
        let amount = amount
            .and_then(|a| Money::parse_decimal(a, currency).ok())
            .filter(|m| m.minor_units() > 0)
            .ok_or_else(|| {
                SimError::oauth(400, "invalid_request", "amount must be a positive decimal")
            });
        let merchant_id = merchant_id.map(str::trim).filter(|m| !m.is_empty());
        let now = self.clock.now();
        let mut state = self.state();
        state.stats.payment_token_requests += 1;
        let (no_card, issuer_failing) = (
            state.faults.no_payment_method,
            state.faults.payment_provider_error,
        );
        let record = self.active_token(&mut state, bearer)?;
        if !record.scopes.iter().any(|s| s == "purchase") {
            return Err(SimError::oauth(
                403,
                "insufficient_scope",
                "the purchase scope is required",
            ));
        }
        let amount = amount?;
        let merchant_id = merchant_id
            .ok_or_else(|| SimError::oauth(400, "invalid_request", "merchant_id is required"))?
            .to_owned();
        // As the real wallet answers a user with no active card: not a code of its own.
        if no_card {
            return Err(SimError::oauth(
                400,
                "invalid_request",
                "No payment methods available",
            ));
        }
        let over = |limit: Option<Money>, total: i64| {
            limit.is_some_and(|l| l.currency() != amount.currency() || total > l.minor_units())
        };
        // The real wallet's trigger types. Spending is never counted (nothing marks a wallet
        // transaction completed), so the daily and monthly limits see one payment at a time.
        let trigger = if over(record.limits.per_transaction, amount.minor_units()) {
            Some("per_transaction")
        } else if over(record.limits.daily, record.spent + amount.minor_units()) {
            Some("daily_limit")
        } else if over(record.limits.monthly, record.spent + amount.minor_units()) {
            Some("monthly_limit")
        } else {
            None
        };
        let token = bearer.unwrap_or_default().to_owned();
        if let Some(trigger) = trigger {
            let id = random_token("stepup_", 12);
            let expires_at = now + Duration::seconds(STEP_UP_TTL_SECS);
            state.step_ups.insert(
                id.clone(),
                StepUpRecord {
                    token,
                    amount,
                    merchant_id,
                    merchant_name: merchant_name.unwrap_or("the merchant").to_owned(),
                    expires_at,
                    decision: Decision::Pending,
                    issued: None,
                },
            );
            return Ok(PaymentAnswer::StepUp(StepUpOut {
                step_up_id: id,
                expires_at,
                reason: format!(
                    "The payment of {} exceeds your {} limit.",
                    amount.formatted(),
                    trigger.trim_end_matches("_limit").replace('_', "-")
                ),
                trigger_type: trigger.to_owned(),
            }));
        }
        if issuer_failing {
            return Err(SimError::oauth(
                502,
                "payment_provider_error",
                "The card issuer did not answer",
            ));
        }
        Ok(PaymentAnswer::Issued(Self::issue_payment(
            &mut state,
            amount,
            merchant_id,
            now,
        )))
    }

    fn issue_payment(
        state: &mut State,
        amount: Money,
        merchant_id: String,
        now: DateTime<Utc>,
    ) -> PaymentTokenOut {
        let payment_id = random_token("pay_", 10);
        let payment_token = random_token("wsim_pt_", 24);
        state.payments.insert(
            payment_token.clone(),
            PaymentRecord {
                payment_id: payment_id.clone(),
                amount,
                merchant_id,
                expires_at: now + Duration::seconds(PAYMENT_TOKEN_TTL_SECS),
                redeemed: false,
            },
        );
        state.stats.payment_tokens_issued += 1;
        PaymentTokenOut {
            payment_id,
            payment_token,
            expires_in: PAYMENT_TOKEN_TTL_SECS,
        }
    }

    /// `GET /payments/{id}/status`. Any active token of the wallet client that asked for the
    /// step-up may read it (ownership is per client, as on the real wallet).
    pub fn step_up_status(&self, bearer: Option<&str>, id: &str) -> Result<StepUpState, SimError> {
        let now = self.clock.now();
        let mut state = self.state();
        let reader = self.active_token(&mut state, bearer)?.client_id.clone();
        let record = state
            .step_ups
            .get(id)
            .ok_or_else(|| SimError::oauth(404, "not_found", "unknown step-up"))?;
        let asker = state.tokens.get(&record.token).map(|t| t.client_id.clone());
        if asker.as_deref() != Some(reader.as_str()) {
            return Err(SimError::oauth(404, "not_found", "unknown step-up"));
        }
        Ok(match record.decision {
            Decision::Approved if state.faults.payment_provider_error => {
                StepUpState::ApprovedWithoutToken
            }
            Decision::Approved => match &record.issued {
                Some(issued) => StepUpState::Approved(issued.clone()),
                None => StepUpState::Pending,
            },
            Decision::Rejected => StepUpState::Rejected,
            Decision::Pending if now >= record.expires_at => StepUpState::Expired,
            Decision::Pending => StepUpState::Pending,
        })
    }

    /// The person's decision on the approval page. Refused once decided or expired.
    pub fn decide_device(&self, user_code: &str, approve: bool) -> Result<DeviceView, SimError> {
        let now = self.clock.now();
        let code = user_code.trim().to_ascii_uppercase();
        let mut state = self.state();
        let device_code = state
            .user_codes
            .get(&code)
            .cloned()
            .ok_or_else(|| SimError::oauth(404, "not_found", "unknown code"))?;
        let device = state
            .devices
            .get_mut(&device_code)
            .ok_or_else(|| SimError::oauth(404, "not_found", "unknown code"))?;
        if now >= device.expires_at {
            return Err(SimError::oauth(
                400,
                "expired_token",
                "this code has expired",
            ));
        }
        if device.decision != Decision::Pending {
            return Err(SimError::oauth(
                400,
                "already_decided",
                "this request was already answered",
            ));
        }
        device.decision = if approve {
            Decision::Approved
        } else {
            Decision::Rejected
        };
        drop(state);
        self.device_view(&code)
            .ok_or_else(|| SimError::oauth(404, "not_found", "unknown code"))
    }

    /// Every access token the wallet has issued, revoked ones included (for tests that
    /// prove none leaks).
    pub fn issued_access_tokens(&self) -> Vec<String> {
        self.state().issued.clone()
    }

    /// The secret device code behind a user code (for tests that prove it never leaks).
    pub fn device_code_of(&self, user_code: &str) -> Option<String> {
        self.state()
            .user_codes
            .get(&user_code.trim().to_ascii_uppercase())
            .cloned()
    }

    /// What the approval page shows for a user code.
    pub fn device_view(&self, user_code: &str) -> Option<DeviceView> {
        let now = self.clock.now();
        let code = user_code.trim().to_ascii_uppercase();
        let state = self.state();
        let device = state.devices.get(state.user_codes.get(&code)?)?;
        Some(DeviceView {
            user_code: device.user_code.clone(),
            agent_name: device.agent_name.clone(),
            agent_description: device.agent_description.clone(),
            amount: device.limits.per_transaction,
            scopes: device.scopes.clone(),
            decision: device.decision,
            expired: now >= device.expires_at,
        })
    }

    /// The person's decision on a step-up.
    pub fn decide_step_up(&self, id: &str, approve: bool) -> Result<StepUpView, SimError> {
        let now = self.clock.now();
        let mut state = self.state();
        let record = state
            .step_ups
            .get_mut(id)
            .ok_or_else(|| SimError::oauth(404, "not_found", "unknown step-up"))?;
        if now >= record.expires_at {
            return Err(SimError::oauth(
                400,
                "expired_token",
                "this step-up has expired",
            ));
        }
        if record.decision != Decision::Pending {
            return Err(SimError::oauth(
                400,
                "already_decided",
                "this step-up was already answered",
            ));
        }
        if approve {
            record.decision = Decision::Approved;
            let (amount, merchant, token) = (
                record.amount,
                record.merchant_id.clone(),
                record.token.clone(),
            );
            let issued = Self::issue_payment(&mut state, amount, merchant, now);
            if let Some(access) = state.tokens.get_mut(&token) {
                access.spent += amount.minor_units();
            }
            if let Some(record) = state.step_ups.get_mut(id) {
                record.issued = Some(issued);
            }
        } else {
            record.decision = Decision::Rejected;
        }
        drop(state);
        self.step_up_view(id)
            .ok_or_else(|| SimError::oauth(404, "not_found", "unknown step-up"))
    }

    /// What the step-up page shows.
    pub fn step_up_view(&self, id: &str) -> Option<StepUpView> {
        let now = self.clock.now();
        let state = self.state();
        let record = state.step_ups.get(id)?;
        Some(StepUpView {
            id: id.to_owned(),
            merchant: record.merchant_name.clone(),
            amount: record.amount,
            decision: record.decision,
            expired: now >= record.expires_at,
        })
    }

    /// Sim control: a user access token for the demo owner with the `purchase` scope (and
    /// `history`, to read orders) and the given per-transaction limit.
    pub fn issue_user_token(&self, per_transaction: Option<Money>) -> TokenOut {
        self.issue_user_token_for(DEMO_OWNER, per_transaction)
    }

    /// Sim control: [`WalletCore::issue_user_token`] for another wallet user, `owner`.
    pub fn issue_user_token_for(&self, owner: &str, per_transaction: Option<Money>) -> TokenOut {
        let now = self.clock.now();
        let mut state = self.state();
        let limits = Limits {
            per_transaction,
            daily: None,
            monthly: None,
        };
        let scopes = vec![
            "browse".into(),
            "cart".into(),
            "purchase".into(),
            "history".into(),
        ];
        self.mint(&mut state, owner, "sandbox user", scopes, limits, now)
    }

    /// Used by the simulated store when it charges: checks and consumes a payment token for
    /// exactly `amount` at `merchant_id`. Errors are the store's `invalid_payment_token`.
    pub fn redeem(
        &self,
        payment_token: &str,
        merchant_id: &str,
        amount: Money,
    ) -> Result<Redemption, SimError> {
        let now = self.clock.now();
        let mut state = self.state();
        let invalid = || {
            SimError::store(
                400,
                "invalid_payment_token",
                "the payment token is invalid, used, expired or for another amount",
            )
        };
        let record = state.payments.get_mut(payment_token).ok_or_else(invalid)?;
        if record.redeemed
            || now >= record.expires_at
            || record.merchant_id != merchant_id
            || record.amount != amount
        {
            return Err(invalid());
        }
        record.redeemed = true;
        Ok(Redemption {
            payment_id: record.payment_id.clone(),
            last_four: "4242".into(),
        })
    }
}
