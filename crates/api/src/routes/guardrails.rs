//! The operator's view of the guardrails: the audit log, traffic per key, and the global
//! kill switches (`/admin/audit`, `/admin/traffic`, `/admin/switches`).

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use sacp_app::AppError;
use sacp_domain::ApiKeyId;
use sacp_domain::audit::{AuditEvent, TrafficCount};
use sacp_domain::switches::Switches;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::State;
use crate::problem::ApiError;
use sacp_wire::dto::ProblemDto;

/// Filters of the audit and traffic queries.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InspectQuery {
    /// Only this key's rows (`key_...`).
    pub key_id: Option<String>,
    /// Rows to return, 1 to 1000 (default 100).
    pub limit: Option<usize>,
}

impl InspectQuery {
    fn parse(&self) -> Result<(Option<ApiKeyId>, usize), AppError> {
        let key = match &self.key_id {
            Some(id) => Some(ApiKeyId::parse(id).map_err(|_| {
                AppError::BadRequest(format!("key_id {id:?} is not a key id (key_...)"))
            })?),
            None => None,
        };
        let limit = self.limit.unwrap_or(100);
        if !(1..=1000).contains(&limit) {
            return Err(AppError::BadRequest(
                "limit must be between 1 and 1000".into(),
            ));
        }
        Ok((key, limit))
    }
}

/// One audited action.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEventDto {
    /// When it was answered.
    pub at: DateTime<Utc>,
    /// The request's `X-Request-Id`.
    pub request_id: String,
    /// The integration key (never its secret).
    pub key_id: Option<String>,
    /// The key's organisation.
    pub org: Option<String>,
    /// The end user, when a user token was introspected.
    pub subject: Option<String>,
    /// Method and route, e.g. `POST /checkout/{id}/complete`.
    pub action: String,
    /// The resource acted on.
    pub resource: Option<String>,
    /// `success`, `denied` or `failed`.
    pub outcome: String,
    /// The HTTP status answered.
    pub status: u16,
    /// For refusals by a guardrail (a credential, a scope, a limit, a switch, the capacity),
    /// counted together: who was refused — `key:<id>` for a key that authenticated, else
    /// `ip:<address>` — and `at` is the start of the minute. Absent for one request's event.
    pub source: Option<String>,
    /// How many requests the event stands for (1, or the refusals counted in it).
    pub count: u64,
}

impl From<AuditEvent> for AuditEventDto {
    fn from(e: AuditEvent) -> Self {
        AuditEventDto {
            at: e.at,
            request_id: e.request_id,
            key_id: e.key_id.map(|k| k.as_str().to_owned()),
            org: e.org,
            subject: e.subject,
            action: e.action,
            resource: e.resource,
            source: e.source,
            count: e.count,
            outcome: e.outcome.as_str().to_owned(),
            status: e.status,
        }
    }
}

/// Audit events, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditListDto {
    /// The events.
    pub events: Vec<AuditEventDto>,
}

/// Requests of one key to one route with one status in one minute.
#[derive(Debug, Serialize, ToSchema)]
pub struct TrafficDto {
    /// Start of the minute.
    pub minute: DateTime<Utc>,
    /// The key (`null`: calls without a valid key).
    pub key_id: Option<String>,
    /// Method and route.
    pub route: String,
    /// Status answered.
    pub status: u16,
    /// Requests.
    pub count: u64,
}

impl From<TrafficCount> for TrafficDto {
    fn from(c: TrafficCount) -> Self {
        TrafficDto {
            minute: c.minute,
            key_id: c.key_id.map(|k| k.as_str().to_owned()),
            route: c.route,
            status: c.status,
            count: c.count,
        }
    }
}

/// Traffic rows, newest minute first.
#[derive(Debug, Serialize, ToSchema)]
pub struct TrafficListDto {
    /// The rows.
    pub traffic: Vec<TrafficDto>,
}

/// The global kill switches.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SwitchesDto {
    /// `true`: every write of the public API is refused (503 `switched_off`).
    pub read_only: bool,
    /// `false`: `POST /checkout` is refused.
    pub checkout_creation: bool,
    /// `false`: `POST /checkout/{id}/complete` is refused.
    pub payments: bool,
}

impl From<Switches> for SwitchesDto {
    fn from(s: Switches) -> Self {
        SwitchesDto {
            read_only: s.read_only,
            checkout_creation: s.checkout_creation,
            payments: s.payments,
        }
    }
}

/// The audit log.
#[utoipa::path(
    get, path = "/admin/audit", tag = "admin", security(("admin_token" = [])),
    params(InspectQuery),
    responses(
        (status = 200, description = "Events, newest first", body = AuditListDto),
        (status = 400, description = "Bad key_id or limit", body = ProblemDto, content_type = "application/problem+json"),
        (status = 401, description = "Admin credentials missing or refused", body = ProblemDto, content_type = "application/problem+json"),
    )
)]
pub async fn audit(
    state: State,
    query: web::Query<InspectQuery>,
) -> Result<HttpResponse, ApiError> {
    let (key, limit) = query.parse()?;
    let events = state
        .gateway
        .guard()
        .audit_events(key.as_ref(), limit)
        .await?;
    Ok(HttpResponse::Ok().json(AuditListDto {
        events: events.into_iter().map(Into::into).collect(),
    }))
}

/// Requests per key, route, status and minute.
#[utoipa::path(
    get, path = "/admin/traffic", tag = "admin", security(("admin_token" = [])),
    params(InspectQuery),
    responses(
        (status = 200, description = "Rows, newest minute first", body = TrafficListDto),
        (status = 400, description = "Bad key_id or limit", body = ProblemDto, content_type = "application/problem+json"),
        (status = 401, description = "Admin credentials missing or refused", body = ProblemDto, content_type = "application/problem+json"),
    )
)]
pub async fn traffic(
    state: State,
    query: web::Query<InspectQuery>,
) -> Result<HttpResponse, ApiError> {
    let (key, limit) = query.parse()?;
    let rows = state.gateway.guard().traffic(key.as_ref(), limit).await?;
    Ok(HttpResponse::Ok().json(TrafficListDto {
        traffic: rows.into_iter().map(Into::into).collect(),
    }))
}

/// The global kill switches.
#[utoipa::path(
    get, path = "/admin/switches", tag = "admin", security(("admin_token" = [])),
    responses(
        (status = 200, description = "The switches", body = SwitchesDto),
        (status = 401, description = "Admin credentials missing or refused", body = ProblemDto, content_type = "application/problem+json"),
    )
)]
pub async fn switches(state: State) -> Result<HttpResponse, ApiError> {
    let switches = state.gateway.guard().switches().await?;
    Ok(HttpResponse::Ok().json(SwitchesDto::from(switches)))
}

/// Set the global kill switches; every replica applies them within a second.
#[utoipa::path(
    put, path = "/admin/switches", tag = "admin", security(("admin_token" = [])),
    request_body = SwitchesDto,
    responses(
        (status = 200, description = "The switches now", body = SwitchesDto),
        (status = 400, description = "Malformed JSON or a missing field", body = ProblemDto, content_type = "application/problem+json"),
        (status = 401, description = "Admin credentials missing or refused", body = ProblemDto, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = ProblemDto, content_type = "application/problem+json"),
    )
)]
pub async fn set_switches(
    state: State,
    body: web::Json<SwitchesDto>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let switches = state
        .gateway
        .guard()
        .set_switches(Switches {
            read_only: body.read_only,
            checkout_creation: body.checkout_creation,
            payments: body.payments,
        })
        .await?;
    Ok(HttpResponse::Ok().json(SwitchesDto::from(switches)))
}
