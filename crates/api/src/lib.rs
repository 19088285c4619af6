//! The REST API of the SACP gateway, an inbound adapter over the use cases of `sacp-app`:
//! routes, middleware, RFC 9457 errors and the OpenAPI document.
//!
//! This crate depends on the use cases and the ports only; the server binary wires adapters
//! in.

pub mod access;
pub mod body;
pub mod catalog_cache;

pub mod endpoints;
pub mod guard;
pub mod headers;
pub mod metrics;
pub mod openapi;
pub mod problem;
pub mod request_id;
mod routes;
pub mod trace;

pub use routes::admin::KeyDto;

use std::sync::Arc;
use std::time::Duration;

use actix_web::error::{InternalError, JsonPayloadError, PayloadError, QueryPayloadError};
use actix_web::middleware::from_fn;
use actix_web::{HttpRequest, HttpResponse, web};
use sacp_app::Gateway;

use sacp_domain::access::SecretHash;

use crate::catalog_cache::CatalogCache;
use crate::guard::InFlight;
use crate::problem::{Problem, Respond};
use sacp_wire::dto::Links;

pub use sacp_wire::MAX_BODY_BYTES;

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
    /// How long a request body may take to arrive.
    pub body_timeout: Duration,
    /// What `GET /metrics` answers (the binary's exporter); `None`: no metrics here.
    pub metrics: Option<Arc<dyn MetricsSource>>,
}

/// The Prometheus exposition of this replica's metrics, rendered on demand.
#[async_trait::async_trait]
pub trait MetricsSource: Send + Sync + std::fmt::Debug {
    /// The metrics now, in the Prometheus text format (version 0.0.4), gauges read from
    /// storage refreshed first.
    async fn render(&self) -> String;
}

/// The content type of the Prometheus text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Default cap on requests in flight per replica.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;

/// Default time a request body may take to arrive.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);

impl ApiState {
    /// State whose returned links start with `public_url`, accepting `admin_token` (if any)
    /// for the admin API.
    pub fn new(gateway: Gateway, public_url: &str, admin_token: Option<&str>) -> ApiState {
        ApiState {
            gateway,
            links: Links::new(public_url),
            admin_token: admin_token.filter(|t| !t.is_empty()).map(SecretHash::of),
            in_flight: Arc::new(InFlight::new(
                DEFAULT_MAX_IN_FLIGHT,
                DEFAULT_MAX_IN_FLIGHT / 2,
            )),
            catalog_cache: Arc::new(CatalogCache::new(Duration::ZERO)),
            body_timeout: DEFAULT_BODY_TIMEOUT,
            metrics: None,
        }
    }

    /// The same state answering `GET /metrics` (to the operator) from `source`.
    pub fn with_metrics(mut self, source: Arc<dyn MetricsSource>) -> ApiState {
        self.metrics = Some(source);
        self
    }

    /// The same state keeping catalog answers for `ttl` (zero: not at all).
    pub fn with_catalog_cache(mut self, ttl: Duration) -> ApiState {
        self.catalog_cache = Arc::new(CatalogCache::new(ttl));
        self
    }

    /// The same state with a cap of `max` requests in flight, of which one organisation (or
    /// all callers without a key together) may hold `per_org`.
    pub fn with_max_in_flight(mut self, max: usize, per_org: usize) -> ApiState {
        self.in_flight = Arc::new(InFlight::new(max, per_org));
        self
    }

    /// The same state giving request bodies `timeout` to arrive.
    pub fn with_body_timeout(mut self, timeout: Duration) -> ApiState {
        self.body_timeout = timeout;
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

async fn not_found(request: HttpRequest, state: web::Data<ApiState>) -> HttpResponse {
    state.gateway.guard().count_request(None, UNMATCHED, 404);
    let mut response = Problem::new(
        "not_found",
        format!(
            "no route for {} {}; see /openapi.json",
            request.method(),
            request.path()
        ),
    )
    .response(Some(request.path()));
    close_if_body_unread(&request, &mut response);
    response
}

/// Closes the connection after `response` when the request announced a body that is left
/// unread (a refusal before any handler reads it), rather than waiting for that body.
pub(crate) fn close_if_body_unread(request: &HttpRequest, response: &mut HttpResponse) {
    let headers = request.headers();
    let announced = headers.contains_key(actix_web::http::header::TRANSFER_ENCODING)
        || headers
            .get(actix_web::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0");
    if announced {
        response
            .head_mut()
            .set_connection_type(actix_web::http::ConnectionType::Close);
    }
}

/// Whether a path segment is `.` or `..`, also percent-encoded (`%2e`, `%2E`, mixed):
/// compared with every spelling rather than decoded, as this runs on every request.
fn is_dot_segment(segment: &str) -> bool {
    const SPELLINGS: [&str; 6] = [".", "..", "%2e", "%2e%2e", ".%2e", "%2e."];
    SPELLINGS
        .iter()
        .any(|spelling| segment.eq_ignore_ascii_case(spelling))
}

/// Refuses paths with `.` or `..` segments before routing: clients remove them (RFC 3986
/// §5.2.4) before sending, and the router would otherwise take `..` for an id.
async fn dot_segments(
    request: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    if request.path().split('/').any(is_dot_segment) {
        let mut answer = Problem::new(
            "not_found",
            format!(
                "no route for {} {}: paths with '.' or '..' segments are not served",
                request.method(),
                request.path()
            ),
        )
        .response(Some(request.path()));
        close_if_body_unread(request.request(), &mut answer);
        return Ok(request.into_response(answer));
    }
    Ok(next.call(request).await?.map_into_boxed_body())
}

/// The traffic route of requests that match no route.
pub const UNMATCHED: &str = "(unmatched)";

/// Registers the public API on an app, in a scope of its own so that its middleware (every
/// error answer is problem+json, security headers) does not touch other services mounted
/// beside it, such as the sandbox simulators. Register those first: this scope answers every
/// other path (404, before any key is looked at).
pub fn configure(
    state: ApiState,
    public_url: &str,
) -> impl FnOnce(&mut web::ServiceConfig) + use<> {
    let document = openapi::Served::of(&openapi::document(public_url));
    move |cfg: &mut web::ServiceConfig| {
        let mut scope = web::scope("")
            .wrap(from_fn(dot_segments))
            .wrap(from_fn(problem::fallback))
            .wrap(from_fn(headers::security))
            .app_data(
                web::JsonConfig::default()
                    .limit(MAX_BODY_BYTES)
                    .error_handler(json_error),
            )
            .app_data(web::QueryConfig::default().error_handler(query_error))
            .app_data(web::PayloadConfig::default().limit(MAX_BODY_BYTES));
        for resource in endpoints::resources() {
            scope = scope.service(resource);
        }
        // App-level, so that every service of the app (the guards, the fallback) reaches it.
        let docs =
            routes::system::DocsConfig(Arc::new(utoipa_swagger_ui::Config::from("/openapi.json")));
        cfg.app_data(web::Data::new(state))
            .app_data(web::Data::new(document))
            .app_data(web::Data::new(docs))
            .service(scope.default_service(web::to(not_found)));
    }
}

#[cfg(test)]
mod tests {
    use super::is_dot_segment;

    #[test]
    fn dot_segments_are_recognised_in_every_spelling() {
        for dot in [".", "..", "%2e", "%2E", "%2e%2E", ".%2e", "%2e."] {
            assert!(is_dot_segment(dot), "{dot}");
        }
        for other in [
            "",
            "...",
            "%2e%2e%2e",
            "a.",
            ".a",
            "%2",
            "%2f",
            "%2é",
            "é",
            "products",
            "%2e%2",
        ] {
            assert!(!is_dot_segment(other), "{other}");
        }
    }
}
