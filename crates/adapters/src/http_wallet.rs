//! The [`Wallet`] port over HTTP: the WSIM agent API (`/api/agent/v1`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use sacp_domain::{DeviceCode, DeviceGrant};
use sacp_ports::wallet::{
    DeviceAuthorizationRequest, DevicePoll, Introspection, IssuedToken, PaymentToken,
    PaymentTokenOutcome, PaymentTokenRequest, StepUp, StepUpStatus, TokenInfo, payment_token_error,
};
use sacp_ports::{BearerToken, UpstreamError, Wallet};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::http::{HttpConfig, Upstream, currency, dollars, money};

const API: [&str; 3] = ["api", "agent", "v1"];
const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// The operations of this upstream (the `operation` label of its metrics).
pub(crate) const OPERATIONS: &[&str] = &[
    "device_authorization",
    "device_token",
    "client_credentials",
    "introspect",
    "payment_token",
    "step_up_status",
    "revoke",
];

/// The gateway's own credentials at the wallet.
#[derive(Debug, Clone)]
pub struct WalletCredentials {
    /// The gateway's client id (`GATEWAY_CLIENT_ID`, default `sacp-gateway`).
    pub client_id: String,
    /// Its secret (`GATEWAY_CLIENT_SECRET`).
    pub client_secret: Option<SecretString>,
    /// Basic credentials for introspection (`WSIM_INTROSPECTION_CLIENT_ID`).
    pub introspection_client_id: Option<String>,
    /// Basic credentials for introspection (`WSIM_INTROSPECTION_CLIENT_SECRET`).
    pub introspection_client_secret: Option<SecretString>,
}

/// The person's wallet, reached over HTTP.
#[derive(Debug)]
pub struct HttpWallet {
    upstream: Upstream,
    credentials: WalletCredentials,
}

impl HttpWallet {
    /// A client for the wallet at `base_url` (e.g. `http://127.0.0.1:8090/wsim`).
    pub fn new(
        base_url: &str,
        config: HttpConfig,
        credentials: WalletCredentials,
    ) -> Result<HttpWallet, String> {
        Ok(HttpWallet {
            upstream: Upstream::new("wallet", OPERATIONS, base_url, config)?,
            credentials,
        })
    }

    fn api(&self, path: &[&str]) -> Result<url::Url, UpstreamError> {
        let segments: Vec<&str> = API.iter().chain(path).copied().collect();
        self.upstream.url(&segments)
    }
}

fn malformed(what: &str) -> UpstreamError {
    UpstreamError::MalformedResponse(what.to_owned())
}

#[derive(Deserialize)]
struct WireGrant {
    device_code: String,
    user_code: String,
    verification_uri: String,
    verification_uri_complete: Option<String>,
    expires_in: u32,
    interval: Option<u32>,
    notification_sent: Option<bool>,
}

#[derive(Deserialize)]
struct WireToken {
    access_token: String,
    expires_in: Option<u64>,
    scope: Option<String>,
}

fn issued(wire: WireToken) -> Result<IssuedToken, UpstreamError> {
    if wire.access_token.is_empty() {
        return Err(malformed("empty access token"));
    }
    Ok(IssuedToken {
        access_token: BearerToken::new(wire.access_token),
        expires_in: wire.expires_in.unwrap_or(0),
        scope: wire.scope.unwrap_or_default(),
    })
}

#[derive(Deserialize)]
struct WireIntrospection {
    active: bool,
    owner_id: Option<String>,
    sub: Option<String>,
    client_id: Option<String>,
    permissions: Option<Vec<String>>,
    scope: Option<String>,
    exp: Option<i64>,
    spending_limits: Option<WireLimits>,
}

#[derive(Deserialize)]
struct WireLimits {
    per_transaction: Option<Value>,
    currency: Option<String>,
}

#[derive(Deserialize)]
struct WirePayment {
    step_up_required: bool,
    payment_id: Option<String>,
    payment_token: Option<String>,
    expires_in: Option<u64>,
    step_up_id: Option<String>,
    step_up_expires_at: Option<DateTime<Utc>>,
    trigger_type: Option<String>,
}

#[derive(Deserialize)]
struct WireStepUp {
    status: String,
    payment_id: Option<String>,
    payment_token: Option<String>,
    expires_in: Option<u64>,
    /// Set when the step-up is approved but no token could be issued
    /// (`payment_provider_error`).
    error: Option<String>,
}

fn payment_token(
    payment_id: Option<String>,
    token: Option<String>,
    expires_in: Option<u64>,
) -> Result<PaymentToken, UpstreamError> {
    match (payment_id, token) {
        (Some(payment_id), Some(token)) if !token.is_empty() => Ok(PaymentToken {
            payment_id,
            token: BearerToken::new(token),
            expires_in: expires_in.unwrap_or(0),
        }),
        _ => Err(malformed("payment token missing")),
    }
}

#[async_trait]
impl Wallet for HttpWallet {
    async fn start_device_authorization(
        &self,
        request: &DeviceAuthorizationRequest,
    ) -> Result<DeviceGrant, UpstreamError> {
        let limit = request.spending_limit.to_decimal_string();
        let mut body = json!({
            "agent_name": request.agent_name,
            "scope": request.scopes.join(" "),
            "response_type": "token",
            "spending_limits": {
                "per_transaction": limit,
                "daily": limit,
                "monthly": limit,
                "currency": request.spending_limit.currency().code(),
            },
        });
        if let Some(map) = body.as_object_mut() {
            if let Some(description) = &request.agent_description {
                map.insert("agent_description".into(), json!(description));
            }
            if let Some(email) = &request.buyer_email {
                map.insert("buyer_email".into(), json!(email.as_str()));
            }
        }
        let answer = self
            .upstream
            .send(
                "device_authorization",
                self.upstream
                    .client()
                    .post(self.api(&["oauth", "device_authorization"])?)
                    .json(&body),
            )
            .await?;
        let wire: WireGrant = answer.success()?;
        if wire.device_code.is_empty() || wire.user_code.is_empty() {
            return Err(malformed("empty device or user code"));
        }
        let complete = match wire.verification_uri_complete {
            Some(uri) => uri,
            None => {
                // RFC 8628 makes the complete URI optional: build it from the code.
                let mut uri = url::Url::parse(&wire.verification_uri)
                    .map_err(|_| malformed("verification_uri"))?;
                uri.query_pairs_mut().append_pair("code", &wire.user_code);
                uri.to_string()
            }
        };
        // The person is sent to these links (page, QR code, widget): only web addresses.
        for uri in [&wire.verification_uri, &complete] {
            let web = url::Url::parse(uri).is_ok_and(|u| matches!(u.scheme(), "https" | "http"));
            if !web {
                return Err(malformed("verification URI is not an http(s) URL"));
            }
        }
        Ok(DeviceGrant {
            device_code: DeviceCode::new(wire.device_code),
            user_code: wire.user_code,
            verification_uri: wire.verification_uri,
            verification_uri_complete: complete,
            expires_in: wire.expires_in,
            interval: wire.interval,
            notification_sent: wire.notification_sent.unwrap_or(false),
        })
    }

    async fn poll_device_token(
        &self,
        device_code: &DeviceCode,
    ) -> Result<DevicePoll, UpstreamError> {
        let form = [
            ("grant_type", DEVICE_CODE_GRANT),
            ("device_code", device_code.expose()),
            ("client_id", self.credentials.client_id.as_str()),
        ];
        let answer = self
            .upstream
            .send(
                "device_token",
                self.upstream
                    .client()
                    .post(self.api(&["oauth", "token"])?)
                    .form(&form),
            )
            .await?;
        if answer.status.is_success() {
            return Ok(DevicePoll::Approved(issued(answer.json()?)?));
        }
        if answer.status == StatusCode::UNAUTHORIZED {
            // The wallet refuses the gateway's own client (suspended or unknown): not a user
            // token's fault.
            return Err(UpstreamError::rejected("invalid_client"));
        }
        if answer.status == StatusCode::BAD_REQUEST
            && let Some(outcome) = answer
                .error_code()
                .as_deref()
                .and_then(DevicePoll::from_error_code)
        {
            return Ok(outcome);
        }
        Err(answer.error())
    }

    async fn client_credentials(&self) -> Result<IssuedToken, UpstreamError> {
        let secret = self
            .credentials
            .client_secret
            .as_ref()
            .map(|s| s.expose_secret())
            .unwrap_or("");
        // The wallet refuses HTTP Basic here despite its metadata: credentials go in the body.
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.credentials.client_id.as_str()),
            ("client_secret", secret),
        ];
        let answer = self
            .upstream
            .send(
                "client_credentials",
                self.upstream
                    .client()
                    .post(self.api(&["oauth", "token"])?)
                    .form(&form),
            )
            .await?;
        if answer.status == StatusCode::UNAUTHORIZED {
            return Err(UpstreamError::rejected("invalid_client"));
        }
        issued(answer.success()?)
    }

    async fn introspect(&self, token: &BearerToken) -> Result<Introspection, UpstreamError> {
        let mut request = self
            .upstream
            .client()
            .post(self.api(&["oauth", "introspect"])?)
            .form(&[("token", token.expose())]);
        if let Some(id) = &self.credentials.introspection_client_id {
            let secret = self
                .credentials
                .introspection_client_secret
                .as_ref()
                .map(|s| s.expose_secret());
            request = request.basic_auth(id, secret);
        }
        let answer = self.upstream.send("introspect", request).await?;
        if answer.status == StatusCode::UNAUTHORIZED {
            return Err(UpstreamError::rejected("invalid_client"));
        }
        let wire: WireIntrospection = answer.success()?;
        if !wire.active {
            return Ok(Introspection::Inactive);
        }
        let expires_at = wire
            .exp
            .and_then(|exp| DateTime::from_timestamp(exp, 0))
            .ok_or_else(|| malformed("active token without exp"))?;
        let per_transaction_limit = match wire.spending_limits {
            Some(WireLimits {
                per_transaction: Some(amount),
                currency: Some(code),
            }) if !amount.is_null() => Some(money(&amount, currency(&code)?)?),
            _ => None,
        };
        let scopes = wire
            .permissions
            .or_else(|| {
                wire.scope
                    .map(|s| s.split_whitespace().map(str::to_owned).collect())
            })
            .unwrap_or_default();
        Ok(Introspection::Active(TokenInfo {
            subject: wire
                .owner_id
                .or(wire.sub)
                .ok_or_else(|| malformed("active token without owner"))?,
            client_id: wire.client_id,
            scopes,
            expires_at,
            per_transaction_limit,
        }))
    }

    async fn request_payment_token(
        &self,
        user_token: &BearerToken,
        request: &PaymentTokenRequest,
    ) -> Result<PaymentTokenOutcome, UpstreamError> {
        let body = json!({
            "amount": dollars(request.amount),
            "currency": request.amount.currency().code(),
            "merchant_id": request.merchant_id,
            "merchant_name": request.merchant_name,
            "session_id": request.session_id,
        });
        let answer = self
            .upstream
            .send(
                "payment_token",
                self.upstream
                    .client()
                    .post(self.api(&["payments", "token"])?)
                    .bearer_auth(user_token.expose())
                    .json(&body),
            )
            .await?;
        if !answer.status.is_success() {
            return Err(payment_token_error(
                answer.status.as_u16(),
                answer.error_code().as_deref(),
                answer.error_description().as_deref(),
            ));
        }
        let wire: WirePayment = answer.json()?;
        if wire.step_up_required {
            let step_up_id = wire
                .step_up_id
                .filter(|id| !id.is_empty())
                .ok_or_else(|| malformed("step-up without id"))?;
            return Ok(PaymentTokenOutcome::StepUpRequired(StepUp {
                step_up_id,
                expires_at: wire.step_up_expires_at,
                reason: wire.trigger_type,
            }));
        }
        Ok(PaymentTokenOutcome::Issued(payment_token(
            wire.payment_id,
            wire.payment_token,
            wire.expires_in,
        )?))
    }

    async fn step_up_status(
        &self,
        user_token: &BearerToken,
        step_up_id: &str,
    ) -> Result<StepUpStatus, UpstreamError> {
        let answer = self
            .upstream
            .send(
                "step_up_status",
                self.upstream
                    .client()
                    .get(self.api(&["payments", step_up_id, "status"])?)
                    .bearer_auth(user_token.expose()),
            )
            .await?;
        let wire: WireStepUp = answer.success()?;
        match wire.status.as_str() {
            "pending" => Ok(StepUpStatus::Pending),
            // Approved while the card issuer fails: no token now, ask again.
            "approved" if wire.payment_token.is_none() && wire.error.is_some() => {
                Ok(StepUpStatus::ApprovedWithoutToken)
            }
            "approved" => Ok(StepUpStatus::Approved(payment_token(
                wire.payment_id,
                wire.payment_token,
                wire.expires_in,
            )?)),
            "rejected" => Ok(StepUpStatus::Rejected),
            "expired" => Ok(StepUpStatus::Expired),
            _ => Err(malformed("step-up status")),
        }
    }

    async fn revoke_token(&self, token: &BearerToken) -> Result<(), UpstreamError> {
        let form = [
            ("token", token.expose()),
            ("client_id", self.credentials.client_id.as_str()),
        ];
        let answer = self
            .upstream
            .send(
                "revoke",
                self.upstream
                    .client()
                    .post(self.api(&["oauth", "revoke"])?)
                    .form(&form),
            )
            .await?;
        if answer.status.is_server_error() {
            return Err(answer.error());
        }
        // RFC 7009 §2.2: the wallet answers 200 whatever the token; nothing else to learn.
        Ok(())
    }
}
