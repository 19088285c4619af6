//! The API's JSON shapes (with their OpenAPI schemas) and their conversion from domain values.

use chrono::{DateTime, Utc};
use sacp_app::CheckoutChanges;
use sacp_domain::catalog::{Order, Product};
use sacp_domain::validation::{AddressInput, BuyerInput, FulfillmentInput, ItemInput};
use sacp_domain::{Checkout, Fulfillment, Money, NextStep, PaymentHold};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An amount of money: integer minor units, ISO currency and a human form.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"amount": 2146, "currency": "CAD", "formatted": "CA$21.46"}))]
pub struct MoneyDto {
    /// Minor units (cents for CAD): 2146 is CA$21.46.
    pub amount: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// For people: `CA$21.46`.
    pub formatted: String,
}

impl From<Money> for MoneyDto {
    fn from(money: Money) -> Self {
        MoneyDto {
            amount: money.minor_units(),
            currency: money.currency().code().to_owned(),
            formatted: money.formatted(),
        }
    }
}

/// A product image.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ImageDto {
    /// URL.
    pub url: String,
    /// Alternative text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alt: Option<String>,
}

/// A product.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProductDto {
    /// Id to use in checkout items.
    pub id: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Unit price.
    pub price: MoneyDto,
    /// Whether it can be bought now.
    pub available: bool,
    /// Units in stock, when tracked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stock: Option<u32>,
    /// Category slugs.
    pub categories: Vec<String>,
    /// Images.
    pub images: Vec<ImageDto>,
}

impl From<Product> for ProductDto {
    fn from(p: Product) -> Self {
        ProductDto {
            id: p.id.as_str().to_owned(),
            name: p.name,
            description: p.description,
            price: p.price.into(),
            available: p.available,
            stock: p.stock,
            categories: p.categories,
            images: p
                .images
                .into_iter()
                .map(|i| ImageDto {
                    url: i.url,
                    alt: i.alt,
                })
                .collect(),
        }
    }
}

/// A page of products.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProductListDto {
    /// The products.
    pub products: Vec<ProductDto>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// One requested line.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemRequestDto {
    /// A product id from GET /products.
    pub product_id: Option<String>,
    /// How many, 1 to 99.
    pub quantity: Option<i64>,
}

/// The buyer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BuyerDto {
    /// Full name.
    pub name: Option<String>,
    /// Email address.
    pub email: Option<String>,
    /// Phone number (optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

/// A postal address.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddressDto {
    /// Street line.
    pub street: Option<String>,
    /// City.
    pub city: Option<String>,
    /// State or province, e.g. `ON`.
    pub state: Option<String>,
    /// Postal code.
    pub postal_code: Option<String>,
    /// Two-letter country code, e.g. `CA`.
    pub country: Option<String>,
}

/// How the order reaches the buyer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FulfillmentDto {
    /// `shipping` (needs `address`) or `pickup`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Shipping address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<AddressDto>,
}

/// Body of POST /checkout and PATCH /checkout/{id}.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutRequestDto {
    /// The lines (POST: required; PATCH: replaces every line).
    #[serde(default)]
    pub items: Option<Vec<ItemRequestDto>>,
    /// The buyer.
    #[serde(default)]
    pub buyer: Option<BuyerDto>,
    /// Shipping or pickup.
    #[serde(default)]
    pub fulfillment: Option<FulfillmentDto>,
}

impl From<CheckoutRequestDto> for CheckoutChanges {
    fn from(dto: CheckoutRequestDto) -> Self {
        CheckoutChanges {
            items: dto.items.map(|items| {
                items
                    .into_iter()
                    .map(|i| ItemInput {
                        product_id: i.product_id,
                        quantity: i.quantity,
                    })
                    .collect()
            }),
            buyer: dto.buyer.map(|b| BuyerInput {
                name: b.name,
                email: b.email,
                phone: b.phone,
            }),
            fulfillment: dto.fulfillment.map(|f| FulfillmentInput {
                kind: f.kind,
                address: f.address.map(|a| AddressInput {
                    street: a.street,
                    city: a.city,
                    state: a.state,
                    postal_code: a.postal_code,
                    country: a.country,
                }),
            }),
        }
    }
}

/// One priced line.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LineDto {
    /// Product id.
    pub product_id: String,
    /// Product name.
    pub name: String,
    /// Quantity.
    pub quantity: u8,
    /// Price of one.
    pub unit_price: MoneyDto,
    /// `unit_price × quantity`.
    pub line_total: MoneyDto,
}

/// The call an agent should make next.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NextStepDto {
    /// `update_checkout`, `complete`, `await_authorization`, `done`, `start_new_checkout`.
    pub action: String,
    /// HTTP method of the call, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// URL of the call, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
    /// What to do, in words.
    pub description: String,
}

/// The pending payment of a checkout that is `authorizing`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PendingPaymentDto {
    /// `device_authorization` (guest) or `step_up` (user token).
    pub kind: String,
    /// Request id (guest) or step-up id.
    pub id: String,
    /// Exact amount being approved.
    pub amount: MoneyDto,
    /// Where to poll: a path to append to the API's base URL.
    pub poll_endpoint: String,
}

/// A checkout.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CheckoutDto {
    /// Checkout id (`cs_...`).
    pub id: String,
    /// `cart`, `ready_for_payment`, `authorizing`, `completed`, `cancelled`, `expired`, `failed`.
    pub status: String,
    /// Priced lines.
    pub items: Vec<LineDto>,
    /// Sum of the lines.
    pub subtotal: MoneyDto,
    /// Tax.
    pub tax: MoneyDto,
    /// Shipping, once priced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shipping: Option<MoneyDto>,
    /// Amount to pay.
    pub total: MoneyDto,
    /// Buyer, once given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buyer: Option<BuyerDto>,
    /// Fulfillment, once given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fulfillment: Option<FulfillmentDto>,
    /// What is still needed before payment: `items`, `buyer`, `fulfillment`.
    pub missing: Vec<String>,
    /// The call to make next.
    pub next_step: NextStepDto,
    /// The pending payment while `authorizing`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment: Option<PendingPaymentDto>,
    /// Order id once completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    /// Transaction id once completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
    /// Why payment failed, once failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// When an unpaid checkout expires.
    pub expires_at: DateTime<Utc>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// Builds URLs the API returns.
#[derive(Debug, Clone)]
pub struct Links {
    base: String,
}

impl Links {
    /// Links under `public_url`.
    pub fn new(public_url: &str) -> Links {
        Links {
            base: public_url.trim_end_matches('/').to_owned(),
        }
    }
    /// `{base}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
    /// A checkout.
    pub fn checkout(&self, id: &str) -> String {
        self.url(&format!("/checkout/{id}"))
    }
    /// A payment status, as a path to append to the API's base URL (the seed contract's
    /// `poll_endpoint`).
    pub fn payment_status(&self, checkout: &str, request: &str) -> String {
        format!("/checkout/{checkout}/payment-status/{request}")
    }
    /// A step-up status, as a path like [`Links::payment_status`].
    pub fn step_up(&self, checkout: &str, step_up: &str) -> String {
        format!("/checkout/{checkout}/step-up/{step_up}")
    }
    /// A QR code.
    pub fn qr(&self, request: &str) -> String {
        self.url(&format!("/qr/{request}"))
    }
}

fn buyer_dto(checkout: &Checkout) -> Option<BuyerDto> {
    checkout.buyer().map(|b| BuyerDto {
        name: Some(b.name.clone()),
        email: Some(b.email.as_str().to_owned()),
        phone: b.phone.as_ref().map(|p| p.as_str().to_owned()),
    })
}

fn fulfillment_dto(checkout: &Checkout) -> Option<FulfillmentDto> {
    checkout.fulfillment().map(|f| match f {
        Fulfillment::Pickup => FulfillmentDto {
            kind: Some("pickup".into()),
            address: None,
        },
        Fulfillment::Shipping { address } => FulfillmentDto {
            kind: Some("shipping".into()),
            address: Some(AddressDto {
                street: Some(address.street.clone()),
                city: Some(address.city.clone()),
                state: Some(address.state.clone()),
                postal_code: Some(address.postal_code.clone()),
                country: Some(address.country.clone()),
            }),
        },
    })
}

fn next_step(checkout: &Checkout, links: &Links) -> NextStepDto {
    let id = checkout.id().as_str();
    let (action, method, href, description) = match checkout.next_step() {
        NextStep::UpdateCheckout => {
            let missing: Vec<&str> = checkout
                .missing()
                .iter()
                .map(|m| match m {
                    sacp_domain::MissingField::Items => "items",
                    sacp_domain::MissingField::Buyer => "buyer {name, email}",
                    sacp_domain::MissingField::Fulfillment => {
                        "fulfillment {type: shipping with address, or pickup}"
                    }
                })
                .collect();
            (
                "update_checkout",
                Some("PATCH"),
                Some(links.checkout(id)),
                format!("Add {} with PATCH.", missing.join(" and ")),
            )
        }
        NextStep::Complete => (
            "complete",
            Some("POST"),
            Some(links.url(&format!("/checkout/{id}/complete"))),
            format!(
                "Everything is present. Complete to pay {}.",
                checkout.cart().total().formatted()
            ),
        ),
        NextStep::AwaitAuthorization => {
            let href = match checkout.hold() {
                Some(PaymentHold::Device {
                    authorization_id, ..
                }) => Some(links.payment_status(id, authorization_id.as_str())),
                Some(PaymentHold::StepUp { step_up_id, .. }) => Some(links.step_up(id, step_up_id)),
                None => None,
            };
            (
                "await_authorization",
                Some("GET"),
                href,
                "The person must approve the payment in their wallet; poll this endpoint until it is completed.".to_owned(),
            )
        }
        NextStep::Done => (
            "done",
            None,
            None,
            "The order is placed. Tell the person their order id.".to_owned(),
        ),
        NextStep::StartNewCheckout => (
            "start_new_checkout",
            Some("POST"),
            Some(links.url("/checkout")),
            format!(
                "This checkout is {}. Start a new checkout to buy.",
                checkout.status()
            ),
        ),
    };
    NextStepDto {
        action: action.to_owned(),
        method: method.map(str::to_owned),
        href,
        description,
    }
}

impl CheckoutDto {
    /// The API form of a checkout.
    pub fn new(checkout: &Checkout, links: &Links) -> CheckoutDto {
        let cart = checkout.cart();
        let id = checkout.id().as_str();
        let payment = checkout.hold().map(|hold| match hold {
            PaymentHold::Device {
                authorization_id,
                amount,
            } => PendingPaymentDto {
                kind: "device_authorization".into(),
                id: authorization_id.as_str().to_owned(),
                amount: (*amount).into(),
                poll_endpoint: links.payment_status(id, authorization_id.as_str()),
            },
            PaymentHold::StepUp { step_up_id, amount } => PendingPaymentDto {
                kind: "step_up".into(),
                id: step_up_id.clone(),
                amount: (*amount).into(),
                poll_endpoint: links.step_up(id, step_up_id),
            },
        });
        CheckoutDto {
            id: id.to_owned(),
            status: checkout.status().as_str().to_owned(),
            items: cart
                .lines()
                .iter()
                .map(|l| LineDto {
                    product_id: l.product_id.as_str().to_owned(),
                    name: l.name.clone(),
                    quantity: l.quantity.get(),
                    unit_price: l.unit_price.into(),
                    line_total: l.line_total.into(),
                })
                .collect(),
            subtotal: cart.subtotal().into(),
            tax: cart.tax().into(),
            shipping: cart.shipping().map(Into::into),
            total: cart.total().into(),
            buyer: buyer_dto(checkout),
            fulfillment: fulfillment_dto(checkout),
            missing: checkout
                .missing()
                .iter()
                .map(|m| {
                    serde_json::to_value(m)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default()
                })
                .collect(),
            next_step: next_step(checkout, links),
            payment,
            order_id: checkout.order().map(|o| o.order_id.clone()),
            transaction_id: checkout.order().map(|o| o.transaction_id.clone()),
            failure: checkout.failure().map(str::to_owned),
            expires_at: checkout.expires_at(),
            created_at: checkout.created_at(),
            updated_at: checkout.updated_at(),
        }
    }
}

/// 202 from complete without a user token: the person must approve in the wallet.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuthorizationRequiredDto {
    /// Always `authorization_required`.
    pub status: String,
    /// Open this link to approve (the wallet page with the code filled in).
    pub authorization_url: String,
    /// A PNG QR code of `authorization_url`.
    pub qr_code_url: String,
    /// The code to type in the wallet app.
    pub user_code: String,
    /// Where to type the code.
    pub verification_uri: String,
    /// Poll this for the outcome: a path (`/checkout/{id}/payment-status/{request_id}`) to
    /// append to the API's base URL, as in the seed contract.
    pub poll_endpoint: String,
    /// Seconds before the request expires.
    pub expires_in: u64,
    /// Id of this payment request (`par_...`).
    pub request_id: String,
    /// Poll no more often than every `interval` seconds.
    pub interval: u32,
    /// The exact amount the person approves.
    pub amount: MoneyDto,
    /// Whether the wallet notified the buyer.
    pub notification_sent: bool,
    /// What to tell the person.
    pub message: String,
    /// The checkout.
    pub checkout_id: String,
}

/// 200 from complete with a user token: the order is placed.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CompletedDto {
    /// Always `completed`.
    pub status: String,
    /// Order id.
    pub order_id: String,
    /// Transaction id.
    pub transaction_id: String,
    /// What to tell the person.
    pub message: String,
    /// The checkout.
    pub checkout: CheckoutDto,
}

/// 202 from complete with a user token: the wallet wants the person to approve a larger
/// payment.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StepUpRequiredDto {
    /// Always `step_up_required`.
    pub status: String,
    /// The wallet's step-up id.
    pub step_up_id: String,
    /// Poll this (with the same user token) for the outcome: a path
    /// (`/checkout/{id}/step-up/{step_up_id}`) to append to the API's base URL.
    pub poll_endpoint: String,
    /// When the step-up expires.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// Which limit of the person's wallet the payment is over, as the wallet says:
    /// `per_transaction`, `daily_limit` or `monthly_limit`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
    /// The exact amount.
    pub amount: MoneyDto,
    /// What to tell the person: what they must do, and where.
    pub message: String,
    /// The checkout.
    pub checkout_id: String,
}

/// 202 from complete: either shape, told apart by `status`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(untagged)]
pub enum CompleteAcceptedDto {
    /// Guest path: `authorization_required`.
    AuthorizationRequired(AuthorizationRequiredDto),
    /// User-token path: `step_up_required`.
    StepUpRequired(StepUpRequiredDto),
}

/// A payment status poll.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PaymentStatusDto {
    /// `pending` (waiting for the person), `approved` (the person approved; the order is
    /// being placed), `completed`, `rejected`, `expired`, `cancelled` or `failed`.
    pub status: String,
    /// What to tell the person, and what to do next.
    pub message: String,
    /// Why it failed, once `failed`: `no_payment_method`, `declined`, `over_wallet_limit`,
    /// `approval_expired`, `order_not_placed`, `wallet_token_refused`, `store_refused_token`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Seconds left while pending.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<u64>,
    /// Order id once completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    /// Transaction id once completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
    /// The payment request.
    pub request_id: String,
    /// The checkout.
    pub checkout_id: String,
    /// Poll no more often than every `interval` seconds.
    pub interval: u32,
}

/// A step-up poll.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StepUpStatusDto {
    /// `pending` (waiting for the person), `approved` (the order is being placed),
    /// `completed`, `rejected`, `expired` or `failed`.
    pub status: String,
    /// What to tell the person, and what to do next.
    pub message: String,
    /// Why it failed, once `failed` (the codes of a payment status).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Order id once completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    /// Transaction id once completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
    /// The checkout.
    pub checkout: CheckoutDto,
}

/// One line of an order.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrderLineDto {
    /// Product id.
    pub product_id: String,
    /// Name.
    pub name: String,
    /// Quantity.
    pub quantity: u32,
    /// Unit price.
    pub unit_price: MoneyDto,
}

/// A placed order.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrderDto {
    /// Order id.
    pub order_id: String,
    /// Status as the store names it.
    pub status: String,
    /// Lines.
    pub items: Vec<OrderLineDto>,
    /// Subtotal.
    pub subtotal: MoneyDto,
    /// Transaction id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
    /// Creation time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
}

impl From<Order> for OrderDto {
    fn from(o: Order) -> Self {
        OrderDto {
            order_id: o.order_id,
            status: o.status,
            items: o
                .items
                .into_iter()
                .map(|l| OrderLineDto {
                    product_id: l.product_id.as_str().to_owned(),
                    name: l.name,
                    quantity: l.quantity,
                    unit_price: l.unit_price.into(),
                })
                .collect(),
            subtotal: o.subtotal.into(),
            transaction_id: o.transaction_id,
            created_at: o.created_at,
        }
    }
}

/// Liveness and version.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HealthDto {
    /// `ok`, or `unavailable` from /readyz.
    pub status: String,
    /// Gateway version.
    pub version: String,
}

/// One invalid field.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FieldErrorDto {
    /// Field path, e.g. `items[0].quantity`.
    pub field: String,
    /// `required`, `out_of_range`, `invalid_format`, `duplicate`, `too_long`, `too_many`, `too_few`.
    pub code: String,
    /// What is wrong and what is accepted.
    pub message: String,
}

/// An RFC 9457 problem (`application/problem+json`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProblemDto {
    /// `/problems/{code}`: a page describing the problem.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary.
    pub title: String,
    /// HTTP status.
    pub status: u16,
    /// What happened and what to do.
    pub detail: String,
    /// Stable machine code.
    pub code: String,
    /// The request path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// The request id (also in `X-Request-Id`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Invalid fields (`validation_failed`), at most 25.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldErrorDto>>,
    /// How many more invalid fields were found than `errors` lists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors_omitted: Option<u64>,
    /// What the checkout still needs (`checkout_not_ready`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing: Option<Vec<String>>,
    /// Products the store cannot sell (`items_unavailable`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product_ids: Option<Vec<String>>,
}
