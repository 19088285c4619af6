//! Which key and scope each route needs — one table — and the middleware that enforces it.
//!
//! Every call needs an integration key (`X-API-Key`) except the public routes listed here;
//! a path the table does not name needs a valid key of any scope (so probing unknown paths
//! without a key learns nothing). The route × scope matrix test walks this same table.

use std::rc::Rc;
use std::sync::LazyLock;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{HttpMessage, web};
use sacp_domain::access::{Scope, SecretHash};

use crate::ApiState;
use crate::guard::{AnonymousCaller, Operator};
use crate::usecases::AppError;

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone.
    Public,
    /// A valid key holding every one of these scopes (none = any valid key).
    Scopes(&'static [Scope]),
    /// The operator: `Authorization: Bearer <SACP_ADMIN_TOKEN>`, or a key with `admin`.
    Admin,
}

/// The header carrying the integration key.
pub const API_KEY_HEADER: &str = "x-api-key";

/// Every route of the API with what it needs. `GET /products` with a non-empty `q` also
/// needs `search:read`.
pub const ROUTES: &[(&str, &str, Access)] = &[
    ("GET", "/products", Access::Scopes(&[Scope::CatalogRead])),
    (
        "GET",
        "/products/{id}",
        Access::Scopes(&[Scope::CatalogRead]),
    ),
    ("POST", "/checkout", Access::Scopes(&[Scope::CheckoutWrite])),
    (
        "GET",
        "/checkout/{id}",
        Access::Scopes(&[Scope::CheckoutRead]),
    ),
    (
        "PATCH",
        "/checkout/{id}",
        Access::Scopes(&[Scope::CheckoutWrite]),
    ),
    (
        "POST",
        "/checkout/{id}/cancel",
        Access::Scopes(&[Scope::CheckoutWrite]),
    ),
    (
        "POST",
        "/checkout/{id}/complete",
        Access::Scopes(&[Scope::CheckoutWrite]),
    ),
    (
        "GET",
        "/checkout/{id}/payment-status/{request_id}",
        Access::Scopes(&[Scope::CheckoutRead]),
    ),
    (
        "GET",
        "/checkout/{id}/step-up/{step_up_id}",
        Access::Scopes(&[Scope::CheckoutRead]),
    ),
    ("GET", "/orders/{id}", Access::Scopes(&[Scope::OrdersRead])),
    // The QR code is fetched by the person's phone or browser, which holds no key; the
    // request id in its URL is an unguessable capability.
    ("GET", "/qr/{request_id}", Access::Public),
    ("GET", "/healthz", Access::Public),
    ("GET", "/readyz", Access::Public),
    ("GET", "/openapi.json", Access::Public),
    ("GET", "/docs", Access::Public),
    ("GET", "/docs/{tail}*", Access::Public),
    ("GET", "/problems/{code}", Access::Public),
    ("POST", "/admin/keys", Access::Admin),
    ("GET", "/admin/keys", Access::Admin),
    ("GET", "/admin/keys/{id}", Access::Admin),
    ("PATCH", "/admin/keys/{id}", Access::Admin),
    ("POST", "/admin/keys/{id}/rotate", Access::Admin),
    ("POST", "/admin/keys/{id}/revoke", Access::Admin),
    ("GET", "/admin/audit", Access::Admin),
    ("GET", "/admin/traffic", Access::Admin),
    ("GET", "/admin/switches", Access::Admin),
    ("PUT", "/admin/switches", Access::Admin),
];

/// One segment of a route pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Segment {
    /// Must equal the path's segment.
    Literal(&'static str),
    /// `{name}`: any one non-empty segment.
    Param(&'static str),
    /// `{name}*`: the rest of the path, slashes included.
    Tail(&'static str),
}

fn segments(pattern: &'static str) -> Vec<Segment> {
    pattern
        .trim_start_matches('/')
        .split('/')
        .map(|segment| {
            match segment.strip_prefix('{').and_then(|rest| {
                rest.strip_suffix('}')
                    .map(|n| (n, false))
                    .or_else(|| rest.strip_suffix("}*").map(|n| (n, true)))
            }) {
                Some((name, true)) => Segment::Tail(name),
                Some((name, false)) => Segment::Param(name),
                None => Segment::Literal(segment),
            }
        })
        .collect()
}

/// The path's parameters if it matches `pattern`. A plain segment walk: the table is matched
/// on every request, and a regex per route (actix's `ResourceDef`) was the largest cost of
/// the guarded request path (see docs/benchmarks.md).
fn match_segments(pattern: &[Segment], path: &str) -> Option<Vec<(String, String)>> {
    let mut rest = path.strip_prefix('/')?;
    let mut params = Vec::new();
    for (index, segment) in pattern.iter().enumerate() {
        if let Segment::Tail(name) = segment {
            params.push(((*name).to_owned(), rest.to_owned()));
            return Some(params);
        }
        let (head, tail) = match rest.split_once('/') {
            Some((head, tail)) => (head, Some(tail)),
            None => (rest, None),
        };
        match segment {
            Segment::Literal(literal) if head == *literal => {}
            Segment::Param(name) if !head.is_empty() => {
                params.push(((*name).to_owned(), head.to_owned()));
            }
            _ => return None,
        }
        let last = index + 1 == pattern.len();
        match (tail, last) {
            (None, true) => return Some(params),
            (Some(tail), false) => rest = tail,
            (None, false) | (Some(_), true) => return None,
        }
    }
    None
}

static COMPILED: LazyLock<Vec<(&'static str, Vec<Segment>, Access)>> = LazyLock::new(|| {
    ROUTES
        .iter()
        .map(|(method, pattern, access)| (*method, segments(pattern), *access))
        .collect()
});

/// A request's route in the table, with the values of its path parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchedRoute {
    /// The route pattern, e.g. `/checkout/{id}`.
    pub pattern: &'static str,
    /// What it needs (without the `search:read` refinement of [`required`]).
    pub access: Access,
    /// Path parameters by name.
    pub params: Vec<(String, String)>,
}

/// The table's route for a request, if any.
pub fn matched_route(method: &str, path: &str) -> Option<MatchedRoute> {
    COMPILED
        .iter()
        .zip(ROUTES)
        .filter(|((m, _, _), _)| *m == method)
        .find_map(|((_, segments, access), (_, pattern, _))| {
            match_segments(segments, path).map(|params| MatchedRoute {
                pattern,
                access: *access,
                params,
            })
        })
}

/// The request's route in the table, matched once per request (every guard middleware asks)
/// and remembered in its extensions.
pub fn route_of(request: &ServiceRequest) -> Option<Rc<MatchedRoute>> {
    if let Some(known) = request.extensions().get::<Option<Rc<MatchedRoute>>>() {
        return known.clone();
    }
    let matched = matched_route(request.method().as_str(), request.path()).map(Rc::new);
    request.extensions_mut().insert(matched.clone());
    matched
}

const CATALOG_AND_SEARCH: &[Scope] = &[Scope::CatalogRead, Scope::SearchRead];
const ADMIN: &[Scope] = &[Scope::Admin];

/// What a request needs.
pub fn required(method: &str, path: &str, query: &str) -> Access {
    let access = matched_route(method, path).map_or(Access::Scopes(&[]), |route| route.access);
    refine(access, method, path, query)
}

/// Browsing with search words needs `search:read` as well.
fn refine(access: Access, method: &str, path: &str, query: &str) -> Access {
    let searching = || {
        web::Query::<Vec<(String, String)>>::from_query(query)
            .map(|q| q.iter().any(|(k, v)| k == "q" && !v.trim().is_empty()))
            .unwrap_or(false)
    };
    if method == "GET" && path == "/products" && searching() {
        return Access::Scopes(CATALOG_AND_SEARCH);
    }
    access
}

/// The middleware: authenticates the key and checks the route's scopes; the principal is
/// left in the request's extensions for handlers (and audit).
pub async fn middleware(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let table = route_of(&request).map_or(Access::Scopes(&[]), |route| route.access);
    let scopes = match refine(
        table,
        request.method().as_str(),
        request.path(),
        request.query_string(),
    ) {
        Access::Public => return Ok(next.call(request).await?.map_into_boxed_body()),
        Access::Scopes(scopes) => scopes,
        Access::Admin => ADMIN,
    };
    let Some(state) = request.app_data::<web::Data<ApiState>>().cloned() else {
        return Ok(request
            .error_response(AppError::BadRequest("gateway misconfigured".into()))
            .map_into_boxed_body());
    };
    let presented = request
        .headers()
        .get(API_KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if scopes == ADMIN && presented.is_none() {
        // The operator's token, compared through its SHA-256 in constant time.
        let bearer = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| SecretHash::of(token.trim()));
        return match (bearer, &state.admin_token) {
            (Some(presented), Some(expected)) if presented.matches(expected) => {
                request.extensions_mut().insert(Operator);
                Ok(next.call(request).await?.map_into_boxed_body())
            }
            _ => Ok(request
                .error_response(AppError::AdminCredentialsRequired)
                .map_into_boxed_body()),
        };
    }
    let anonymous_tier = state
        .gateway
        .guard()
        .settings()
        .anonymous_per_minute
        .is_some();
    let catalog_only = !scopes.is_empty() && scopes.iter().all(|s| *s == Scope::CatalogRead);
    if presented.is_none()
        && anonymous_tier
        && catalog_only
        && let Some(ip) = request.peer_addr().map(|a| a.ip())
    {
        request.extensions_mut().insert(AnonymousCaller(ip));
        return Ok(next.call(request).await?.map_into_boxed_body());
    }
    let principal = match state
        .gateway
        .keys()
        .authenticate(presented.as_deref())
        .await
    {
        Ok(principal) => principal,
        Err(error) => return Ok(request.error_response(error).map_into_boxed_body()),
    };
    tracing::Span::current().record("key_id", principal.key_id.as_str());
    // Known before the scope check, so that a refusal is attributed (audit, traffic).
    let refused = principal.require(scopes);
    request.extensions_mut().insert(principal);
    if let Err(error) = refused {
        return Ok(request.error_response(error).map_into_boxed_body());
    }
    Ok(next.call(request).await?.map_into_boxed_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_segment_matcher_agrees_with_actix_on_every_route() {
        let paths = [
            "/products",
            "/products/",
            "/products/p1",
            "/products/p1/",
            "/products/p1/x",
            "/checkout",
            "/checkout/cs_1",
            "/checkout/cs_1/complete",
            "/checkout//complete",
            "/checkout/cs_1/payment-status/par_1",
            "/checkout/cs_1/payment-status/",
            "/docs",
            "/docs/",
            "/docs/index.html",
            "/docs/a/b.css",
            "/admin/keys/k1/rotate",
            "/healthz",
            "/healthz/",
            "",
            "/",
            "//products",
            "/qr/par_1",
            "/problems/x",
        ];
        for (method, pattern, _) in ROUTES {
            let def = actix_web::dev::ResourceDef::new(*pattern);
            let ours = segments(pattern);
            for path in paths {
                let expected = def.is_match(path).then(|| {
                    let mut captured = actix_web::dev::Path::new(path.to_owned());
                    def.capture_match_info(&mut captured);
                    captured
                        .iter()
                        .map(|(n, v)| (n.to_owned(), v.to_owned()))
                        .collect::<Vec<_>>()
                });
                assert_eq!(
                    match_segments(&ours, path),
                    expected,
                    "{method} {pattern} on {path:?}"
                );
            }
        }
    }

    #[test]
    fn routes_map_to_their_scopes() {
        assert_eq!(
            required("GET", "/products", ""),
            Access::Scopes(&[Scope::CatalogRead])
        );
        assert_eq!(
            required("GET", "/products", "q=coffee"),
            Access::Scopes(CATALOG_AND_SEARCH)
        );
        assert_eq!(
            required("GET", "/products", "q=&limit=2"),
            Access::Scopes(&[Scope::CatalogRead])
        );
        assert_eq!(
            required("PATCH", "/checkout/cs_x", ""),
            Access::Scopes(&[Scope::CheckoutWrite])
        );
        assert_eq!(
            required("GET", "/checkout/cs_x", ""),
            Access::Scopes(&[Scope::CheckoutRead])
        );
        assert_eq!(required("GET", "/qr/par_x", ""), Access::Public);
        assert_eq!(required("GET", "/docs/index.html", ""), Access::Public);
        assert_eq!(
            required("GET", "/nowhere", ""),
            Access::Scopes(&[]),
            "unknown paths need a key"
        );
        assert_eq!(required("DELETE", "/healthz", ""), Access::Scopes(&[]));
        assert_eq!(
            required("POST", "/admin/keys/key_x/rotate", ""),
            Access::Admin
        );
    }
}
