//! Health, readiness, QR codes, problem pages, the OpenAPI document and its browsable docs.

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use sacp_app::AppError;

use super::State;
use crate::problem::ApiError;
use crate::problem::{PROBLEMS, Problem, Respond};
use sacp_wire::dto::{HealthDto, ProblemDto};

/// Liveness and version.
#[utoipa::path(get, path = "/healthz", tag = "system", responses((status = 200, description = "Alive", body = HealthDto)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(HealthDto {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

/// This replica's metrics in the Prometheus text format, for the operator (scrapers
/// without credentials use `SACP_METRICS_LISTEN` instead).
#[utoipa::path(
    get, path = "/metrics", tag = "system",
    responses(
        (status = 200, description = "Prometheus text exposition (version 0.0.4)", body = String, content_type = "text/plain; version=0.0.4; charset=utf-8"),
        (status = 404, description = "This gateway serves no metrics", body = ProblemDto, content_type = "application/problem+json"),
    )
)]
pub async fn metrics(state: State) -> Result<HttpResponse, ApiError> {
    let source = state
        .metrics
        .as_ref()
        .ok_or(AppError::NotFound("metrics"))?;
    Ok(HttpResponse::Ok()
        .content_type(crate::METRICS_CONTENT_TYPE)
        .body(source.render().await))
}

/// Readiness: 200 when storage answers, else 503.
#[utoipa::path(
    get, path = "/readyz", tag = "system",
    responses(
        (status = 200, description = "Ready", body = HealthDto),
        (status = 503, description = "Not ready", body = ProblemDto, content_type = "application/problem+json"),
    )
)]
pub async fn readyz(state: State) -> Result<HttpResponse, ApiError> {
    state.gateway.ready().await?;
    Ok(HttpResponse::Ok().json(HealthDto {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    }))
}

/// A PNG QR code of a pending authorization's link.
#[utoipa::path(
    get, path = "/qr/{request_id}", tag = "payment",
    params(("request_id" = String, Path, description = "Payment request id (`par_...`)")),
    responses(
        (status = 200, description = "PNG image of the authorization URL", content_type = "image/png"),
        (status = 404, description = "No such request", body = ProblemDto, content_type = "application/problem+json"),
        (status = 410, description = "No longer pending", body = ProblemDto, content_type = "application/problem+json"),
    )
)]
pub async fn qr(state: State, request_id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let url = state.gateway.qr_target(&request_id).await?;
    let png = sacp_wire::qr::png(&url).ok_or_else(|| {
        AppError::BadRequest("the authorization URL cannot be encoded as a QR code".into())
    })?;
    Ok(HttpResponse::Ok()
        .content_type("image/png")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(png))
}

/// The OpenAPI 3.1 document.
pub async fn openapi_json(document: web::Data<crate::openapi::Served>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(document.0.clone())
}

/// The Swagger UI's configuration: it renders the gateway's own `/openapi.json`.
#[derive(Clone)]
pub struct DocsConfig(pub std::sync::Arc<utoipa_swagger_ui::Config<'static>>);

impl std::fmt::Debug for DocsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DocsConfig")
    }
}

/// A file of the browsable docs (the Swagger UI, served from assets embedded in the binary).
pub async fn docs_file(
    file: web::Path<String>,
    config: web::Data<DocsConfig>,
) -> Result<HttpResponse, ApiError> {
    match utoipa_swagger_ui::serve(&file, config.0.clone()) {
        Ok(Some(found)) => Ok(HttpResponse::Ok()
            .content_type(found.content_type)
            .body(found.bytes.into_owned())),
        Ok(None) => Err(AppError::NotFound("documentation file").into()),
        Err(error) => {
            tracing::error!(%error, "the docs could not be served");
            Err(AppError::NotFound("documentation file").into())
        }
    }
}

/// The browsable docs live under `/docs/`.
pub async fn docs_redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "/docs/"))
        .finish()
}

/// What a problem code means (the `type` of every problem body points here).
pub async fn problem_page(code: web::Path<String>) -> HttpResponse {
    match PROBLEMS.iter().find(|(c, ..)| *c == code.as_str()) {
        Some((code, status, title, meaning)) => HttpResponse::Ok().json(serde_json::json!({
            "code": code, "status": status, "title": title, "description": meaning,
        })),
        None => Problem::new("not_found", "no such problem type").response(None),
    }
}
