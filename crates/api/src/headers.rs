//! Headers every answer of the API carries: no caching of answers that may hold secrets,
//! buyer data or orders, and the browser hardening headers (`nosniff`, no framing, no
//! referrer, a content security policy).

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;

/// The browsable docs load their own scripts, styles and images, nothing else.
const DOCS_POLICY: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// JSON and images are never rendered as documents.
const API_POLICY: &str = "default-src 'none'; frame-ancestors 'none'";

/// Adds the headers an answer does not set itself. Answers that may be cached say so
/// themselves (the catalog, with its `ETag`); everything else is `no-store`.
pub async fn security(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let mut response = next.call(request).await?.map_into_boxed_body();
    // The pattern of the resource that answered, as the router matched it.
    let is_docs = response
        .request()
        .match_pattern()
        .is_some_and(|p| p.starts_with("/docs"));
    let policy = if is_docs { DOCS_POLICY } else { API_POLICY };
    let headers = response.headers_mut();
    let defaults: [(HeaderName, &'static str); 5] = [
        (header::CACHE_CONTROL, "no-store"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CONTENT_SECURITY_POLICY, policy),
    ];
    for (name, value) in defaults {
        if !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
    Ok(response)
}
