//! Every endpoint of the API with the policy it is guarded by, and their registration.
//!
//! Each endpoint becomes an actix route wrapped in its own guard ([`crate::guard::guarded`]),
//! so what the guard decides rides on the route actix dispatched. This list is what is
//! registered — not a table consulted beside the router — and the OpenAPI document is
//! annotated from it too. `GET` routes also answer `HEAD`; every resource answers `OPTIONS`
//! and any other method with its `Allow` list.

use actix_web::http::Method;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::from_fn;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, Resource, Route, guard, web};
use sacp_domain::access::Scope;
use sacp_domain::switches::Operation;

use crate::access::Policy;
use crate::problem::{Problem, Respond};
use crate::routes::{admin, catalog, checkout, guardrails, orders, system};

/// One endpoint: a method on a route pattern, its policy and its handler.
#[derive(Debug)]
pub struct Endpoint {
    /// The method (`GET` endpoints answer `HEAD` too).
    pub method: Method,
    /// The route pattern, e.g. `/checkout/{id}`.
    pub pattern: &'static str,
    /// `METHOD pattern`: the name audit, traffic and limits use.
    pub action: &'static str,
    /// What the guard enforces.
    pub policy: Policy,
    handler: fn() -> Route,
}

macro_rules! endpoint {
    ($method:ident $pattern:literal, $policy:expr, $handler:path) => {
        Endpoint {
            method: Method::$method,
            pattern: $pattern,
            action: concat!(stringify!($method), " ", $pattern),
            policy: $policy,
            handler: || web::route().to($handler),
        }
    };
}

const CATALOG: &[Scope] = &[Scope::CatalogRead];
const CHECKOUT_READ: &[Scope] = &[Scope::CheckoutRead];
const CHECKOUT_WRITE: &[Scope] = &[Scope::CheckoutWrite];
const ORDERS: &[Scope] = &[Scope::OrdersRead];

/// Every endpoint, grouped by pattern in registration order.
pub static ENDPOINTS: &[Endpoint] = &[
    endpoint!(GET "/products", Policy::read(CATALOG).searching(), catalog::list_products),
    endpoint!(GET "/products/{id}", Policy::read(CATALOG), catalog::get_product),
    endpoint!(POST "/checkout", Policy::write(CHECKOUT_WRITE, Operation::CreateCheckout), checkout::create),
    endpoint!(GET "/checkout/{id}", Policy::read(CHECKOUT_READ), checkout::get),
    endpoint!(PATCH "/checkout/{id}", Policy::write(CHECKOUT_WRITE, Operation::Write), checkout::update),
    endpoint!(POST "/checkout/{id}/cancel", Policy::write(CHECKOUT_WRITE, Operation::Write), checkout::cancel),
    endpoint!(POST "/checkout/{id}/complete", Policy::write(CHECKOUT_WRITE, Operation::CompletePayment), checkout::complete),
    endpoint!(GET "/checkout/{id}/payment-status/{request_id}", Policy::read(CHECKOUT_READ), checkout::payment_status),
    endpoint!(GET "/checkout/{id}/step-up/{step_up_id}", Policy::read(CHECKOUT_READ), checkout::step_up),
    endpoint!(GET "/orders/{id}", Policy::read(ORDERS), orders::get),
    // The QR code is fetched by the person's phone or browser, which holds no key; the
    // request id in its URL is an unguessable capability.
    endpoint!(GET "/qr/{request_id}", Policy::PUBLIC, system::qr),
    endpoint!(GET "/healthz", Policy::PROBE, system::healthz),
    endpoint!(GET "/readyz", Policy::PROBE, system::readyz),
    endpoint!(GET "/problems/{code}", Policy::PUBLIC, system::problem_page),
    endpoint!(GET "/metrics", Policy::SCRAPE, system::metrics),
    endpoint!(GET "/openapi.json", Policy::PUBLIC, system::openapi_json),
    endpoint!(GET "/docs", Policy::PUBLIC, system::docs_redirect),
    endpoint!(GET "/docs/{_:.*}", Policy::PUBLIC, system::docs_file),
    endpoint!(GET "/admin/keys", Policy::ADMIN_READ, admin::list),
    endpoint!(POST "/admin/keys", Policy::ADMIN_WRITE, admin::create),
    endpoint!(GET "/admin/keys/{id}", Policy::ADMIN_READ, admin::show),
    endpoint!(PATCH "/admin/keys/{id}", Policy::ADMIN_WRITE, admin::update),
    endpoint!(POST "/admin/keys/{id}/rotate", Policy::ADMIN_WRITE, admin::rotate),
    endpoint!(POST "/admin/keys/{id}/revoke", Policy::ADMIN_WRITE, admin::revoke),
    endpoint!(GET "/admin/audit", Policy::ADMIN_READ, guardrails::audit),
    endpoint!(GET "/admin/traffic", Policy::ADMIN_READ, guardrails::traffic),
    endpoint!(GET "/admin/switches", Policy::ADMIN_READ, guardrails::switches),
    endpoint!(PUT "/admin/switches", Policy::ADMIN_WRITE, guardrails::set_switches),
];

/// The MCP endpoint's guard: any key (or the anonymous tier), with each tool call guarded
/// by the MCP service as the route it mirrors. The service itself is `sacp-mcp`'s; the
/// server mounts it behind [`guard_mcp`].
pub static MCP: Endpoint = Endpoint {
    method: Method::POST,
    pattern: "/mcp",
    action: "POST /mcp",
    policy: Policy::MCP,
    handler: || web::route().to(HttpResponse::NotFound),
};

/// The guard of the MCP endpoint, as a middleware of the scope the MCP service is mounted
/// in.
pub async fn guard_mcp(
    request: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<actix_web::body::BoxBody>,
) -> Result<actix_web::dev::ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    crate::guard::guarded(&MCP, request, next).await
}

/// The endpoint of `method` on `pattern`, if there is one (`HEAD` is `GET`'s).
pub fn find(method: &str, pattern: &str) -> Option<&'static Endpoint> {
    let method = if method == "HEAD" { "GET" } else { method };
    ENDPOINTS
        .iter()
        .find(|e| e.method.as_str() == method && e.pattern == pattern)
}

/// The route of one endpoint: its handler inside its guard, selected by its method.
fn route(endpoint: &'static Endpoint) -> Route {
    let route = (endpoint.handler)().wrap(from_fn(move |request, next| {
        crate::guard::guarded(endpoint, request, next)
    }));
    if endpoint.method == Method::GET {
        route.guard(guard::Any(guard::Get()).or(guard::Head()))
    } else {
        route.method(endpoint.method.clone())
    }
}

/// The `Allow` value of a resource whose endpoints have `methods`.
fn allow_header(methods: &[&Method]) -> String {
    let mut allowed: Vec<&str> = methods.iter().map(|m| m.as_str()).collect();
    if allowed.contains(&"GET") {
        allowed.push("HEAD");
    }
    allowed.push("OPTIONS");
    allowed.join(", ")
}

/// What a resource answers to a method it has no endpoint for: `OPTIONS` gets 204 and the
/// `Allow` list, anything else 405 with it. Decided before any key is looked at.
async fn other_method(
    request: HttpRequest,
    pattern: &'static str,
    allow: HeaderValue,
) -> HttpResponse {
    request
        .extensions_mut()
        .insert(crate::metrics::RouteLabel(pattern));
    if let Some(state) = request.app_data::<web::Data<crate::ApiState>>() {
        let status = if request.method() == Method::OPTIONS {
            204
        } else {
            405
        };
        state
            .gateway
            .guard()
            .count_request(None, crate::UNMATCHED, status);
    }
    let mut response = if request.method() == Method::OPTIONS {
        HttpResponse::NoContent().finish()
    } else {
        Problem::new(
            "method_not_allowed",
            format!(
                "{} is not allowed here; allowed: {}. See /openapi.json",
                request.method(),
                allow.to_str().unwrap_or_default()
            ),
        )
        .response(Some(request.path()))
    };
    response.headers_mut().insert(header::ALLOW, allow);
    crate::close_if_body_unread(&request, &mut response);
    response
}

/// The resources of every endpoint, in order, each with its routes and its `Allow` answer.
pub fn resources() -> Vec<Resource> {
    let mut patterns: Vec<&'static str> = Vec::new();
    for endpoint in ENDPOINTS {
        if !patterns.contains(&endpoint.pattern) {
            patterns.push(endpoint.pattern);
        }
    }
    patterns
        .into_iter()
        .map(|pattern| {
            let endpoints: Vec<&'static Endpoint> =
                ENDPOINTS.iter().filter(|e| e.pattern == pattern).collect();
            let methods: Vec<&Method> = endpoints.iter().map(|e| &e.method).collect();
            let allow = HeaderValue::from_str(&allow_header(&methods))
                .unwrap_or_else(|_| HeaderValue::from_static("OPTIONS"));
            let resource = endpoints
                .into_iter()
                .fold(web::resource(pattern), |resource, endpoint| {
                    resource.route(route(endpoint))
                });
            resource.default_service(web::to(move |request: HttpRequest| {
                other_method(request, pattern, allow.clone())
            }))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_endpoint_is_declared_once_and_get_implies_head() {
        for (index, endpoint) in ENDPOINTS.iter().enumerate() {
            assert!(
                ENDPOINTS[..index]
                    .iter()
                    .all(|e| (e.method.clone(), e.pattern)
                        != (endpoint.method.clone(), endpoint.pattern)),
                "{} declared twice",
                endpoint.action
            );
            assert_eq!(
                endpoint.action,
                format!("{} {}", endpoint.method, endpoint.pattern)
            );
        }
        assert_eq!(
            find("HEAD", "/healthz").map(|e| e.action),
            Some("GET /healthz")
        );
        assert!(find("DELETE", "/healthz").is_none());
        assert_eq!(
            allow_header(&[&Method::GET, &Method::PATCH]),
            "GET, PATCH, HEAD, OPTIONS"
        );
    }
}
