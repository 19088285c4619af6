//! The OpenAPI 3.1 document, generated from the handlers and DTOs.

use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{
    ContentBuilder, OpenApi as Document, Ref, RefOr, Required, ResponseBuilder, ServerBuilder,
};
use utoipa::{Modify, OpenApi};

use crate::access::{Access, Policy};
use crate::endpoints;
use crate::routes::{admin, catalog, checkout, guardrails, orders, system};
use sacp_wire::dto;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "SACP Gateway",
        description = "Shop for a person: browse the catalog, build a guest checkout without any login, and let the person approve the exact amount in their wallet (OAuth 2.0 Device Authorization, RFC 8628). Errors are RFC 9457 problem details with a stable `code`. Money is integer minor units with a currency and a `formatted` form.",
    ),
    paths(
        catalog::list_products, catalog::get_product,
        checkout::create, checkout::get, checkout::update, checkout::cancel, checkout::complete,
        checkout::payment_status, checkout::step_up,
        orders::get,
        system::qr, system::healthz, system::readyz, system::metrics,
        admin::create, admin::list, admin::show, admin::update, admin::rotate, admin::revoke,
        guardrails::audit, guardrails::traffic, guardrails::switches, guardrails::set_switches,
    ),
    components(schemas(
        dto::MoneyDto, dto::ProductDto, dto::ProductListDto, dto::CheckoutRequestDto, dto::CheckoutDto,
        dto::AuthorizationRequiredDto, dto::CompleteAcceptedDto, dto::CompletedDto, dto::StepUpRequiredDto, dto::PaymentStatusDto,
        dto::StepUpStatusDto, dto::OrderDto, dto::HealthDto, dto::ProblemDto,
        admin::KeyDto, admin::KeyListDto, admin::NewKeyDto, admin::KeyChangesDto, admin::RotateDto,
        guardrails::AuditEventDto, guardrails::AuditListDto, guardrails::TrafficDto,
        guardrails::TrafficListDto, guardrails::SwitchesDto,
    )),
    modifiers(&UserToken, &ServerErrors, &ApiKeys, &Guardrails),
    tags(
        (name = "catalog", description = "Browse and search products"),
        (name = "checkout", description = "Guest checkout: no login needed"),
        (name = "payment", description = "Payment authorization by the person, in their wallet"),
        (name = "orders", description = "Placed orders (needs the person's wallet token)"),
        (name = "system", description = "Health, readiness and metrics"),
        (name = "admin", description = "Operators: integration keys, audit, traffic, kill switches"),
    )
)]
struct ApiDoc;

struct UserToken;

impl Modify for UserToken {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The operator's SACP_ADMIN_TOKEN (or send an X-API-Key holding the admin scope)",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "user_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The person's wallet (WSIM) access token"))
                    .build(),
            ),
        );
    }
}

/// Every operation may fail on the server side: storage (503), upstreams (502, 503, 504) or
/// an internal error (500), always as a problem.
struct ServerErrors;

impl Modify for ServerErrors {
    fn modify(&self, openapi: &mut Document) {
        let common = [
            ("500", "Internal error"),
            (
                "502",
                "Store or wallet unavailable or answering unexpectedly",
            ),
            (
                "503",
                "Storage unavailable, upstream throttling, a kill switch, or the gateway at capacity; see Retry-After",
            ),
            ("504", "Store or wallet timeout"),
        ];
        // Liveness answers from memory alone.
        for (_, item) in openapi
            .paths
            .paths
            .iter_mut()
            .filter(|(path, _)| path.as_str() != "/healthz")
        {
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.patch,
                &mut item.put,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                for (status, description) in common {
                    operation
                        .responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| problem_response(description));
                }
            }
        }
    }
}

/// Declares the integration key (`X-API-Key`) on every operation that needs one, with the
/// scopes it must hold and the 401/403 answers it may get.
struct ApiKeys;

impl Modify for ApiKeys {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-Key",
                "The integration's API key (operators create them)",
            ))),
        );
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [
                ("GET", &mut item.get),
                ("POST", &mut item.post),
                ("PATCH", &mut item.patch),
                ("PUT", &mut item.put),
                ("DELETE", &mut item.delete),
            ];
            for (method, operation) in operations {
                let Some(operation) = operation else { continue };
                let policy = policy_of(method, path);
                let scopes = match policy.access {
                    // Not a REST operation (MCP is not in this document).
                    Access::Public | Access::AnyKey => continue,
                    Access::Admin => {
                        let requirements = operation.security.get_or_insert_with(Vec::new);
                        requirements
                            .push(SecurityRequirement::new("api_key", Vec::<String>::new()));
                        operation
                            .responses
                            .responses
                            .entry("403".into())
                            .or_insert_with(|| {
                                problem_response("The API key lacks the admin scope")
                            });
                        continue;
                    }
                    Access::Scopes(scopes) => scopes,
                };
                let names: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
                let mut note = format!("Needs an API key with scope `{}`.", names.join("`, `"));
                if policy.search_with_q {
                    note.push_str(" Searching (`q`) also needs `search:read`.");
                }
                operation.description = Some(match operation.description.take() {
                    Some(text) => format!("{text}\n\n{note}"),
                    None => note,
                });
                // The key is needed in every alternative (alongside a user token or not).
                let requirements = operation.security.take().unwrap_or_default();
                let requirements = if requirements.is_empty() {
                    vec![SecurityRequirement::new("api_key", Vec::<String>::new())]
                } else {
                    requirements
                        .into_iter()
                        .map(|r| r.add("api_key", Vec::<String>::new()))
                        .collect()
                };
                operation.security = Some(requirements);
                let responses = &mut operation.responses.responses;
                responses.entry("401".into()).or_insert_with(|| {
                    problem_response("API key missing, unknown, revoked or expired")
                });
                responses
                    .entry("403".into())
                    .or_insert_with(|| problem_response("The API key lacks a required scope"));
            }
        }
    }
}

/// The policy the route of `method` on `path` is guarded by (the document's paths are the
/// route patterns); the docs themselves are public.
fn policy_of(method: &str, path: &str) -> Policy {
    endpoints::find(method, path).map_or(Policy::PUBLIC, |e| e.policy)
}

/// A problem+json answer with this description.
fn problem_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/problem+json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ProblemDto")))
                    .build(),
            )
            .build(),
    )
}

/// Declares the guardrails: 429 on every rate-limited operation, and on every POST/PATCH the
/// optional `Idempotency-Key` header with its 400/409/422 answers.
struct Guardrails;

impl Modify for Guardrails {
    fn modify(&self, openapi: &mut Document) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [
                ("GET", &mut item.get),
                ("POST", &mut item.post),
                ("PATCH", &mut item.patch),
                ("PUT", &mut item.put),
            ];
            for (method, operation) in operations {
                let Some(operation) = operation else { continue };
                let access = policy_of(method, path).access;
                if matches!(access, Access::Scopes(_)) {
                    operation
                        .responses
                        .responses
                        .entry("429".into())
                        .or_insert_with(|| {
                            problem_response(
                                "A rate limit or quota is used up; see Retry-After, RateLimit-Policy and RateLimit",
                            )
                        });
                }
                if matches!(method, "POST" | "PATCH" | "PUT") {
                    // Every body is read whole, within its deadline and size limit.
                    for (status, description) in [
                        (
                            "408",
                            "The body did not arrive in time; the connection is closed",
                        ),
                        ("413", "Body over 64 KiB"),
                    ] {
                        operation
                            .responses
                            .responses
                            .entry(status.into())
                            .or_insert_with(|| problem_response(description));
                    }
                }
                if access == Access::Public || !matches!(method, "POST" | "PATCH") {
                    continue;
                }
                let header = ParameterBuilder::new()
                    .name("Idempotency-Key")
                    .parameter_in(ParameterIn::Header)
                    .required(Required::False)
                    .description(Some(
                        "Optional; 1 to 255 characters, bare or quoted. A repeat with the same body gets the first answer (Idempotent-Replayed: true) for 24 hours.",
                    ))
                    .schema(Some(
                        ObjectBuilder::new().schema_type(Type::String).max_length(Some(257)),
                    ))
                    .build();
                operation
                    .parameters
                    .get_or_insert_with(Vec::new)
                    .push(header);
                let responses = &mut operation.responses.responses;
                for (status, description) in [
                    ("400", "Malformed body or Idempotency-Key"),
                    (
                        "409",
                        "A request with this Idempotency-Key is still in flight",
                    ),
                    (
                        "422",
                        "Invalid fields, or the Idempotency-Key was used with another body",
                    ),
                ] {
                    responses
                        .entry(status.into())
                        .or_insert_with(|| problem_response(description));
                }
            }
        }
    }
}

/// The document as served at `/openapi.json`, rendered once.
#[derive(Debug, Clone)]
pub struct Served(pub actix_web::web::Bytes);

impl Served {
    /// `document` rendered as JSON.
    pub fn of(document: &Document) -> Served {
        Served(serde_json::to_vec(document).unwrap_or_default().into())
    }
}

/// The document, with `public_url` as its server.
pub fn document(public_url: &str) -> Document {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc.servers = Some(vec![
        ServerBuilder::new()
            .url(public_url.trim_end_matches('/'))
            .build(),
    ]);
    doc
}
