//! `Origin` validation of the MCP endpoint: a browser page of another site must not drive a
//! client's MCP session (DNS rebinding, cross-site requests). A request without `Origin` (not
//! from a browser) passes; one from an origin not allowed gets 403 before anything else.

use std::sync::Arc;

use actix_web::body::BoxBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpResponse};
use sacp_wire::RequestId;
use sacp_wire::problem::Problem;

/// The origins whose pages may call the endpoint: the public URL's, and those the operator
/// adds. Compared as `scheme://host[:port]`, case-insensitively, default ports left out.
#[derive(Debug, Clone)]
pub struct AllowedOrigins(Arc<Vec<String>>);

impl AllowedOrigins {
    /// The public URL's origin and `extra` ones.
    pub fn new(public_url: &str, extra: &[String]) -> AllowedOrigins {
        let mut origins: Vec<String> = std::iter::once(public_url)
            .chain(extra.iter().map(String::as_str))
            .filter_map(normalize)
            .collect();
        origins.sort();
        origins.dedup();
        AllowedOrigins(Arc::new(origins))
    }

    /// Whether a request with this `Origin` value may be served.
    pub fn allows(&self, origin: &str) -> bool {
        normalize(origin).is_some_and(|o| self.0.contains(&o))
    }
}

/// `scheme://host[:port]` of a URL or origin, lower-cased, without a default port.
/// (Parsing stops at the first `/`, `?` or `#`: a path never widens an origin.)
fn normalize(url: &str) -> Option<String> {
    let (scheme, rest) = url.trim().split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let authority = rest.split(['/', '?', '#']).next()?.to_ascii_lowercase();
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let authority = match (scheme.as_str(), authority.rsplit_once(':')) {
        ("http", Some((host, "80"))) | ("https", Some((host, "443"))) => host.to_owned(),
        _ => authority,
    };
    Some(format!("{scheme}://{authority}"))
}

/// The middleware (mount it outermost on the MCP scope).
pub async fn check_origin(
    allowed: AllowedOrigins,
    request: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let origins: Vec<&HeaderValue> = request.headers().get_all(header::ORIGIN).collect();
    let refused = match origins.as_slice() {
        [] => false,
        [one] => !one.to_str().is_ok_and(|o| allowed.allows(o)),
        _ => true,
    };
    if !refused {
        return next.call(request).await;
    }
    let request_id = request.extensions().get::<RequestId>().map(|r| r.0.clone());
    let problem = Problem::new(
        "forbidden_origin",
        "requests from this Origin are not served: MCP is for clients, and for pages of the gateway's own origin",
    );
    let body = problem.body(Some(request.path()), request_id.as_deref());
    let response = HttpResponse::build(StatusCode::FORBIDDEN)
        .content_type("application/problem+json")
        .body(body.to_string());
    Ok(request.into_response(response))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_public_origin_and_the_operators_are_allowed() {
        let allowed = AllowedOrigins::new(
            "https://Gateway.Example.com:443/base",
            &["http://localhost:6274".to_owned()],
        );
        assert!(allowed.allows("https://gateway.example.com"));
        assert!(allowed.allows("https://gateway.example.com:443"));
        assert!(allowed.allows("http://localhost:6274"));
        for foreign in [
            "https://evil.example",
            "http://gateway.example.com",
            "https://gateway.example.com.evil.example",
            "null",
            "",
            "https://user@gateway.example.com",
        ] {
            assert!(!allowed.allows(foreign), "{foreign}");
        }
    }
}
