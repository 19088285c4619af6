//! The simulated wallet's HTTP face: OAuth and payment endpoints under `/api/agent/v1`, the
//! approval pages under `/m`, and sim control under `/sim`.

use std::sync::Arc;

use actix_web::http::header;
use actix_web::middleware::{DefaultHeaders, from_fn};
use actix_web::{HttpRequest, HttpResponse, Scope, web};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::pages;
use super::{
    FaultSource, basic, bearer, body_fields, error_response, inject_faults, respond, text_field,
};
use crate::SimError;
use crate::faults::Faults;
use crate::wallet_core::{DeviceRequest, PaymentAnswer, StepUpState, TokenOut, WalletCore};

type Core = web::Data<WalletCore>;

/// The grant type of RFC 8628 token requests.
pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// The wallet mounted at `path`.
pub fn scope(path: &str, core: Arc<WalletCore>) -> Scope {
    let source = FaultSource::Wallet(core.clone());
    web::scope(path)
        .app_data(web::Data::from(core))
        .service(
            web::scope("/api/agent/v1")
                .app_data(web::Data::new(source))
                .wrap(from_fn(inject_faults))
                .route(
                    "/oauth/device_authorization",
                    web::post().to(device_authorization),
                )
                .route("/oauth/token", web::post().to(token))
                .route("/oauth/introspect", web::post().to(introspect))
                .route("/oauth/revoke", web::post().to(revoke))
                .route("/payments/token", web::post().to(payment_token))
                .route("/payments/{id}/status", web::get().to(step_up_status)),
        )
        .service(
            // The person's pages: never framed (the Approve button cannot be overlaid by
            // another site), no scripts, forms posting to themselves only.
            web::scope("/m")
                .wrap(
                    DefaultHeaders::new()
                        .add((header::X_FRAME_OPTIONS, "DENY"))
                        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
                        .add((header::REFERRER_POLICY, "no-referrer"))
                        .add((
                            header::CONTENT_SECURITY_POLICY,
                            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
                        )),
                )
                .route("/device", web::get().to(pages::device_page))
                .route("/device", web::post().to(pages::device_decision))
                .route("/step-up/{id}", web::get().to(pages::step_up_page))
                .route("/step-up/{id}", web::post().to(pages::step_up_decision)),
        )
        .route("/sim/users/token", web::post().to(issue_user_token))
        .route("/sim/faults", web::get().to(get_faults))
        .route("/sim/faults", web::put().to(put_faults))
        .route("/sim/stats", web::get().to(stats))
}

fn token_json(token: &TokenOut) -> Value {
    json!({
        "access_token": token.access_token,
        "token_type": "Bearer",
        "expires_in": token.expires_in,
        "scope": token.scope,
    })
}

/// Reads spending limits sent as a JSON object, as a JSON string inside a form, or as
/// `spending_limits[per_transaction]`-style form keys.
fn spending_limits(fields: &Map<String, Value>) -> Map<String, Value> {
    match fields.get("spending_limits") {
        Some(Value::Object(map)) => map.clone(),
        Some(Value::String(text)) => serde_json::from_str(text).unwrap_or_default(),
        _ => fields
            .iter()
            .filter_map(|(key, value)| {
                let inner = key.strip_prefix("spending_limits[")?.strip_suffix(']')?;
                Some((inner.to_owned(), value.clone()))
            })
            .collect(),
    }
}

async fn device_authorization(core: Core, request: HttpRequest, body: web::Bytes) -> HttpResponse {
    respond(body_fields(&request, &body).and_then(|fields| {
        let limits = spending_limits(&fields);
        let device_request = DeviceRequest {
            agent_name: text_field(&fields, "agent_name"),
            agent_description: text_field(&fields, "agent_description"),
            scope: text_field(&fields, "scope"),
            per_transaction: text_field(&limits, "per_transaction"),
            daily: text_field(&limits, "daily"),
            monthly: text_field(&limits, "monthly"),
            currency: text_field(&limits, "currency"),
            buyer_email: text_field(&fields, "buyer_email"),
        };
        let grant = core.start_device(&device_request)?;
        let mut body = json!({
            "device_code": grant.device_code,
            "user_code": grant.user_code,
            "verification_uri": grant.verification_uri,
            "verification_uri_complete": grant.verification_uri_complete,
            "expires_in": grant.expires_in,
            "interval": grant.interval,
        });
        if let (Some(sent), Some(map)) = (grant.notification_sent, body.as_object_mut()) {
            map.insert("notification_sent".into(), Value::Bool(sent));
        }
        Ok(body)
    }))
}

async fn token(core: Core, request: HttpRequest, body: web::Bytes) -> HttpResponse {
    respond(body_fields(&request, &body).and_then(|fields| {
        match text_field(&fields, "grant_type").as_deref() {
            Some(DEVICE_CODE_GRANT) => {
                let code = text_field(&fields, "device_code").unwrap_or_default();
                core.poll_device(&code).map(|t| token_json(&t))
            }
            Some("client_credentials") => core
                .client_credentials(
                    text_field(&fields, "client_id").as_deref(),
                    text_field(&fields, "client_secret").as_deref(),
                    basic(request.headers()).is_some(),
                )
                .map(|t| token_json(&t)),
            _ => Err(SimError::oauth(
                400,
                "unsupported_grant_type",
                "unsupported grant_type",
            )),
        }
    }))
}

async fn introspect(core: Core, request: HttpRequest, body: web::Bytes) -> HttpResponse {
    respond(body_fields(&request, &body).and_then(|fields| {
        let credentials = basic(request.headers());
        let token = text_field(&fields, "token").unwrap_or_default();
        let answer = core.introspect(
            credentials.as_ref().map(|(i, s)| (i.as_str(), s.as_str())),
            &token,
        )?;
        Ok(answer.active.unwrap_or_else(|| json!({"active": false})))
    }))
}

async fn revoke(core: Core, request: HttpRequest, body: web::Bytes) -> HttpResponse {
    if let Ok(fields) = body_fields(&request, &body)
        && let Some(token) = text_field(&fields, "token")
    {
        core.revoke(&token);
    }
    // The real wallet: always 200, whatever the token.
    HttpResponse::Ok().json(json!({"revoked": true}))
}

async fn payment_token(core: Core, request: HttpRequest, body: web::Bytes) -> HttpResponse {
    let bearer = bearer(request.headers());
    respond(body_fields(&request, &body).and_then(|fields| {
        let answer = core.payment_token(
            bearer.as_deref(),
            text_field(&fields, "amount").as_deref(),
            text_field(&fields, "currency").as_deref(),
            text_field(&fields, "merchant_id").as_deref(),
            text_field(&fields, "merchant_name").as_deref(),
        )?;
        Ok(match answer {
            PaymentAnswer::Issued(issued) => json!({
                "step_up_required": false,
                "payment_id": issued.payment_id,
                "payment_token": issued.payment_token,
                "expires_in": issued.expires_in,
                "payment_method": {"id": "pm_demo_visa", "type": "card", "last_four": "4242"},
            }),
            PaymentAnswer::StepUp(step_up) => json!({
                "step_up_required": true,
                "step_up_id": step_up.step_up_id,
                "status": "awaiting_authorization",
                "step_up_expires_at": step_up.expires_at.to_rfc3339(),
                "reason": step_up.reason,
                "trigger_type": step_up.trigger_type,
                "poll_url": format!("{}/api/agent/v1/payments/{}/status", core.config().public_base, step_up.step_up_id),
                "approval_url": format!("{}/m/step-up/{}", core.config().public_base, step_up.step_up_id),
            }),
        })
    }))
}

async fn step_up_status(core: Core, id: web::Path<String>, request: HttpRequest) -> HttpResponse {
    let bearer = bearer(request.headers());
    respond(core.step_up_status(bearer.as_deref(), &id).map(|state| {
        let status = match &state {
            StepUpState::Pending => "pending",
            StepUpState::Approved(_) | StepUpState::ApprovedWithoutToken => "approved",
            StepUpState::Rejected => "rejected",
            StepUpState::Expired => "expired",
        };
        let mut body = json!({"type": "step_up", "step_up_id": id.as_str(), "status": status});
        if let (StepUpState::ApprovedWithoutToken, Some(map)) = (&state, body.as_object_mut()) {
            // As the real wallet, when the card issuer fails after the person approved.
            map.insert("error".into(), json!("payment_provider_error"));
        }
        if let (StepUpState::Approved(issued), Some(map)) = (&state, body.as_object_mut()) {
            map.insert("payment_token".into(), json!(issued.payment_token));
            map.insert("payment_id".into(), json!(issued.payment_id));
            map.insert("expires_in".into(), json!(issued.expires_in));
        }
        body
    }))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct UserTokenRequest {
    /// Per-transaction limit in decimal dollars; absent = unlimited.
    per_transaction: Option<String>,
    currency: Option<String>,
    /// The wallet user the token belongs to; absent = the demo user.
    user: Option<String>,
}

async fn issue_user_token(core: Core, body: Option<web::Json<UserTokenRequest>>) -> HttpResponse {
    let request = body.map(web::Json::into_inner).unwrap_or_default();
    let currency = sacp_domain::Currency::parse(request.currency.as_deref().unwrap_or("CAD"));
    let limit = match (request.per_transaction, currency) {
        (None, _) => Ok(None),
        (Some(text), Ok(currency)) => sacp_domain::Money::parse_decimal(&text, currency).map(Some),
        (Some(_), Err(error)) => Err(error),
    };
    match limit {
        Ok(limit) => {
            let owner = request
                .user
                .as_deref()
                .unwrap_or(crate::wallet_core::DEMO_OWNER);
            HttpResponse::Ok().json(token_json(&core.issue_user_token_for(owner, limit)))
        }
        Err(error) => error_response(&SimError::oauth(400, "invalid_request", &error.to_string())),
    }
}

async fn get_faults(core: Core) -> HttpResponse {
    HttpResponse::Ok().json(core.faults())
}

async fn put_faults(core: Core, faults: web::Json<Faults>) -> HttpResponse {
    core.set_faults(faults.into_inner());
    HttpResponse::Ok().json(core.faults())
}

async fn stats(core: Core) -> HttpResponse {
    let stats = core.stats();
    HttpResponse::Ok().json(json!({
        "device_authorizations": stats.device_authorizations,
        "device_polls": stats.device_polls,
        "device_tokens_minted": stats.device_tokens_minted,
        "payment_tokens_issued": stats.payment_tokens_issued,
        "payment_token_requests": stats.payment_token_requests,
        "tokens_revoked": stats.tokens_revoked,
    }))
}
