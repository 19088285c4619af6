//! The operator's key management: `/admin/keys...`. Needs `Authorization: Bearer
//! <SACP_ADMIN_TOKEN>` or an API key with the `admin` scope.

use std::collections::BTreeSet;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use sacp_app::{AppError, KeyChanges};
use sacp_domain::ValidationErrors;
use sacp_domain::access::{ApiKey, ApiKeySecret, KeyLimits, NewKey, Scope};
use sacp_domain::idempotency::StoredResponse;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::State;
use crate::guard::{self, ReplayAs};
use crate::problem::ApiError;
use sacp_wire::dto::ProblemDto;

/// An integration key as operators see it (never its secret, except once in `key`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct KeyDto {
    /// Key id (`key_...`).
    pub id: String,
    /// Integration name.
    pub name: String,
    /// Organisation.
    pub org: String,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Requests per minute.
    pub requests_per_minute: u32,
    /// Requests per day.
    pub daily_quota: u32,
    /// Expiry, if any.
    pub expires_at: Option<DateTime<Utc>>,
    /// `active`, `revoked` or `expired`.
    pub status: String,
    /// Switched off by an operator (answers 503 while true).
    pub disabled: bool,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last use, as last recorded.
    pub last_used_at: Option<DateTime<Utc>>,
    /// The secret: only in the answers of create and rotate, shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl KeyDto {
    /// The operator's view of a key; `secret` only right after create or rotate.
    pub fn new(key: &ApiKey, secret: Option<&ApiKeySecret>, now: DateTime<Utc>) -> KeyDto {
        let r = key.record();
        KeyDto {
            id: r.id.as_str().to_owned(),
            name: r.name.clone(),
            org: r.org.clone(),
            scopes: r.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
            requests_per_minute: r.limits.requests_per_minute,
            daily_quota: r.limits.daily_quota,
            expires_at: r.expires_at,
            status: key.status(now).as_str().to_owned(),
            disabled: r.disabled,
            created_at: r.created_at,
            last_used_at: r.last_used_at,
            key: secret.map(|s| s.expose().to_owned()),
        }
    }
}

/// Every key.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct KeyListDto {
    /// Oldest first.
    pub keys: Vec<KeyDto>,
}

/// Body of `POST /admin/keys`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKeyDto {
    /// Integration name.
    pub name: String,
    /// Organisation.
    pub org: String,
    /// Scopes, e.g. `["catalog:read", "search:read"]`.
    pub scopes: Vec<String>,
    /// Requests per minute (default 600).
    pub requests_per_minute: Option<u32>,
    /// Requests per day (default 100000).
    pub daily_quota: Option<u32>,
    /// Expiry (RFC 3339), if any.
    pub expires_at: Option<DateTime<Utc>>,
}

/// Body of `PATCH /admin/keys/{id}`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyChangesDto {
    /// New scopes.
    pub scopes: Option<Vec<String>>,
    /// New per-minute limit.
    pub requests_per_minute: Option<u32>,
    /// New daily quota.
    pub daily_quota: Option<u32>,
    /// Switch the key off (true) or back on (false).
    pub disabled: Option<bool>,
}

/// Body of `POST /admin/keys/{id}/rotate`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateDto {
    /// Seconds the old secret keeps working (0 = ends now; at most 30 days). Default 0.
    pub grace_seconds: Option<i64>,
}

fn scopes(names: &[String]) -> Result<BTreeSet<Scope>, AppError> {
    let mut errors = ValidationErrors::default();
    let mut parsed = BTreeSet::new();
    for (index, name) in names.iter().enumerate() {
        match Scope::parse(name) {
            Some(scope) => {
                parsed.insert(scope);
            }
            None => errors.push(
                format!("scopes[{index}]"),
                "invalid_format",
                "must be one of catalog:read, search:read, checkout:read, checkout:write, orders:read, admin",
            ),
        }
    }
    Ok(errors.into_result(parsed)?)
}

/// Create an integration key; the answer carries its secret once.
#[utoipa::path(
    post, path = "/admin/keys", tag = "admin", request_body = NewKeyDto,
    security(("admin_token" = [])),
    responses(
        (status = 201, description = "Created; `key` is the secret, shown once", body = KeyDto),
        (status = 400, description = "Malformed JSON", body = ProblemDto, content_type = "application/problem+json"),
        (status = 401, description = "Admin credentials missing or refused", body = ProblemDto, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = ProblemDto, content_type = "application/problem+json"),
    )
)]
pub async fn create(
    state: State,
    request: HttpRequest,
    body: web::Json<NewKeyDto>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let new = NewKey {
        name: body.name,
        org: body.org,
        scopes: scopes(&body.scopes)?,
        limits: KeyLimits {
            requests_per_minute: body
                .requests_per_minute
                .unwrap_or(KeyLimits::READ_TIER.requests_per_minute),
            daily_quota: body.daily_quota.unwrap_or(KeyLimits::READ_TIER.daily_quota),
        },
        expires_at: body.expires_at,
    };
    let keys = state.gateway.keys();
    let now = keys.now();
    // A replay never carries the secret: it is shown once, and stored nowhere.
    let render = |key: &ApiKey| secretless(201, &KeyDto::new(key, None, now), Some(key));
    let answering = guard::answering(&request, &render);
    let claimed = answering.is_some();
    let (key, secret) = keys.create(new, answering).await?;
    let mut response = HttpResponse::Created()
        .insert_header((
            header::LOCATION,
            format!("/admin/keys/{}", key.id().as_str()),
        ))
        .json(KeyDto::new(&key, Some(&secret), now));
    guard::mark_answered(&mut response, claimed);
    Ok(response)
}

/// The replayable answer for a key: its JSON without the secret.
fn secretless(status: u16, dto: &KeyDto, created: Option<&ApiKey>) -> StoredResponse {
    StoredResponse {
        status,
        content_type: Some("application/json".into()),
        location: created.map(|k| format!("/admin/keys/{}", k.id().as_str())),
        body: serde_json::to_vec(dto).unwrap_or_default(),
    }
}

/// Every integration key.
#[utoipa::path(
    get, path = "/admin/keys", tag = "admin", security(("admin_token" = [])),
    responses(
        (status = 200, description = "Every key, oldest first", body = KeyListDto),
        (status = 401, description = "Admin credentials missing or refused", body = ProblemDto, content_type = "application/problem+json"),
    )
)]
pub async fn list(state: State) -> Result<HttpResponse, ApiError> {
    let keys = state.gateway.keys();
    let now = keys.now();
    let list = keys.list().await?;
    Ok(HttpResponse::Ok().json(KeyListDto {
        keys: list.iter().map(|k| KeyDto::new(k, None, now)).collect(),
    }))
}

/// One integration key.
#[utoipa::path(
    get, path = "/admin/keys/{id}", tag = "admin", security(("admin_token" = [])),
    params(("id" = String, Path, description = "Key id")),
    responses(
        (status = 200, description = "The key", body = KeyDto),
        (status = 401, description = "Admin credentials missing or refused", body = ProblemDto, content_type = "application/problem+json"),
        (status = 404, description = "No such key", body = ProblemDto, content_type = "application/problem+json"),
    )
)]
pub async fn show(state: State, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let keys = state.gateway.keys();
    let key = keys.get(&id).await?;
    Ok(HttpResponse::Ok().json(KeyDto::new(&key, None, keys.now())))
}

/// Change a key's scopes, limits or disable switch.
#[utoipa::path(
    patch, path = "/admin/keys/{id}", tag = "admin", request_body = KeyChangesDto, security(("admin_token" = [])),
    params(("id" = String, Path, description = "Key id")),
    responses(
        (status = 200, description = "The changed key", body = KeyDto),
        (status = 400, description = "Malformed JSON", body = ProblemDto, content_type = "application/problem+json"),
        (status = 401, description = "Admin credentials missing or refused", body = ProblemDto, content_type = "application/problem+json"),
        (status = 404, description = "No such key", body = ProblemDto, content_type = "application/problem+json"),
        (status = 409, description = "The key is revoked or expired", body = ProblemDto, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = ProblemDto, content_type = "application/problem+json"),
    )
)]
pub async fn update(
    state: State,
    id: web::Path<String>,
    body: web::Json<KeyChangesDto>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let changes = KeyChanges {
        scopes: body.scopes.as_deref().map(scopes).transpose()?,
        requests_per_minute: body.requests_per_minute,
        daily_quota: body.daily_quota,
        disabled: body.disabled,
    };
    let keys = state.gateway.keys();
    let key = keys.update(&id, &changes).await?;
    Ok(HttpResponse::Ok().json(KeyDto::new(&key, None, keys.now())))
}

/// The grace a rotation body asks for: none without a body; otherwise the body must be a
/// JSON [`RotateDto`] (a grace that is not an integer, or an unknown field, is refused rather
/// than read as "no grace").
fn rotate_grace(request: &HttpRequest, body: &[u8]) -> Result<i64, AppError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(0);
    }
    let is_json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(AppError::UnsupportedMediaType);
    }
    let dto: RotateDto = serde_json::from_slice(body).map_err(|e| {
        AppError::BadRequest(format!("the JSON body is not valid for this call: {e}"))
    })?;
    Ok(dto.grace_seconds.unwrap_or(0))
}

/// Issue a new secret; the old one works for `grace_seconds` more. A key keeps one previous
/// secret: rotating again ends the earlier secret's grace at once.
#[utoipa::path(
    post, path = "/admin/keys/{id}/rotate", tag = "admin", request_body = RotateDto, security(("admin_token" = [])),
    params(("id" = String, Path, description = "Key id")),
    responses(
        (status = 200, description = "Rotated; `key` is the new secret, shown once", body = KeyDto),
        (status = 400, description = "The body is not a valid rotation (a grace that is not an integer, an unknown field)", body = ProblemDto, content_type = "application/problem+json"),
        (status = 401, description = "Admin credentials missing or refused", body = ProblemDto, content_type = "application/problem+json"),
        (status = 404, description = "No such key", body = ProblemDto, content_type = "application/problem+json"),
        (status = 409, description = "The key is revoked or expired", body = ProblemDto, content_type = "application/problem+json"),
        (status = 415, description = "A body that is not JSON", body = ProblemDto, content_type = "application/problem+json"),
        (status = 422, description = "Invalid grace", body = ProblemDto, content_type = "application/problem+json"),
    )
)]
pub async fn rotate(
    state: State,
    id: web::Path<String>,
    request: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let grace = rotate_grace(&request, &body)?;
    let keys = state.gateway.keys();
    let (key, secret) = keys.rotate(&id, grace).await?;
    let now = keys.now();
    let mut response = HttpResponse::Ok().json(KeyDto::new(&key, Some(&secret), now));
    response.extensions_mut().insert(ReplayAs(secretless(
        200,
        &KeyDto::new(&key, None, now),
        None,
    )));
    Ok(response)
}

/// Revoke a key, at once on every replica.
#[utoipa::path(
    post, path = "/admin/keys/{id}/revoke", tag = "admin", security(("admin_token" = [])),
    params(("id" = String, Path, description = "Key id")),
    responses(
        (status = 200, description = "Revoked", body = KeyDto),
        (status = 401, description = "Admin credentials missing or refused", body = ProblemDto, content_type = "application/problem+json"),
        (status = 404, description = "No such key", body = ProblemDto, content_type = "application/problem+json"),
    )
)]
pub async fn revoke(state: State, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let keys = state.gateway.keys();
    let key = keys.revoke(&id).await?;
    Ok(HttpResponse::Ok().json(KeyDto::new(&key, None, keys.now())))
}
