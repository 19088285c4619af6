//! The OpenAPI 3.1 document, generated from the handlers and DTOs.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, OpenApi as Document, Ref, RefOr, ResponseBuilder, ServerBuilder,
};
use utoipa::{Modify, OpenApi};

use crate::dto;
use crate::routes::{catalog, checkout, orders, system};

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
        system::qr, system::healthz, system::readyz,
    ),
    components(schemas(
        dto::MoneyDto, dto::ProductDto, dto::ProductListDto, dto::CheckoutRequestDto, dto::CheckoutDto,
        dto::AuthorizationRequiredDto, dto::CompleteAcceptedDto, dto::CompletedDto, dto::StepUpRequiredDto, dto::PaymentStatusDto,
        dto::StepUpStatusDto, dto::OrderDto, dto::HealthDto, dto::ProblemDto,
    )),
    modifiers(&UserToken, &ServerErrors),
    tags(
        (name = "catalog", description = "Browse and search products"),
        (name = "checkout", description = "Guest checkout: no login needed"),
        (name = "payment", description = "Payment authorization by the person, in their wallet"),
        (name = "orders", description = "Placed orders (needs the person's wallet token)"),
        (name = "system", description = "Health and readiness"),
    )
)]
struct ApiDoc;

struct UserToken;

impl Modify for UserToken {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
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
        let problem = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/problem+json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ProblemDto")))
                        .build(),
                )
                .build()
        };
        let common = [
            ("500", "Internal error"),
            (
                "502",
                "Store or wallet unavailable or answering unexpectedly",
            ),
            (
                "503",
                "Storage unavailable or upstream throttling; see Retry-After",
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
                        .or_insert_with(|| RefOr::T(problem(description)));
                }
            }
        }
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
