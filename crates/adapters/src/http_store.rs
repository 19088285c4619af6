//! The [`Store`] port over HTTP: the SSIM agent API (`/api/agent/v1`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use sacp_domain::catalog::{Merchant, Order, OrderLine, Product, ProductImage, ProductPage};
use sacp_domain::validation::{AddressInput, BuyerInput, FulfillmentInput};
use sacp_domain::{
    Buyer, Currency, Fulfillment, Items, OrderConfirmation, ProductId, StoreSessionId,
};
use sacp_ports::store::{
    CompletionOutcome, ProductQuery, ReportedLine, ReportedSession, SearchQuery, SessionPatch,
    StoreSession, StoreSessionStatus,
};
use sacp_ports::{BearerToken, Store, UpstreamError};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use crate::http::{Answer, HttpConfig, Upstream, currency, money};

const API: [&str; 3] = ["api", "agent", "v1"];

/// The operations of this upstream (the `operation` label of its metrics).
pub(crate) const OPERATIONS: &[&str] = &[
    "merchant",
    "list_products",
    "search_products",
    "get_product",
    "create_session",
    "get_session",
    "update_session",
    "complete_session",
    "cancel_session",
    "get_order",
];

/// The merchant's store, reached over HTTP.
#[derive(Debug)]
pub struct HttpStore {
    upstream: Upstream,
    service_token: Option<SecretString>,
    merchant: OnceCell<Merchant>,
}

impl HttpStore {
    /// A client for the store at `base_url` (e.g. `http://127.0.0.1:8090/ssim`).
    /// `service_token` is sent as a Bearer on guest calls (catalog and sessions) when set
    /// (`GATEWAY_SSIM_TOKEN`).
    pub fn new(
        base_url: &str,
        config: HttpConfig,
        service_token: Option<SecretString>,
    ) -> Result<HttpStore, String> {
        Ok(HttpStore {
            upstream: Upstream::new("store", OPERATIONS, base_url, config)?,
            service_token,
            merchant: OnceCell::new(),
        })
    }

    fn api(&self, path: &[&str]) -> Result<url::Url, UpstreamError> {
        let segments: Vec<&str> = API.iter().chain(path).copied().collect();
        self.upstream.url(&segments)
    }

    /// A guest-call request: with the service token when configured.
    fn guest(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.service_token {
            Some(token) => request.bearer_auth(token.expose_secret()),
            None => request,
        }
    }
}

#[derive(Deserialize)]
struct WirePrice {
    amount: Value,
    currency: String,
}

#[derive(Deserialize)]
struct WireImage {
    url: String,
    alt: Option<String>,
}

#[derive(Deserialize)]
struct WireInventory {
    available: bool,
    quantity: Option<u32>,
}

#[derive(Deserialize)]
struct WireProduct {
    id: String,
    name: String,
    #[serde(default)]
    description: Option<String>,
    price: WirePrice,
    #[serde(default)]
    images: Vec<WireImage>,
    inventory: Option<WireInventory>,
    #[serde(default)]
    categories: Vec<String>,
}

#[derive(Deserialize)]
struct WirePagination {
    total: Option<u32>,
    limit: Option<u32>,
    offset: Option<u32>,
    has_more: Option<bool>,
}

#[derive(Deserialize)]
struct WireProductList {
    products: Vec<WireProduct>,
    pagination: Option<WirePagination>,
}

fn malformed(what: &str) -> UpstreamError {
    UpstreamError::MalformedResponse(what.to_owned())
}

fn product(wire: WireProduct) -> Result<Product, UpstreamError> {
    let currency = currency(&wire.price.currency)?;
    Ok(Product {
        id: ProductId::parse(&wire.id).map_err(|_| malformed("product id"))?,
        price: money(&wire.price.amount, currency)?,
        name: wire.name,
        description: wire.description.unwrap_or_default(),
        available: wire.inventory.as_ref().is_some_and(|i| i.available),
        stock: wire.inventory.and_then(|i| i.quantity),
        categories: wire.categories,
        images: wire
            .images
            .into_iter()
            .map(|i| ProductImage {
                url: i.url,
                alt: i.alt,
            })
            .collect(),
    })
}

fn page(list: WireProductList, query_offset: u32) -> Result<ProductPage, UpstreamError> {
    let count = u32::try_from(list.products.len()).map_err(|_| malformed("page size"))?;
    let next_offset = list.pagination.as_ref().and_then(|p| {
        let offset = p.offset.unwrap_or(query_offset);
        p.has_more
            .unwrap_or(false)
            .then(|| offset.saturating_add(p.limit.unwrap_or(count).max(1)))
    });
    Ok(ProductPage {
        total: list.pagination.and_then(|p| p.total),
        products: list
            .products
            .into_iter()
            .map(product)
            .collect::<Result<_, _>>()?,
        next_offset,
    })
}

#[derive(Deserialize)]
struct WireLine {
    product_id: String,
    name: String,
    quantity: i64,
    unit_price: Value,
    subtotal: Value,
}

#[derive(Deserialize)]
struct WireCart {
    items: Vec<WireLine>,
    subtotal: Value,
    tax: Value,
    shipping: Option<Value>,
    total: Value,
    currency: String,
}

#[derive(Deserialize)]
struct WireBuyer {
    name: Option<String>,
    email: Option<String>,
    phone: Option<String>,
}

#[derive(Deserialize)]
struct WireAddress {
    street: Option<String>,
    city: Option<String>,
    state: Option<String>,
    postal_code: Option<String>,
    country: Option<String>,
}

#[derive(Deserialize)]
struct WireFulfillment {
    #[serde(rename = "type")]
    kind: Option<String>,
    address: Option<WireAddress>,
}

#[derive(Deserialize)]
struct WirePayment {
    order_id: Option<String>,
    transaction_id: Option<String>,
}

#[derive(Deserialize)]
struct WireSession {
    session_id: String,
    status: String,
    cart: WireCart,
    buyer: Option<WireBuyer>,
    fulfillment: Option<WireFulfillment>,
    payment: Option<WirePayment>,
    expires_at: DateTime<Utc>,
}

fn session(wire: WireSession) -> Result<StoreSession, UpstreamError> {
    let currency = currency(&wire.cart.currency)?;
    let lines = wire
        .cart
        .items
        .into_iter()
        .map(|line| {
            Ok(ReportedLine {
                product_id: line.product_id,
                name: line.name,
                quantity: line.quantity,
                unit_price: money(&line.unit_price, currency)?,
                line_total: money(&line.subtotal, currency)?,
            })
        })
        .collect::<Result<Vec<_>, UpstreamError>>()?;
    let shipping = match wire.cart.shipping {
        None | Some(Value::Null) => None,
        Some(value) => Some(money(&value, currency)?),
    };
    let (order_id, transaction_id) = wire
        .payment
        .map(|p| (p.order_id, p.transaction_id))
        .unwrap_or_default();
    StoreSession::from_reported(ReportedSession {
        id: wire.session_id,
        status: StoreSessionStatus::parse(&wire.status)
            .ok_or_else(|| malformed("session status"))?,
        lines,
        subtotal: money(&wire.cart.subtotal, currency)?,
        tax: money(&wire.cart.tax, currency)?,
        shipping,
        total: money(&wire.cart.total, currency)?,
        buyer: wire.buyer.map(|b| BuyerInput {
            name: b.name,
            email: b.email,
            phone: b.phone,
        }),
        fulfillment: wire.fulfillment.map(|f| FulfillmentInput {
            kind: f.kind,
            address: f.address.map(|a| AddressInput {
                street: a.street,
                city: a.city,
                state: a.state,
                postal_code: a.postal_code,
                country: a.country,
            }),
        }),
        order_id,
        transaction_id,
        expires_at: wire.expires_at,
    })
}

fn buyer_json(buyer: &Buyer) -> Value {
    json!({"name": buyer.name, "email": buyer.email.as_str(), "phone": buyer.phone.as_ref().map(|p| p.as_str())})
}

fn fulfillment_json(fulfillment: &Fulfillment) -> Value {
    match fulfillment {
        Fulfillment::Pickup => json!({"type": "pickup"}),
        Fulfillment::Shipping { address } => json!({"type": "shipping", "address": {
            "street": address.street,
            "city": address.city,
            "state": address.state,
            "postal_code": address.postal_code,
            "country": address.country,
        }}),
    }
}

fn items_json(items: &Items) -> Value {
    items
        .lines()
        .iter()
        .map(|l| json!({"product_id": l.product_id.as_str(), "quantity": l.quantity.get()}))
        .collect()
}

/// Maps session-call errors, keeping the store's list of unavailable items.
fn session_error(answer: &Answer) -> UpstreamError {
    if answer.error_code().as_deref() == Some("item_unavailable") {
        let product_ids = serde_json::from_slice::<Value>(&answer.body)
            .ok()
            .and_then(|body| {
                serde_json::from_value::<Vec<String>>(body.get("unavailable_items")?.clone()).ok()
            })
            .unwrap_or_default()
            .into_iter()
            .filter(|id| ProductId::parse(id).is_ok())
            .collect();
        return UpstreamError::ItemsUnavailable { product_ids };
    }
    answer.error()
}

fn session_answer(answer: &Answer) -> Result<StoreSession, UpstreamError> {
    if answer.status.is_success() {
        session(answer.json()?)
    } else {
        Err(session_error(answer))
    }
}

#[derive(Deserialize)]
struct WireDiscovery {
    merchant: WireMerchant,
}

#[derive(Deserialize)]
struct WireMerchant {
    id: String,
    name: String,
}

#[derive(Deserialize)]
struct WireCompletion {
    status: String,
    order_id: Option<String>,
    transaction_id: Option<String>,
    step_up_id: Option<String>,
}

#[derive(Deserialize)]
struct WireOrderLine {
    product_id: String,
    name: String,
    quantity: u32,
    unit_price: Value,
}

#[derive(Deserialize)]
struct WireOrder {
    order_id: String,
    status: String,
    #[serde(default)]
    items: Vec<WireOrderLine>,
    subtotal: Value,
    currency: String,
    transaction_id: Option<String>,
    created_at: Option<String>,
}

#[async_trait]
impl Store for HttpStore {
    async fn merchant(&self) -> Result<Merchant, UpstreamError> {
        // The merchant id does not change while the gateway runs; ask once.
        self.merchant
            .get_or_try_init(|| async {
                let url = self.upstream.url(&[".well-known", "ucp"])?;
                let answer = self
                    .upstream
                    .send("merchant", self.upstream.client().get(url))
                    .await?;
                let discovery: WireDiscovery = answer.success()?;
                if discovery.merchant.id.is_empty() {
                    return Err(malformed("merchant id"));
                }
                Ok(Merchant {
                    id: discovery.merchant.id,
                    name: discovery.merchant.name,
                })
            })
            .await
            .cloned()
    }

    async fn list_products(&self, query: &ProductQuery) -> Result<ProductPage, UpstreamError> {
        let mut params = vec![
            ("limit", query.limit.to_string()),
            ("offset", query.offset.to_string()),
        ];
        if let Some(category) = &query.category {
            params.push(("category", category.clone()));
        }
        let request = self.guest(
            self.upstream
                .client()
                .get(self.api(&["products"])?)
                .query(&params),
        );
        page(
            self.upstream
                .send("list_products", request)
                .await?
                .success()?,
            query.offset,
        )
    }

    async fn search_products(&self, query: &SearchQuery) -> Result<ProductPage, UpstreamError> {
        let params = [
            ("q", query.q.clone()),
            ("limit", query.limit.to_string()),
            ("offset", query.offset.to_string()),
        ];
        let request = self.guest(
            self.upstream
                .client()
                .get(self.api(&["products", "search"])?)
                .query(&params),
        );
        page(
            self.upstream
                .send("search_products", request)
                .await?
                .success()?,
            query.offset,
        )
    }

    async fn product(&self, id: &ProductId) -> Result<Product, UpstreamError> {
        let request = self.guest(
            self.upstream
                .client()
                .get(self.api(&["products", id.as_str()])?),
        );
        product(
            self.upstream
                .send("get_product", request)
                .await?
                .success()?,
        )
    }

    async fn create_session(
        &self,
        items: &Items,
        buyer: Option<&Buyer>,
        fulfillment: Option<&Fulfillment>,
    ) -> Result<StoreSession, UpstreamError> {
        let mut body = json!({"items": items_json(items)});
        if let Some(map) = body.as_object_mut() {
            if let Some(buyer) = buyer {
                map.insert("buyer".into(), buyer_json(buyer));
            }
            if let Some(fulfillment) = fulfillment {
                map.insert("fulfillment".into(), fulfillment_json(fulfillment));
            }
        }
        let request = self.guest(
            self.upstream
                .client()
                .post(self.api(&["sessions"])?)
                .json(&body),
        );
        session_answer(&self.upstream.send("create_session", request).await?)
    }

    async fn session(&self, id: &StoreSessionId) -> Result<StoreSession, UpstreamError> {
        let request = self.guest(self.upstream.client().get(self.api(&["sessions", &id.0])?));
        session_answer(&self.upstream.send("get_session", request).await?)
    }

    async fn update_session(
        &self,
        id: &StoreSessionId,
        patch: &SessionPatch,
    ) -> Result<StoreSession, UpstreamError> {
        let mut body = serde_json::Map::new();
        if let Some(items) = &patch.items {
            body.insert("items".into(), items_json(items));
        }
        if let Some(buyer) = &patch.buyer {
            body.insert("buyer".into(), buyer_json(buyer));
        }
        if let Some(fulfillment) = &patch.fulfillment {
            body.insert("fulfillment".into(), fulfillment_json(fulfillment));
        }
        let request = self.guest(
            self.upstream
                .client()
                .patch(self.api(&["sessions", &id.0])?)
                .json(&body),
        );
        session_answer(&self.upstream.send("update_session", request).await?)
    }

    async fn complete_session(
        &self,
        id: &StoreSessionId,
        payment_token: &BearerToken,
        user_token: &BearerToken,
    ) -> Result<CompletionOutcome, UpstreamError> {
        let request = self
            .upstream
            .client()
            .post(self.api(&["sessions", &id.0, "complete"])?)
            .bearer_auth(user_token.expose())
            .json(&json!({"payment_token": payment_token.expose()}));
        let answer = self.upstream.send("complete_session", request).await?;
        match answer.status {
            StatusCode::OK => {
                let done: WireCompletion = answer.json()?;
                match (done.status.as_str(), done.order_id, done.transaction_id) {
                    ("completed", Some(order_id), Some(transaction_id)) => {
                        Ok(CompletionOutcome::Completed(OrderConfirmation {
                            order_id,
                            transaction_id,
                        }))
                    }
                    _ => Err(malformed("completion without order")),
                }
            }
            StatusCode::ACCEPTED => {
                let pending: WireCompletion = answer.json()?;
                pending
                    .step_up_id
                    .map(|step_up_id| CompletionOutcome::AwaitingAuthorization { step_up_id })
                    .ok_or_else(|| malformed("awaiting authorization without step_up_id"))
            }
            _ => Err(answer.error()),
        }
    }

    async fn cancel_session(&self, id: &StoreSessionId) -> Result<(), UpstreamError> {
        let request = self.guest(
            self.upstream
                .client()
                .delete(self.api(&["sessions", &id.0])?),
        );
        let answer = self.upstream.send("cancel_session", request).await?;
        if answer.status.is_success() {
            Ok(())
        } else {
            Err(answer.error())
        }
    }

    async fn order(
        &self,
        order_id: &str,
        user_token: &BearerToken,
    ) -> Result<Order, UpstreamError> {
        let request = self
            .upstream
            .client()
            .get(self.api(&["orders", order_id])?)
            .bearer_auth(user_token.expose());
        let wire: WireOrder = self.upstream.send("get_order", request).await?.success()?;
        let currency: Currency = currency(&wire.currency)?;
        Ok(Order {
            items: wire
                .items
                .into_iter()
                .map(|line| {
                    Ok(OrderLine {
                        product_id: ProductId::parse(&line.product_id)
                            .map_err(|_| malformed("order line"))?,
                        name: line.name,
                        quantity: line.quantity,
                        unit_price: money(&line.unit_price, currency)?,
                    })
                })
                .collect::<Result<_, UpstreamError>>()?,
            subtotal: money(&wire.subtotal, currency)?,
            order_id: wire.order_id,
            status: wire.status,
            transaction_id: wire.transaction_id,
            created_at: wire.created_at,
        })
    }
}
