//! The guardrail middleware of ADR 019, outermost first: the in-flight cap, the audit and
//! traffic recorder, (authentication lives in [`crate::access`]), admission (kill switches,
//! rate limits and quotas) and idempotent replay. The rules themselves live in
//! [`crate::usecases::Guardrails`] and the domain.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use sacp_domain::access::{SecretHash, key_id_of};
use sacp_domain::audit::{AuditEvent, AuditOutcome};
use sacp_domain::idempotency::{
    Begin, Claim, IdempotencyKey, IdempotencyScope, StoredResponse, fingerprint,
};
use sacp_domain::ratelimit::{Decision, Limit, Policy};
use sacp_domain::switches::Operation;

use crate::access::{API_KEY_HEADER, Access, route_of};
use crate::usecases::{Answering, AppError, Principal};
use crate::{ApiState, MAX_BODY_BYTES, request_id};

/// `RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers).
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit` (draft-ietf-httpapi-ratelimit-headers).
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
/// `Idempotency-Key` (draft-ietf-httpapi-idempotency-key-header).
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// Marks a replayed answer.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// A caller without a key, admitted by the anonymous tier (catalog reads only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnonymousCaller(pub IpAddr);

/// The operator, authenticated by the admin token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operator;

/// The end user a request acted for, once a user token was introspected (audit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndUser(pub String);

/// The idempotency claim this request holds; a handler whose change is local stores its
/// answer in the same transaction and marks the response [`Answered`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyClaim(pub Claim);

/// Response mark: the idempotent answer was already stored with the change.
#[derive(Debug, Clone, Copy)]
pub struct Answered;

/// The request's idempotency claim, for a use case that stores its answer (rendered by
/// `render`) together with the change; `None` without an `Idempotency-Key`.
pub fn answering<'a, T>(
    request: &HttpRequest,
    render: &'a (dyn Fn(&T) -> StoredResponse + Send + Sync),
) -> Option<Answering<'a, T>> {
    let claim = request.extensions().get::<IdempotencyClaim>().cloned()?;
    Some(Answering {
        claim: claim.0,
        render,
    })
}

/// Marks `response` as already stored with its change (when the request held a claim).
pub fn mark_answered(response: &mut HttpResponse, claimed: bool) {
    if claimed {
        response.extensions_mut().insert(Answered);
    }
}

/// Response mark: store this instead of the body sent (answers carrying a secret).
#[derive(Debug, Clone)]
pub struct ReplayAs(pub StoredResponse);

/// Requests in flight on this replica, with a cap.
#[derive(Debug)]
pub struct InFlight {
    current: AtomicUsize,
    max: usize,
}

impl InFlight {
    /// A cap of `max` concurrent requests.
    pub fn new(max: usize) -> InFlight {
        InFlight {
            current: AtomicUsize::new(0),
            max: max.max(1),
        }
    }

    fn enter(self: &Arc<Self>) -> Option<InFlightTicket> {
        let previous = self.current.fetch_add(1, Ordering::AcqRel);
        let ticket = InFlightTicket(self.clone());
        (previous < self.max).then_some(ticket)
    }
}

/// One admitted request; leaving decrements the count.
struct InFlightTicket(Arc<InFlight>);

impl Drop for InFlightTicket {
    fn drop(&mut self) {
        self.0.current.fetch_sub(1, Ordering::AcqRel);
    }
}

fn state_of(request: &ServiceRequest) -> Option<web::Data<ApiState>> {
    request.app_data::<web::Data<ApiState>>().cloned()
}

fn refuse(request: ServiceRequest, error: AppError) -> ServiceResponse<BoxBody> {
    request.error_response(error).map_into_boxed_body()
}

/// Caps requests in flight on this replica: beyond the cap, 503 `overloaded` with
/// `Retry-After` at once, before any work. Health probes are never refused.
pub async fn in_flight(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(state) = state_of(&request) else {
        return Ok(next.call(request).await?.map_into_boxed_body());
    };
    if matches!(request.path(), "/healthz" | "/readyz") {
        return Ok(next.call(request).await?.map_into_boxed_body());
    }
    let Some(_ticket) = state.in_flight.enter() else {
        return Ok(refuse(request, AppError::Overloaded));
    };
    Ok(next.call(request).await?.map_into_boxed_body())
}

/// The id of the resource a request acted on: the created resource's (from `Location`), or
/// the most specific id in the path.
fn resource_of(response: &ServiceResponse<BoxBody>, params: &[(String, String)]) -> Option<String> {
    let created = response
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|l| l.rsplit('/').next())
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    created.or_else(|| {
        ["request_id", "step_up_id", "id"]
            .iter()
            .find_map(|name| params.iter().find(|(n, _)| n == name))
            .map(|(_, v)| v.chars().take(128).collect())
    })
}

/// Counts every answered request per key, route and status (traffic), and writes an audit
/// event — before the answer leaves — for every state-changing call, every authentication
/// or authorization failure and every admin call.
pub async fn record(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(state) = state_of(&request) else {
        return Ok(next.call(request).await?.map_into_boxed_body());
    };
    let method = request.method().clone();
    let matched = route_of(&request);
    let route = match &matched {
        Some(m) => format!("{method} {}", m.pattern),
        None => format!("{method} (unmatched)"),
    };
    let presented = request
        .headers()
        .get(API_KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| key_id_of(v.trim()));
    let response = next.call(request).await?.map_into_boxed_body();
    let status = response.status().as_u16();
    // Only who called: the principal's scopes and limits are not needed here.
    let (caller, subject) = {
        let extensions = response.request().extensions();
        (
            extensions
                .get::<Principal>()
                .map(|p| (p.key_id.clone(), p.org.clone())),
            extensions.get::<EndUser>().map(|u| u.0.clone()),
        )
    };
    let guard = state.gateway.guard();
    guard.count_request(
        caller.as_ref().map(|(key, _)| key.clone()),
        route.clone(),
        status,
    );

    let is_admin = matched.as_ref().is_some_and(|m| m.access == Access::Admin);
    let changes_state = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
    if changes_state || is_admin || matches!(status, 401 | 403) {
        let params = matched.map(|m| m.params.clone()).unwrap_or_default();
        let event = AuditEvent {
            at: guard.now(),
            request_id: request_id::current().unwrap_or_default(),
            key_id: caller.as_ref().map(|(key, _)| key.clone()).or(presented),
            org: caller.map(|(_, org)| org),
            subject,
            action: route,
            resource: resource_of(&response, &params),
            outcome: AuditOutcome::of_status(status),
            status,
        };
        if let Err(error) = guard.audit(&event).await {
            tracing::error!(%error, action = %event.action, "audit event not written");
        }
    }
    Ok(response)
}

/// What the switches see a request as.
fn operation_of(method: &Method, pattern: &str) -> Operation {
    match (method.as_str(), pattern) {
        ("POST", "/checkout") => Operation::CreateCheckout,
        ("POST", "/checkout/{id}/complete") => Operation::CompletePayment,
        ("GET" | "HEAD" | "OPTIONS", _) => Operation::Read,
        _ => Operation::Write,
    }
}

/// A short, stable, non-reversible name for a user token (the per-end-user limit is counted
/// before the token is introspected, so that a flood never reaches the wallet).
fn user_subject(request: &ServiceRequest) -> Option<String> {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|t| !t.is_empty())?;
    Some(format!(
        "user:{}",
        sacp_domain::ids::base32(&SecretHash::of(token).0[..16])
    ))
}

/// The limits one request counts against.
fn limits_for(request: &ServiceRequest, state: &ApiState, operation: Operation) -> Vec<Limit> {
    let settings = state.gateway.guard().settings();
    let mut limits = Vec::new();
    let extensions = request.extensions();
    if let Some(principal) = extensions.get::<Principal>() {
        let key = format!("key:{}", principal.key_id.as_str());
        limits.push(Limit::new(
            Policy::per_minute("key-minute", principal.limits.requests_per_minute),
            key.clone(),
        ));
        limits.push(Limit::new(
            Policy::per_day("key-day", principal.limits.daily_quota),
            key.clone(),
        ));
        limits.push(Limit::new(
            Policy::per_minute("org-minute", settings.org_per_minute),
            format!("org:{}", principal.org),
        ));
        if operation != Operation::Read {
            limits.push(Limit::new(
                Policy::per_minute("key-writes", settings.writes_per_minute),
                key.clone(),
            ));
        }
        match operation {
            Operation::CompletePayment => limits.push(Limit::new(
                Policy::per_minute("key-payments", settings.completions_per_minute),
                key,
            )),
            Operation::CreateCheckout => limits.push(Limit::new(
                Policy::per_day("key-checkouts", settings.checkouts_per_day),
                key,
            )),
            _ => {}
        }
        if let Some(user) = user_subject(request) {
            limits.push(Limit::new(
                Policy::per_minute("user-minute", settings.user_per_minute),
                user,
            ));
        }
    } else if let (Some(AnonymousCaller(ip)), Some(per_minute)) = (
        extensions.get::<AnonymousCaller>(),
        settings.anonymous_per_minute,
    ) {
        limits.push(Limit::new(
            Policy::per_minute("anonymous-minute", per_minute),
            format!("ip:{ip}"),
        ));
    }
    limits
}

fn rate_limit_headers(response: &mut HttpResponse<BoxBody>, decision: &Decision) {
    if decision.usages.is_empty() {
        return;
    }
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&decision.policy_header()) {
        headers.insert(RATELIMIT_POLICY, value);
    }
    if let Ok(value) = HeaderValue::from_str(&decision.limit_header()) {
        headers.insert(RATELIMIT, value);
    }
}

/// Admission, after authentication: the kill switches, then every rate limit and quota
/// that applies (key, organisation, end user, writes, payments, anonymous address). The
/// `RateLimit-Policy` and `RateLimit` headers go on every answer, refusals included.
/// Operator calls and public pages are not limited.
pub async fn admission(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(state) = state_of(&request) else {
        return Ok(next.call(request).await?.map_into_boxed_body());
    };
    let Some(matched) = route_of(&request) else {
        return Ok(next.call(request).await?.map_into_boxed_body());
    };
    if matches!(matched.access, Access::Public | Access::Admin) {
        return Ok(next.call(request).await?.map_into_boxed_body());
    }
    let guard = state.gateway.guard();
    let operation = operation_of(request.method(), matched.pattern);
    if let Err(error) = guard.ensure_allowed(operation).await {
        return Ok(refuse(request, error));
    }
    let limits = limits_for(&request, &state, operation);
    let decision = match guard.admit(&limits).await {
        Ok(decision) => decision,
        Err(error) => return Ok(refuse(request, error)),
    };
    if let Some(error) = guard.refusal(&decision) {
        let mut response = refuse(request, error);
        rate_limit_headers(response.response_mut(), &decision);
        return Ok(response);
    }
    let mut response = next.call(request).await?.map_into_boxed_body();
    rate_limit_headers(response.response_mut(), &decision);
    Ok(response)
}

fn replay(stored: StoredResponse) -> HttpResponse {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut response = HttpResponse::build(status);
    response.insert_header((IDEMPOTENT_REPLAYED, "true"));
    if let Some(content_type) = stored.content_type {
        response.insert_header((header::CONTENT_TYPE, content_type));
    }
    if let Some(location) = stored.location {
        response.insert_header((header::LOCATION, location));
    }
    response.body(stored.body)
}

/// Idempotent writes: a POST or PATCH with `Idempotency-Key` is claimed for its caller,
/// method and path with its body's fingerprint. A repeat gets the stored answer
/// (`Idempotent-Replayed: true`); another body with the same key 422; a repeat while the
/// first runs 409 with `Retry-After`. 5xx answers are not stored (the key can be retried).
pub async fn idempotency(
    mut request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let is_write = matches!(*request.method(), Method::POST | Method::PATCH);
    let header_value = request
        .headers()
        .get(IDEMPOTENCY_KEY)
        .map(|v| v.to_str().map(str::to_owned));
    let (Some(state), true, Some(header_value)) = (state_of(&request), is_write, header_value)
    else {
        return Ok(next.call(request).await?.map_into_boxed_body());
    };
    let key = match header_value
        .map_err(|_| sacp_domain::idempotency::IdempotencyKeyError::Malformed)
        .and_then(|v| IdempotencyKey::parse(&v))
    {
        Ok(key) => key,
        Err(error) => return Ok(refuse(request, error.into())),
    };
    let caller = {
        let extensions = request.extensions();
        match (extensions.get::<Principal>(), extensions.get::<Operator>()) {
            (Some(principal), _) => Some(principal.key_id.as_str().to_owned()),
            (None, Some(_)) => Some("operator".to_owned()),
            (None, None) => None,
        }
    };
    let Some(caller) = caller else {
        return Ok(next.call(request).await?.map_into_boxed_body());
    };
    let body = match request.extract::<web::Payload>().await {
        Ok(payload) => match payload.to_bytes_limited(MAX_BODY_BYTES).await {
            Ok(Ok(body)) => body,
            Ok(Err(_)) => {
                return Ok(refuse(
                    request,
                    AppError::BadRequest("the body could not be read".into()),
                ));
            }
            Err(_) => {
                let problem = crate::problem::Problem::new(
                    "payload_too_large",
                    format!(
                        "request bodies are limited to {} KiB",
                        MAX_BODY_BYTES / 1024
                    ),
                );
                let answer = problem.response(Some(request.path()));
                return Ok(request.into_response(answer));
            }
        },
        Err(error) => return Err(error),
    };
    let fingerprint = fingerprint(&body);
    request.set_payload(body.into());
    let scope = IdempotencyScope {
        caller,
        method: request.method().to_string(),
        path: request.path().to_owned(),
        key,
    };
    let guard = state.gateway.guard();
    let claim = match guard.begin_idempotent(&scope, &fingerprint).await {
        Ok(Begin::Started(claim)) => claim,
        Ok(Begin::Replay(stored)) => return Ok(request.into_response(replay(stored))),
        Ok(Begin::Mismatch) => return Ok(refuse(request, AppError::IdempotencyKeyReused)),
        Ok(Begin::InFlight { retry_after_secs }) => {
            return Ok(refuse(
                request,
                AppError::IdempotencyKeyInFlight {
                    retry_after: retry_after_secs,
                },
            ));
        }
        Err(error) => return Ok(refuse(request, error)),
    };
    request
        .extensions_mut()
        .insert(IdempotencyClaim(claim.clone()));
    let response = match next.call(request).await {
        Ok(response) => response.map_into_boxed_body(),
        Err(error) => {
            let _ = guard.abandon_idempotent(&claim).await;
            return Err(error);
        }
    };
    if response.response().extensions().get::<Answered>().is_some() {
        return Ok(response);
    }
    if response.status().is_server_error() {
        if let Err(error) = guard.abandon_idempotent(&claim).await {
            tracing::warn!(%error, "idempotency claim not released");
        }
        return Ok(response);
    }
    let (request, response) = response.into_parts();
    let replay_as = response.extensions().get::<ReplayAs>().cloned();
    let (head, body) = response.into_parts();
    let body = match actix_web::body::to_bytes(body).await {
        Ok(body) => body,
        Err(_) => {
            let _ = guard.abandon_idempotent(&claim).await;
            return Err(actix_web::error::ErrorInternalServerError(
                "response body failed",
            ));
        }
    };
    let header_text = |name: header::HeaderName| {
        head.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let stored = replay_as.map(|r| r.0).unwrap_or_else(|| StoredResponse {
        status: head.status().as_u16(),
        content_type: header_text(header::CONTENT_TYPE),
        location: header_text(header::LOCATION),
        body: body.to_vec(),
    });
    // Fails (and changes nothing) when a retry took the claim over after its lease ran out.
    if let Err(error) = guard.finish_idempotent(&claim, &stored).await {
        tracing::warn!(%error, "idempotent answer not stored");
    }
    let response = head.set_body(body).map_into_boxed_body();
    Ok(ServiceResponse::new(request, response))
}
