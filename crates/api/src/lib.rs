//! HTTP API of the SACP gateway: routes, middleware, RFC 9457 errors, the OpenAPI document,
//! and the use cases that handlers and background workers share.
//!
//! This crate depends on the ports only; the server binary wires adapters in.

pub mod access;
pub mod catalog_cache;
pub mod driver;
pub mod dto;
pub mod guard;
pub mod openapi;
pub mod problem;
pub mod request_id;
mod routes;
pub mod usecases;

pub use routes::admin::KeyDto;

use std::sync::Arc;

use actix_web::error::{InternalError, JsonPayloadError, PayloadError, QueryPayloadError};
use actix_web::middleware::from_fn;
use actix_web::{HttpRequest, HttpResponse, web};
use utoipa_swagger_ui::SwaggerUi;

use sacp_domain::access::SecretHash;

use crate::catalog_cache::CatalogCache;
use crate::dto::Links;
use crate::guard::InFlight;
use crate::problem::Problem;
use crate::usecases::Gateway;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct ApiState {
    /// The use cases.
    pub gateway: Gateway,
    /// Builder of the URLs the API returns.
    pub links: Links,
    /// Hash of the operator's admin token (`SACP_ADMIN_TOKEN`); `None` = no token accepted.
    pub admin_token: Option<SecretHash>,
    /// Requests in flight on this replica and their cap.
    pub in_flight: Arc<InFlight>,
    /// Rendered catalog answers (off unless a TTL is set).
    pub catalog_cache: Arc<CatalogCache>,
}

/// Default cap on requests in flight per replica.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;

impl ApiState {
    /// State whose returned links start with `public_url`, accepting `admin_token` (if any)
    /// for the admin API.
    pub fn new(gateway: Gateway, public_url: &str, admin_token: Option<&str>) -> ApiState {
        ApiState {
            gateway,
            links: Links::new(public_url),
            admin_token: admin_token.filter(|t| !t.is_empty()).map(SecretHash::of),
            in_flight: Arc::new(InFlight::new(DEFAULT_MAX_IN_FLIGHT)),
            catalog_cache: Arc::new(CatalogCache::new(std::time::Duration::ZERO)),
        }
    }

    /// The same state keeping catalog answers for `ttl` (zero: not at all).
    pub fn with_catalog_cache(mut self, ttl: std::time::Duration) -> ApiState {
        self.catalog_cache = Arc::new(CatalogCache::new(ttl));
        self
    }

    /// The same state with a cap of `max` requests in flight.
    pub fn with_max_in_flight(mut self, max: usize) -> ApiState {
        self.in_flight = Arc::new(InFlight::new(max));
        self
    }
}

fn json_error(error: JsonPayloadError, request: &HttpRequest) -> actix_web::Error {
    let problem = match &error {
        JsonPayloadError::OverflowKnownLength { .. } | JsonPayloadError::Overflow { .. } => {
            Problem::new(
                "payload_too_large",
                format!(
                    "request bodies are limited to {} KiB",
                    MAX_BODY_BYTES / 1024
                ),
            )
        }
        JsonPayloadError::Payload(PayloadError::Overflow) => Problem::new(
            "payload_too_large",
            format!(
                "request bodies are limited to {} KiB",
                MAX_BODY_BYTES / 1024
            ),
        ),
        JsonPayloadError::ContentType => Problem::new(
            "unsupported_media_type",
            "send the body as JSON with Content-Type: application/json",
        ),
        JsonPayloadError::Deserialize(e) => Problem::new(
            "bad_request",
            format!("the JSON body is not valid for this call: {e}"),
        ),
        other => Problem::new(
            "bad_request",
            format!("the body could not be read: {other}"),
        ),
    };
    // Render now, inside the request's context, so the body carries the request id.
    InternalError::from_response(error, problem.response(Some(request.path()))).into()
}

fn query_error(error: QueryPayloadError, request: &HttpRequest) -> actix_web::Error {
    let problem = Problem::new(
        "bad_request",
        format!("the query string is not valid: {error}"),
    );
    InternalError::from_response(error, problem.response(Some(request.path()))).into()
}

async fn not_found(request: HttpRequest) -> HttpResponse {
    Problem::new(
        "not_found",
        format!(
            "no route for {} {}; see /openapi.json",
            request.method(),
            request.path()
        ),
    )
    .response(Some(request.path()))
}

async fn method_not_allowed(request: HttpRequest) -> HttpResponse {
    Problem::new(
        "method_not_allowed",
        format!(
            "{} is not allowed on {}; see /openapi.json",
            request.method(),
            request.path()
        ),
    )
    .response(Some(request.path()))
}

/// A resource whose other methods answer 405 problem+json.
fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

/// Registers the public API on an app, in a scope of its own so that its middleware (every
/// error answer is problem+json) does not touch other services mounted beside it, such as the
/// sandbox simulators. Register those first: this scope answers every other path (404).
pub fn configure(
    state: ApiState,
    public_url: &str,
) -> impl FnOnce(&mut web::ServiceConfig) + use<> {
    let document = openapi::document(public_url);
    move |cfg: &mut web::ServiceConfig| {
        // App-level, so that the access middleware (which runs before the scope's routing)
        // can reach the use cases.
        cfg.app_data(web::Data::new(state)).service(
            web::scope("")
                // Innermost first: actix runs the last `wrap` first.
                .wrap(from_fn(guard::idempotency))
                .wrap(from_fn(guard::admission))
                .wrap(from_fn(access::middleware))
                .wrap(from_fn(guard::record))
                .wrap(from_fn(guard::in_flight))
                .wrap(from_fn(problem::fallback))
                .app_data(
                    web::JsonConfig::default()
                        .limit(MAX_BODY_BYTES)
                        .error_handler(json_error),
                )
                .app_data(web::QueryConfig::default().error_handler(query_error))
                .app_data(web::PayloadConfig::default().limit(MAX_BODY_BYTES))
                .service(resource("/products").route(web::get().to(routes::catalog::list_products)))
                .service(
                    resource("/products/{id}").route(web::get().to(routes::catalog::get_product)),
                )
                .service(resource("/checkout").route(web::post().to(routes::checkout::create)))
                .service(
                    resource("/checkout/{id}")
                        .route(web::get().to(routes::checkout::get))
                        .route(web::patch().to(routes::checkout::update)),
                )
                .service(
                    resource("/checkout/{id}/cancel")
                        .route(web::post().to(routes::checkout::cancel)),
                )
                .service(
                    resource("/checkout/{id}/complete")
                        .route(web::post().to(routes::checkout::complete)),
                )
                .service(
                    resource("/checkout/{id}/payment-status/{request_id}")
                        .route(web::get().to(routes::checkout::payment_status)),
                )
                .service(
                    resource("/checkout/{id}/step-up/{step_up_id}")
                        .route(web::get().to(routes::checkout::step_up)),
                )
                .service(resource("/orders/{id}").route(web::get().to(routes::orders::get)))
                .service(resource("/qr/{request_id}").route(web::get().to(routes::system::qr)))
                .service(resource("/healthz").route(web::get().to(routes::system::healthz)))
                .service(resource("/readyz").route(web::get().to(routes::system::readyz)))
                .service(
                    resource("/problems/{code}").route(web::get().to(routes::system::problem_page)),
                )
                .service(
                    resource("/admin/keys")
                        .route(web::get().to(routes::admin::list))
                        .route(web::post().to(routes::admin::create)),
                )
                .service(
                    resource("/admin/keys/{id}")
                        .route(web::get().to(routes::admin::show))
                        .route(web::patch().to(routes::admin::update)),
                )
                .service(
                    resource("/admin/keys/{id}/rotate")
                        .route(web::post().to(routes::admin::rotate)),
                )
                .service(
                    resource("/admin/keys/{id}/revoke")
                        .route(web::post().to(routes::admin::revoke)),
                )
                .service(resource("/admin/audit").route(web::get().to(routes::guardrails::audit)))
                .service(
                    resource("/admin/traffic").route(web::get().to(routes::guardrails::traffic)),
                )
                .service(
                    resource("/admin/switches")
                        .route(web::get().to(routes::guardrails::switches))
                        .route(web::put().to(routes::guardrails::set_switches)),
                )
                .service(web::redirect("/docs", "/docs/"))
                .service(SwaggerUi::new("/docs/{_:.*}").url("/openapi.json", document))
                .default_service(web::to(not_found)),
        );
    }
}
