//! The simulated store's HTTP face: `GET /.well-known/ucp` at its root and the agent API
//! under `/api/agent/v1`, plus sim control under `/sim`.

use std::sync::Arc;

use actix_web::middleware::from_fn;
use actix_web::{HttpRequest, HttpResponse, Scope, web};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{FaultSource, bearer, body_fields, dollars, error_response, inject_faults, respond};
use crate::SimError;
use crate::catalog::{CURRENCY, SimProduct};
use crate::faults::Faults;
use crate::store_core::{
    Completion, LineRequest, SessionChange, SimBuyer, SimFulfillment, SimOrder, SimSession,
    StoreCore,
};

type Core = web::Data<StoreCore>;

/// The store mounted at `path`.
pub fn scope(path: &str, core: Arc<StoreCore>) -> Scope {
    let source = FaultSource::Store(core.clone());
    web::scope(path)
        .app_data(web::Data::from(core))
        .route("/.well-known/ucp", web::get().to(discovery))
        .service(
            web::scope("/api/agent/v1")
                .app_data(web::Data::new(source))
                .wrap(from_fn(inject_faults))
                .route("/products", web::get().to(list_products))
                .route("/products/search", web::get().to(search_products))
                .route("/products/{id}", web::get().to(get_product))
                .route("/sessions", web::post().to(create_session))
                .route("/sessions/{id}", web::get().to(get_session))
                .route("/sessions/{id}", web::patch().to(update_session))
                .route("/sessions/{id}", web::delete().to(cancel_session))
                .route("/sessions/{id}/complete", web::post().to(complete_session))
                .route("/orders/{id}", web::get().to(get_order)),
        )
        .route("/sim/faults", web::get().to(get_faults))
        .route("/sim/faults", web::put().to(put_faults))
        .route("/sim/stats", web::get().to(stats))
}

async fn discovery(core: Core) -> HttpResponse {
    let config = core.config();
    HttpResponse::Ok().json(json!({
        "version": "2026-01-01",
        "merchant": {
            "id": config.merchant_id,
            "name": config.merchant_name,
            "url": config.public_base,
            "currency": CURRENCY,
        },
        "capabilities": {
            "catalog": true,
            "search": true,
            "checkout_sessions": true,
            "guest_checkout": true,
            "orders": true,
        },
        "api": {"base_url": format!("{}/api/agent/v1", config.public_base)},
        "wallet_provider": {"name": "WSIM", "type": "oauth2"},
        "session_config": {
            "expiration_minutes": config.session_minutes,
            "expiration_range": {"min": 5, "max": 60},
        },
    }))
}

fn product_json(product: &SimProduct) -> Value {
    let price = sacp_domain::Money::from_minor(product.price_cents, sacp_domain::Currency::CAD);
    json!({
        "id": product.id,
        "name": product.name,
        "description": product.description,
        "price": {"amount": dollars(price), "currency": CURRENCY},
        "images": [{"url": format!("https://images.example/{}.jpg", product.id), "alt": product.name}],
        "inventory": {"available": product.available, "quantity": product.quantity},
        "categories": product.categories,
        "schema_org": {
            "@context": "https://schema.org",
            "@type": "Product",
            "name": product.name,
            "sku": product.id,
            "offers": {
                "@type": "Offer",
                "price": price.to_decimal_string(),
                "priceCurrency": CURRENCY,
                "availability": if product.available { "https://schema.org/InStock" } else { "https://schema.org/OutOfStock" },
            },
        },
    })
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<String>,
    offset: Option<String>,
    category: Option<String>,
    #[serde(rename = "minPrice")]
    min_price: Option<String>,
    #[serde(rename = "maxPrice")]
    max_price: Option<String>,
    q: Option<String>,
}

fn number<T: std::str::FromStr>(
    text: Option<&String>,
    default: T,
    name: &str,
) -> Result<T, SimError> {
    match text {
        None => Ok(default),
        Some(text) => text.parse().map_err(|_| {
            SimError::store(400, "invalid_request", &format!("{name} must be a number"))
        }),
    }
}

fn pagination(total: usize, limit: usize, offset: usize) -> Value {
    json!({"total": total, "limit": limit, "offset": offset, "has_more": offset + limit < total})
}

async fn list_products(core: Core, query: web::Query<ListQuery>) -> HttpResponse {
    core.count_catalog_read();
    respond((|| {
        let limit = number(query.limit.as_ref(), 20usize, "limit")?.clamp(1, 100);
        let offset = number(query.offset.as_ref(), 0usize, "offset")?;
        let min = query
            .min_price
            .as_ref()
            .map(|v| number(Some(v), 0i64, "minPrice"))
            .transpose()?;
        let max = query
            .max_price
            .as_ref()
            .map(|v| number(Some(v), 0i64, "maxPrice"))
            .transpose()?;
        let (page, total) = core.list(query.category.as_deref(), min, max, limit, offset);
        Ok(json!({
            "products": page.into_iter().map(product_json).collect::<Vec<_>>(),
            "pagination": pagination(total, limit, offset),
        }))
    })())
}

async fn search_products(core: Core, query: web::Query<ListQuery>) -> HttpResponse {
    core.count_catalog_read();
    respond((|| {
        let limit = number(query.limit.as_ref(), 20usize, "limit")?.clamp(1, 100);
        let offset = number(query.offset.as_ref(), 0usize, "offset")?;
        let q = query.q.clone().unwrap_or_default();
        let (page, total) = core.search(&q, limit, offset)?;
        Ok(json!({
            "products": page.into_iter().map(product_json).collect::<Vec<_>>(),
            "query": q,
            "pagination": pagination(total, limit, offset),
        }))
    })())
}

async fn get_product(core: Core, id: web::Path<String>) -> HttpResponse {
    core.count_catalog_read();
    respond(core.product(&id).map(product_json))
}

pub(crate) fn session_json(session: &SimSession) -> Value {
    let line = |l: &crate::store_core::SimLine| {
        json!({
            "product_id": l.product_id,
            "name": l.name,
            "quantity": l.quantity,
            "unit_price": dollars(l.unit_price),
            "subtotal": dollars(l.subtotal),
        })
    };
    let payment = session.order_id.as_ref().map(|order_id| {
        json!({"status": "captured", "order_id": order_id, "transaction_id": session.transaction_id})
    });
    json!({
        "session_id": session.id,
        "status": session.status.as_str(),
        "next_step": session.next_step(),
        "cart": {
            "items": session.cart.items.iter().map(line).collect::<Vec<_>>(),
            "subtotal": dollars(session.cart.subtotal),
            "tax": dollars(session.cart.tax),
            "shipping": session.cart.shipping.map(dollars),
            "total": dollars(session.cart.total),
            "currency": CURRENCY,
        },
        "buyer": session.buyer,
        "fulfillment": session.fulfillment,
        "payment": payment,
        "messages": session.messages.iter().map(|(at, kind, message)| json!({
            "timestamp": at.to_rfc3339(), "type": kind, "message": message,
        })).collect::<Vec<_>>(),
        "expires_at": session.expires_at.to_rfc3339(),
        "created_at": session.created_at.to_rfc3339(),
        "updated_at": session.updated_at.to_rfc3339(),
    })
}

fn session_change(fields: &serde_json::Map<String, Value>) -> Result<SessionChange, SimError> {
    let invalid = |what: &str| SimError::store(400, "invalid_request", &format!("Invalid {what}"));
    let items = match fields.get("items") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .map(|item| {
                    let product_id = item
                        .get("product_id")
                        .and_then(Value::as_str)
                        .ok_or_else(|| invalid("items"))?;
                    let quantity = item.get("quantity").and_then(Value::as_i64).unwrap_or(1);
                    Ok::<LineRequest, SimError>((product_id.to_owned(), quantity))
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(_) => {
            return Err(SimError::store(
                400,
                "Items array is required",
                "Items array is required",
            ));
        }
    };
    let buyer = match fields.get("buyer") {
        None | Some(Value::Null) => None,
        Some(value) => {
            Some(serde_json::from_value::<SimBuyer>(value.clone()).map_err(|_| invalid("buyer"))?)
        }
    };
    let fulfillment = match fields.get("fulfillment") {
        None | Some(Value::Null) => None,
        Some(value) => {
            let fulfillment: SimFulfillment =
                serde_json::from_value(value.clone()).map_err(|_| invalid("fulfillment"))?;
            if !matches!(fulfillment.kind.as_str(), "shipping" | "pickup") {
                return Err(invalid("fulfillment type"));
            }
            Some(fulfillment)
        }
    };
    Ok(SessionChange {
        items,
        buyer,
        fulfillment,
    })
}

async fn create_session(core: Core, request: HttpRequest, body: web::Bytes) -> HttpResponse {
    let result = body_fields(&request, &body)
        .and_then(|fields| session_change(&fields))
        .and_then(|change| core.create_session(change));
    match result {
        Ok(session) => HttpResponse::Created().json(session_json(&session)),
        Err(error) => error_response(&error),
    }
}

async fn get_session(core: Core, id: web::Path<String>) -> HttpResponse {
    respond(core.session(&id).map(|s| session_json(&s)))
}

async fn update_session(
    core: Core,
    id: web::Path<String>,
    request: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    respond(
        body_fields(&request, &body)
            .and_then(|fields| session_change(&fields))
            .and_then(|change| core.update_session(&id, change))
            .map(|s| session_json(&s)),
    )
}

async fn cancel_session(core: Core, id: web::Path<String>) -> HttpResponse {
    respond(
        core.cancel_session(&id)
            .map(|()| json!({"status": "cancelled"})),
    )
}

async fn complete_session(
    core: Core,
    id: web::Path<String>,
    request: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let result = body_fields(&request, &body).and_then(|fields| {
        let payment_token = fields
            .get("payment_token")
            .and_then(Value::as_str)
            .map(str::to_owned);
        core.complete_session(
            &id,
            bearer(request.headers()).as_deref(),
            payment_token.as_deref(),
        )
    });
    match result {
        Ok(Completion::Completed {
            order_id,
            transaction_id,
        }) => HttpResponse::Ok().json(json!({
            "status": "completed",
            "order_id": order_id,
            "transaction_id": transaction_id,
            "next_step": "view_order",
        })),
        Ok(Completion::AwaitingAuthorization { step_up_id }) => {
            HttpResponse::Accepted().json(json!({
                "status": "awaiting_authorization",
                "step_up_id": step_up_id,
                "message": "The payment needs the user's approval in the wallet",
            }))
        }
        Err(error) => error_response(&error),
    }
}

fn order_json(order: &SimOrder) -> Value {
    json!({
        "order_id": order.order_id,
        "status": "confirmed",
        "items": order.items.iter().map(|l| json!({
            "product_id": l.product_id,
            "name": l.name,
            "quantity": l.quantity,
            "unit_price": dollars(l.unit_price),
        })).collect::<Vec<_>>(),
        "subtotal": dollars(order.subtotal),
        "total": dollars(order.total),
        "currency": CURRENCY,
        "transaction_id": order.transaction_id,
        "created_at": order.created_at.to_rfc3339(),
        "updated_at": order.created_at.to_rfc3339(),
    })
}

async fn get_order(core: Core, id: web::Path<String>, request: HttpRequest) -> HttpResponse {
    respond(
        core.order(&id, bearer(request.headers()).as_deref())
            .map(|o| order_json(&o)),
    )
}

async fn get_faults(core: Core) -> HttpResponse {
    HttpResponse::Ok().json(core.faults())
}

async fn put_faults(core: Core, faults: web::Json<Faults>) -> HttpResponse {
    core.set_faults(faults.into_inner());
    HttpResponse::Ok().json(core.faults())
}

async fn stats(core: Core) -> HttpResponse {
    let stats = core.stats();
    HttpResponse::Ok().json(json!({
        "sessions_created": stats.sessions_created,
        "completions": stats.completions,
        "completion_attempts": stats.completion_attempts,
        "orders": core.orders().iter().map(|o| json!({"order_id": o.order_id, "session_id": o.session_id})).collect::<Vec<_>>(),
    }))
}
