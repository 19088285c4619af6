//! The guard, run as a middleware of each route (see [`crate::endpoints`]), so that
//! every decision is made on the route actix dispatched and its declared
//! [`crate::access::Policy`]:
//!
//! 1. the in-flight cap of the replica,
//! 2. authentication and scopes ([`crate::access::authenticate`]),
//! 3. the organisation's share of the in-flight cap,
//! 4. the kill switches,
//! 5. the request body, read whole within a deadline (408 and the connection closed),
//! 6. the rate limits and quotas (key, organisation, end user, writes, payments, address),
//! 7. idempotent replay,
//!
//! then the handler; and afterwards the traffic count and the audit event. Refusals of steps
//! 1–6 are audited aggregated per source and minute (a flood cannot grow the audit log per
//! request); what the handler answers is audited per request. The rules themselves live in
//! [`sacp_app::Guardrails`] and the domain.

use std::borrow::Cow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use actix_web::body::BoxBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::{ConnectionType, Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use sacp_app::{Answering, AppError};
use sacp_domain::idempotency::{
    Begin, Claim, IdempotencyKey, IdempotencyScope, StoredResponse, fingerprint,
};
use sacp_domain::ratelimit::Decision;
use sacp_domain::switches::Operation;

use crate::access::{self, Access, Caller};
use crate::endpoints::Endpoint;
use sacp_ports::telemetry;

use crate::problem::ApiError;
use crate::{ApiState, MAX_BODY_BYTES, request_id, routes};

/// `RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers).
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit` (draft-ietf-httpapi-ratelimit-headers).
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
/// `Idempotency-Key` (draft-ietf-httpapi-idempotency-key-header).
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// Marks a replayed answer.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

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

/// Requests in flight on this replica: a cap for all of them, and a share of it that one
/// organisation (or all callers without a key together) may hold, so that one tenant's slow
/// or stuck requests cannot take the whole replica.
#[derive(Debug)]
pub struct InFlight {
    current: AtomicUsize,
    max: usize,
    per_tenant: usize,
    /// By organisation (`org:<org>`, named by the operator) and `anonymous`: hashed with
    /// foldhash, as no caller picks these names. A tenant's entry stays when its last
    /// request leaves (its next one is counted without inserting it again); idle ones are
    /// dropped once [`TENANTS_KEPT`] are held.
    tenants: Mutex<foldhash::HashMap<Arc<str>, usize>>,
}

/// Most tenants [`InFlight`] keeps entries for before it drops the idle ones.
const TENANTS_KEPT: usize = 4096;

impl InFlight {
    /// A cap of `max` concurrent requests, of which one tenant may hold `per_tenant`.
    pub fn new(max: usize, per_tenant: usize) -> InFlight {
        let max = max.max(1);
        InFlight {
            current: AtomicUsize::new(0),
            max,
            per_tenant: per_tenant.clamp(1, max),
            tenants: Mutex::default(),
        }
    }

    /// The share of the cap one tenant may hold.
    pub fn per_tenant(&self) -> usize {
        self.per_tenant
    }

    fn enter(self: &Arc<Self>) -> Option<InFlightTicket> {
        let previous = self.current.fetch_add(1, Ordering::AcqRel);
        let ticket = InFlightTicket(self.clone());
        (previous < self.max).then_some(ticket)
    }

    fn tenants(&self) -> std::sync::MutexGuard<'_, foldhash::HashMap<Arc<str>, usize>> {
        self.tenants
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// One more request of `tenant`, if its share allows. The name is shared, not copied:
    /// a tenant already holding requests is counted without allocating.
    fn enter_tenant(self: &Arc<Self>, tenant: &Arc<str>) -> Option<TenantTicket> {
        let mut tenants = self.tenants();
        if tenants.len() >= TENANTS_KEPT && !tenants.contains_key(&**tenant) {
            tenants.retain(|_, held| *held > 0);
        }
        let held = match tenants.get_mut(&**tenant) {
            Some(held) => held,
            None => tenants.entry(tenant.clone()).or_insert(0),
        };
        if *held >= self.per_tenant {
            return None;
        }
        *held += 1;
        drop(tenants);
        Some(TenantTicket {
            in_flight: self.clone(),
            tenant: tenant.clone(),
        })
    }
}

/// One admitted request; leaving decrements the count.
#[derive(Debug)]
struct InFlightTicket(Arc<InFlight>);

impl Drop for InFlightTicket {
    fn drop(&mut self) {
        self.0.current.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One request of a tenant; leaving gives its share back.
#[derive(Debug)]
struct TenantTicket {
    in_flight: Arc<InFlight>,
    tenant: Arc<str>,
}

impl Drop for TenantTicket {
    fn drop(&mut self) {
        let mut tenants = self.in_flight.tenants();
        if let Some(held) = tenants.get_mut(&self.tenant) {
            *held = held.saturating_sub(1);
        }
    }
}

/// What a request was admitted with; it lives until the answer is sent.
#[derive(Debug)]
struct Admission {
    caller: Caller,
    decision: Decision,
    /// The `RateLimit-Policy` value, when the key's plan had it made already.
    policy: Option<HeaderValue>,
    body: Option<Bytes>,
    _in_flight: Option<InFlightTicket>,
    _tenant: Option<TenantTicket>,
}

/// Why a request was refused before its handler ran.
#[derive(Debug)]
struct Refusal {
    error: AppError,
    /// Who was known when it was refused (a key that lacks a scope, say).
    caller: Option<Caller>,
    /// The rate-limit usage, for the headers of a 429.
    decision: Option<Decision>,
    /// The body was left unread: close the connection after the answer.
    close: bool,
}

impl From<AppError> for Refusal {
    fn from(error: AppError) -> Refusal {
        Refusal {
            error,
            caller: None,
            decision: None,
            close: false,
        }
    }
}

/// The state every guarded route shares.
fn state_of(request: &ServiceRequest) -> Option<web::Data<ApiState>> {
    request.app_data::<web::Data<ApiState>>().cloned()
}

/// The guard of one route (see the module documentation).
pub async fn guarded(
    endpoint: &'static Endpoint,
    mut request: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    request
        .extensions_mut()
        .insert(crate::metrics::RouteLabel(endpoint.pattern));
    let Some(state) = state_of(&request) else {
        return Ok(request.error_response(ApiError(AppError::BadRequest(
            "gateway misconfigured".into(),
        ))));
    };
    let mut admission = match admit(endpoint, &state, &mut request).await {
        Ok(admission) => admission,
        Err(refusal) => return Ok(refuse(endpoint, &state, request, refusal)),
    };
    // A key's caller is shared with the key's cached copy: cloning it copies a pointer.
    request.extensions_mut().insert(admission.caller.clone());
    let body = admission.body.take();
    let mut response = if endpoint.policy.per_call
        || !claims_idempotency(&request, &admission.caller, body.is_some())
    {
        next.call(request).await?
    } else {
        // In a future of its own: a request that claims nothing does not carry its state.
        Box::pin(idempotent(&state, &admission.caller, request, next, body)).await?
    };
    rate_limit_headers(
        response.response_mut(),
        &admission.decision,
        admission.policy.take(),
    );
    record(endpoint, &state, &admission.caller, &response).await;
    Ok(response)
}

/// Steps 1–6: everything that may refuse a request before its handler runs.
async fn admit(
    endpoint: &Endpoint,
    state: &ApiState,
    request: &mut ServiceRequest,
) -> Result<Admission, Refusal> {
    let policy = &endpoint.policy;
    let in_flight = if policy.capped {
        let ticket = state.in_flight.enter();
        Some(ticket.ok_or_else(|| {
            metrics::counter!(telemetry::IN_FLIGHT_REFUSALS, "scope" => "replica").increment(1);
            AppError::Overloaded { tenant: false }
        })?)
    } else {
        None
    };
    let caller =
        access::authenticate(policy, request, state)
            .await
            .map_err(|(error, caller)| Refusal {
                caller,
                ..Refusal::from(error)
            })?;
    let known = |error: AppError| Refusal {
        caller: Some(caller.clone()),
        ..Refusal::from(error)
    };
    // The operator's admin API is never switched off, limited or held to a tenant's share:
    // it is how an incident is handled.
    let integration = matches!(policy.access, Access::Scopes(_) | Access::AnyKey);
    let guarded_here = integration && !policy.per_call;
    let tenant = match tenant_of(&caller) {
        Some(tenant) if policy.capped && integration => {
            Some(state.in_flight.enter_tenant(tenant).ok_or_else(|| {
                metrics::counter!(telemetry::IN_FLIGHT_REFUSALS, "scope" => "organisation")
                    .increment(1);
                known(AppError::Overloaded { tenant: true })
            })?)
        }
        _ => None,
    };
    let guard = state.gateway.guard();
    if guarded_here {
        guard
            .ensure_allowed(policy.operation)
            .await
            .map_err(known)?;
    }
    let body = if takes_body(request.method()) {
        // In a future of its own: a request without a body does not carry its state.
        let read = Box::pin(read_body(request, state.body_timeout)).await;
        Some(read.map_err(|error| Refusal {
            close: true,
            ..known(error)
        })?)
    } else {
        None
    };
    // A key's limits, and their `RateLimit-Policy` value, come made with its cached copy.
    let (limits, planned_policy) = if guarded_here {
        let user = user_subject(request, body.as_deref());
        let planned = match (&caller, &user) {
            (Caller::Key(principal), None) => Some(principal.plan.policy_header(policy.operation)),
            _ => None,
        };
        (guard.limits_for(&caller, policy.operation, user), planned)
    } else if integration {
        // Each call the request carries counts its operation's limits itself.
        let planned = caller
            .principal()
            .map(|principal| principal.plan.policy_header(Operation::Read));
        (guard.request_limits(&caller), planned)
    } else {
        (Cow::Borrowed(&[][..]), None)
    };
    let decision = guard.admit(&limits).await.map_err(known)?;
    if let Some(error) = guard.refusal(&decision) {
        return Err(Refusal {
            decision: Some(decision),
            ..known(error)
        });
    }
    let policy = planned_policy
        .filter(|_| !decision.usages().is_empty())
        .and_then(policy_value);
    drop(limits);
    Ok(Admission {
        caller,
        decision,
        policy,
        body,
        _in_flight: in_flight,
        _tenant: tenant,
    })
}

/// Most `RateLimit-Policy` values a worker keeps made: one per distinct plan and operation
/// (keys whose limits match share a text), so a few in practice.
const POLICY_VALUES_KEPT: usize = 256;

thread_local! {
    /// `RateLimit-Policy` values made on this worker, by their text (made by the gateway from
    /// the operator's settings, never by a caller: hashed with foldhash). A request takes a
    /// counted reference instead of checking its key's text and copying it into a new value.
    static POLICY_VALUES: std::cell::RefCell<foldhash::HashMap<Box<str>, HeaderValue>> =
        std::cell::RefCell::default();
}

/// The `RateLimit-Policy` value of a key plan's `text` (see [`POLICY_VALUES`]).
fn policy_value(text: &str) -> Option<HeaderValue> {
    POLICY_VALUES.with_borrow_mut(|made| {
        if let Some(value) = made.get(text) {
            return Some(value.clone());
        }
        let value = HeaderValue::from_str(text).ok()?;
        if made.len() >= POLICY_VALUES_KEPT {
            made.clear();
        }
        made.insert(text.into(), value.clone());
        Some(value)
    })
}

/// The tenant every caller without a key belongs to.
static ANONYMOUS_TENANT: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("anonymous"));

/// Whose share of the in-flight cap a caller uses: its organisation's (`org:<org>`, named
/// once per cached copy of its key); callers without a key share one; the operator and
/// public pages use none.
fn tenant_of(caller: &Caller) -> Option<&Arc<str>> {
    match caller {
        Caller::Key(principal) => Some(&principal.tenant),
        Caller::Anonymous(_) => Some(&ANONYMOUS_TENANT),
        Caller::Operator | Caller::Public => None,
    }
}

/// Whether a method's handlers read a body.
fn takes_body(method: &Method) -> bool {
    matches!(*method, Method::POST | Method::PUT | Method::PATCH)
}

/// Reads the whole body (at most [`MAX_BODY_BYTES`]) within `deadline`, and puts it back for
/// the handler. A body that does not arrive in time holds no capacity for longer than that.
async fn read_body(
    request: &mut ServiceRequest,
    deadline: std::time::Duration,
) -> Result<Bytes, AppError> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_BODY_BYTES as u64) {
        return Err(AppError::PayloadTooLarge);
    }
    let payload = request
        .extract::<web::Payload>()
        .await
        .map_err(|_| AppError::BadRequest("the body could not be read".into()))?;
    let body = match tokio::time::timeout(deadline, payload.to_bytes_limited(MAX_BODY_BYTES)).await
    {
        Err(_elapsed) => return Err(AppError::BodyTimeout),
        Ok(Err(_over_limit)) => return Err(AppError::PayloadTooLarge),
        // The listener-wide deadline (`crate::body::deadline`) may fire first.
        Ok(Ok(Err(broken)))
            if broken
                .as_error::<actix_web::error::PayloadError>()
                .is_some_and(crate::body::is_timeout) =>
        {
            return Err(AppError::BodyTimeout);
        }
        Ok(Ok(Err(_broken))) => {
            return Err(AppError::BadRequest("the body could not be read".into()));
        }
        Ok(Ok(Ok(body))) => body,
    };
    request.set_payload(body.clone().into());
    Ok(body)
}

/// The end user of the wallet token the handler would act on, however it was sent (the
/// handler reads it with the same function), for the per-end-user limit.
fn user_subject(request: &ServiceRequest, body: Option<&[u8]>) -> Option<String> {
    let token = routes::user_token(request.request(), body).ok().flatten()?;
    Some(sacp_app::user_subject(&token))
}

/// Longest `RateLimit` value written in place (six limits take about 250 bytes); a longer
/// one is formatted on the heap.
const RATELIMIT_INLINE: usize = 512;

/// Sets the `RateLimit-Policy` value (`policy` when it was made ahead, else rendered from
/// `decision`) and the `RateLimit` value, which is written in place: each header value is
/// one copy into the response.
fn rate_limit_headers(
    response: &mut HttpResponse<BoxBody>,
    decision: &Decision,
    policy: Option<HeaderValue>,
) {
    if decision.usages().is_empty() {
        return;
    }
    let headers = response.headers_mut();
    if let Some(value) = policy.or_else(|| HeaderValue::from_str(&decision.policy_header()).ok()) {
        headers.insert(RATELIMIT_POLICY, value);
    }
    let mut text = [0u8; RATELIMIT_INLINE];
    let value = match decision.write_limit_header(&mut text) {
        Some(length) => HeaderValue::from_bytes(text.get(..length).unwrap_or(&[])),
        None => HeaderValue::from_str(&decision.limit_header()),
    };
    if let Ok(value) = value {
        headers.insert(RATELIMIT, value);
    }
}

/// Answers a refusal, counts it and notes it for the aggregated audit.
fn refuse(
    endpoint: &Endpoint,
    state: &ApiState,
    request: ServiceRequest,
    refusal: Refusal,
) -> ServiceResponse<BoxBody> {
    let peer = request.peer_addr().map(|a| a.ip());
    if let Some(caller) = &refusal.caller {
        // For the access line, which names the key a refusal is attributed to.
        request.extensions_mut().insert(caller.clone());
    }
    let mut response = request.error_response(ApiError(refusal.error));
    if let Some(decision) = &refusal.decision {
        rate_limit_headers(response.response_mut(), decision, None);
    }
    if refusal.close {
        response
            .response_mut()
            .head_mut()
            .set_connection_type(ConnectionType::Close);
    } else {
        let (request, answer) = (response.request().clone(), response.response_mut());
        crate::close_if_body_unread(&request, answer);
    }
    state.gateway.guard().record_refusal(
        refusal.caller.as_ref(),
        peer,
        endpoint.action,
        response.status().as_u16(),
        request_id::current().unwrap_or_default(),
    );
    response
}

/// Longest resource id an audit event names, in characters.
const RESOURCE_MAX_CHARS: usize = 128;

/// The id of the resource a request acted on: the created resource's (from `Location`), or
/// the most specific id in the path (as the router decoded it, at most
/// [`RESOURCE_MAX_CHARS`] characters). Borrowed from the answer.
fn resource_of(response: &ServiceResponse<BoxBody>) -> Option<&str> {
    let created = response
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|l| l.rsplit('/').next())
        .filter(|s| !s.is_empty());
    created.or_else(|| {
        let params = response.request().match_info();
        ["request_id", "step_up_id", "id"]
            .iter()
            .find_map(|name| params.get(name))
            .map(|v| match v.char_indices().nth(RESOURCE_MAX_CHARS) {
                Some((end, _)) => v.get(..end).unwrap_or(v),
                None => v,
            })
    })
}

/// Counts an answered request (traffic) and audits it (see
/// [`sacp_app::Guardrails::record_answer`]); a request carrying MCP calls is only counted,
/// each call being audited as the route it mirrors. What the audit names is borrowed, and
/// only looked for when the answer is audited: one that is only counted allocates nothing.
async fn record(
    endpoint: &Endpoint,
    state: &ApiState,
    caller: &Caller,
    response: &ServiceResponse<BoxBody>,
) {
    let status = response.status().as_u16();
    let per_call = endpoint.policy.per_call;
    if per_call {
        // Counted as the envelope; each call it carried was audited as its route.
        state
            .gateway
            .guard()
            .count_request(caller.principal(), endpoint.action, status);
        return;
    }
    let counted = sacp_app::Answered {
        caller,
        action: endpoint.action,
        status,
        request_id: "",
        resource: None,
        subject: None,
        changes_state: !matches!(endpoint.method, Method::GET | Method::HEAD),
        audit_reads: endpoint.policy.audit_reads,
    };
    if !counted.is_audited() {
        state.gateway.guard().record_answer(counted).await;
        return;
    }
    let subject = response
        .request()
        .extensions()
        .get::<EndUser>()
        .map(|u| u.0.clone());
    let request_id = request_id::shared();
    let audited = sacp_app::Answered {
        request_id: request_id.as_deref().unwrap_or_default(),
        resource: resource_of(response),
        subject: subject.as_deref(),
        ..counted
    };
    state.gateway.guard().record_answer(audited).await;
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

/// The path of the dispatched route with its parameters as the router decoded them: the
/// same resource however the request spelled it (`/%63heckout` is `/checkout`).
fn canonical_path(request: &ServiceRequest) -> String {
    let pattern = request.match_pattern().unwrap_or_default();
    let params = request.match_info();
    pattern
        .split('/')
        .map(|segment| {
            segment
                .strip_prefix('{')
                .and_then(|s| s.strip_suffix('}'))
                .and_then(|name| params.get(name))
                .unwrap_or(segment)
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Whether a request takes part in step 7 (see [`idempotent`]): a POST or PATCH with a body
/// and an `Idempotency-Key`, by a key or the operator.
fn claims_idempotency(request: &ServiceRequest, caller: &Caller, has_body: bool) -> bool {
    matches!(*request.method(), Method::POST | Method::PATCH)
        && has_body
        && matches!(caller, Caller::Key(_) | Caller::Operator)
        && request.headers().contains_key(IDEMPOTENCY_KEY)
}

/// Step 7, idempotent writes: a POST or PATCH with `Idempotency-Key` is claimed for its
/// caller, method and route with its body's fingerprint. A repeat gets the stored answer
/// (`Idempotent-Replayed: true`); another body with the same key 422; a repeat while the
/// first runs 409 with `Retry-After`. 5xx answers are not stored (the key can be retried).
async fn idempotent(
    state: &ApiState,
    caller: &Caller,
    request: ServiceRequest,
    next: Next<BoxBody>,
    body: Option<Bytes>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let is_write = matches!(*request.method(), Method::POST | Method::PATCH);
    let caller = match caller {
        Caller::Key(principal) => Some(principal.key_id.as_str()),
        Caller::Operator => Some("operator"),
        Caller::Anonymous(_) | Caller::Public => None,
    };
    let header_value = is_write
        .then(|| request.headers().get(IDEMPOTENCY_KEY).cloned())
        .flatten();
    let (Some(header_value), Some(caller), Some(body)) = (header_value, caller, body) else {
        return next.call(request).await;
    };
    let caller = caller.to_owned();
    let key = match header_value
        .to_str()
        .map_err(|_| sacp_domain::idempotency::IdempotencyKeyError::Malformed)
        .and_then(IdempotencyKey::parse)
    {
        Ok(key) => key,
        Err(error) => return Ok(request.error_response(ApiError(AppError::from(error)))),
    };
    let scope = IdempotencyScope {
        caller,
        method: request.method().to_string(),
        path: canonical_path(&request),
        key,
    };
    let guard = state.gateway.guard();
    let claim = match guard.begin_idempotent(&scope, &fingerprint(&body)).await {
        Ok(Begin::Started(claim)) => claim,
        Ok(Begin::Replay(stored)) => return Ok(request.into_response(replay(stored))),
        Ok(Begin::Mismatch) => {
            return Ok(request.error_response(ApiError(AppError::IdempotencyKeyReused)));
        }
        Ok(Begin::InFlight { retry_after_secs }) => {
            return Ok(
                request.error_response(ApiError(AppError::IdempotencyKeyInFlight {
                    retry_after: retry_after_secs,
                })),
            );
        }
        Err(error) => return Ok(request.error_response(ApiError(error))),
    };
    request
        .extensions_mut()
        .insert(IdempotencyClaim(claim.clone()));
    let response = match next.call(request).await {
        Ok(response) => response,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_tenant_cannot_take_more_than_its_share() {
        let in_flight = Arc::new(InFlight::new(4, 2));
        let (a, b): (Arc<str>, Arc<str>) = ("org:a".into(), "org:b".into());
        let a1 = in_flight.enter_tenant(&a);
        // Another copy of the key (read again) names the same tenant.
        let a2 = in_flight.enter_tenant(&Arc::from("org:a"));
        assert!(a1.is_some() && a2.is_some());
        assert!(in_flight.enter_tenant(&a).is_none(), "a's share is used");
        assert!(in_flight.enter_tenant(&b).is_some(), "b still gets in");
        drop(a1);
        assert!(in_flight.enter_tenant(&a).is_some(), "given back on drop");
        drop(a2);
        assert_eq!(in_flight.tenants().get("org:a"), Some(&0), "idle");
    }

    #[test]
    fn idle_tenants_are_dropped_once_many_are_kept() {
        let in_flight = Arc::new(InFlight::new(4, 2));
        let busy: Arc<str> = "org:busy".into();
        let _held = in_flight.enter_tenant(&busy);
        for n in 0..TENANTS_KEPT * 2 {
            drop(in_flight.enter_tenant(&Arc::from(format!("org:{n}"))));
        }
        let tenants = in_flight.tenants();
        assert!(tenants.len() <= TENANTS_KEPT, "bounded: {}", tenants.len());
        assert_eq!(tenants.get("org:busy"), Some(&1), "a busy tenant is kept");
    }

    #[test]
    fn policy_values_are_made_once_per_text_and_kept_bounded() {
        let text = "\"key-minute\";q=60;w=60";
        let first = policy_value(text).unwrap();
        assert_eq!(first.to_str().unwrap(), text);
        assert_eq!(policy_value(text), Some(first));
        assert_eq!(policy_value("bad\nvalue"), None, "not a header value");
        for limit in 0..POLICY_VALUES_KEPT * 2 {
            let text = format!("\"key-minute\";q={limit};w=60");
            assert_eq!(policy_value(&text).unwrap().to_str().unwrap(), text);
        }
        assert!(POLICY_VALUES.with_borrow(|made| made.len()) <= POLICY_VALUES_KEPT);
    }

    #[test]
    fn the_cap_counts_every_request_and_gives_back_on_drop() {
        let in_flight = Arc::new(InFlight::new(2, 2));
        let first = in_flight.enter();
        let second = in_flight.enter();
        assert!(first.is_some() && second.is_some());
        assert!(in_flight.enter().is_none());
        drop(first);
        assert!(in_flight.enter().is_some());
    }
}
