//! The store port: the merchant's catalog, checkout sessions and orders (SSIM).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sacp_domain::catalog::{Merchant, Order, Product, ProductPage};
use sacp_domain::validation::{BuyerInput, FulfillmentInput};
use sacp_domain::{
    Buyer, Cart, Fulfillment, Items, LineItem, Money, OrderConfirmation, ProductId, Quantity,
    StoreSessionId,
};

use crate::error::UpstreamError;
use crate::token::BearerToken;

/// Largest page the store serves.
pub const MAX_PAGE_SIZE: u32 = 100;

/// Which products to list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProductQuery {
    /// Only products in this category.
    pub category: Option<String>,
    /// Page size, 1..=[`MAX_PAGE_SIZE`].
    pub limit: u32,
    /// Products to skip.
    pub offset: u32,
}

/// A full-text search of the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    /// The words to search for (non-empty).
    pub q: String,
    /// Page size, 1..=[`MAX_PAGE_SIZE`].
    pub limit: u32,
    /// Products to skip.
    pub offset: u32,
}

/// The store's name for where a session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreSessionStatus {
    /// Items being added.
    CartBuilding,
    /// Buyer or fulfillment missing.
    AwaitingBuyerInfo,
    /// Buyer and fulfillment present.
    ReadyForPayment,
    /// The store is waiting for a wallet step-up.
    AwaitingAuthorization,
    /// Payment in progress.
    Processing,
    /// Order placed.
    Completed,
    /// Cancelled.
    Cancelled,
    /// Payment failed.
    Failed,
    /// Timed out.
    Expired,
}

impl StoreSessionStatus {
    /// Parses the store's wire name (`cart_building`, ...).
    pub fn parse(text: &str) -> Option<StoreSessionStatus> {
        Some(match text {
            "cart_building" => StoreSessionStatus::CartBuilding,
            "awaiting_buyer_info" => StoreSessionStatus::AwaitingBuyerInfo,
            "ready_for_payment" => StoreSessionStatus::ReadyForPayment,
            "awaiting_authorization" => StoreSessionStatus::AwaitingAuthorization,
            "processing" => StoreSessionStatus::Processing,
            "completed" => StoreSessionStatus::Completed,
            "cancelled" => StoreSessionStatus::Cancelled,
            "failed" => StoreSessionStatus::Failed,
            "expired" => StoreSessionStatus::Expired,
            _ => return None,
        })
    }

    /// The store's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreSessionStatus::CartBuilding => "cart_building",
            StoreSessionStatus::AwaitingBuyerInfo => "awaiting_buyer_info",
            StoreSessionStatus::ReadyForPayment => "ready_for_payment",
            StoreSessionStatus::AwaitingAuthorization => "awaiting_authorization",
            StoreSessionStatus::Processing => "processing",
            StoreSessionStatus::Completed => "completed",
            StoreSessionStatus::Cancelled => "cancelled",
            StoreSessionStatus::Failed => "failed",
            StoreSessionStatus::Expired => "expired",
        }
    }
}

/// A checkout session as the store reports it, converted to domain types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSession {
    /// The store's id.
    pub id: StoreSessionId,
    /// Where the session is.
    pub status: StoreSessionStatus,
    /// Priced cart (totals verified to add up).
    pub cart: Cart,
    /// Buyer, once given.
    pub buyer: Option<Buyer>,
    /// Fulfillment, once given.
    pub fulfillment: Option<Fulfillment>,
    /// The order, once completed.
    pub order: Option<OrderConfirmation>,
    /// When the session expires.
    pub expires_at: DateTime<Utc>,
}

/// One cart line as the store reported it, amounts already converted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportedLine {
    /// Product id.
    pub product_id: String,
    /// Product name.
    pub name: String,
    /// Quantity.
    pub quantity: i64,
    /// Unit price.
    pub unit_price: Money,
    /// Line total.
    pub line_total: Money,
}

/// A session as the store reported it, before the gateway checks it: what every
/// implementation of [`Store`] builds from its upstream and turns into a [`StoreSession`]
/// with [`StoreSession::from_reported`], so that all of them accept and refuse the same data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportedSession {
    /// The store's id.
    pub id: String,
    /// Where the session is.
    pub status: StoreSessionStatus,
    /// Cart lines.
    pub lines: Vec<ReportedLine>,
    /// Reported subtotal.
    pub subtotal: Money,
    /// Reported tax.
    pub tax: Money,
    /// Reported shipping, once priced.
    pub shipping: Option<Money>,
    /// Reported total.
    pub total: Money,
    /// Buyer as sent back.
    pub buyer: Option<BuyerInput>,
    /// Fulfillment as sent back.
    pub fulfillment: Option<FulfillmentInput>,
    /// Order id once completed.
    pub order_id: Option<String>,
    /// Transaction id once completed.
    pub transaction_id: Option<String>,
    /// Expiry.
    pub expires_at: DateTime<Utc>,
}

impl StoreSession {
    /// Checks a reported session: ids and quantities valid, totals adding up (lines + tax +
    /// shipping), buyer and fulfillment valid. Anything else is
    /// [`UpstreamError::MalformedResponse`].
    pub fn from_reported(reported: ReportedSession) -> Result<StoreSession, UpstreamError> {
        let malformed = |what: &str| UpstreamError::MalformedResponse(what.to_owned());
        let lines = reported
            .lines
            .into_iter()
            .map(|line| {
                Ok(LineItem {
                    product_id: ProductId::parse(&line.product_id)
                        .map_err(|_| malformed("line product id"))?,
                    name: line.name,
                    quantity: Quantity::parse(line.quantity)
                        .map_err(|_| malformed("line quantity"))?,
                    unit_price: line.unit_price,
                    line_total: line.line_total,
                })
            })
            .collect::<Result<Vec<_>, UpstreamError>>()?;
        let cart = Cart::from_reported(
            lines,
            reported.subtotal,
            reported.tax,
            reported.shipping,
            reported.total,
        )
        .map_err(|e| UpstreamError::MalformedResponse(e.to_string()))?;
        let buyer = reported
            .buyer
            .map(|b| Buyer::parse(&b))
            .transpose()
            .map_err(|_| malformed("buyer"))?;
        let fulfillment = reported
            .fulfillment
            .map(|f| Fulfillment::parse(&f))
            .transpose()
            .map_err(|_| malformed("fulfillment"))?;
        let order = match (reported.order_id, reported.transaction_id) {
            (Some(order_id), Some(transaction_id)) => Some(OrderConfirmation {
                order_id,
                transaction_id,
            }),
            _ => None,
        };
        Ok(StoreSession {
            id: StoreSessionId(reported.id),
            status: reported.status,
            cart,
            buyer,
            fulfillment,
            order,
            expires_at: reported.expires_at,
        })
    }
}

/// A change to a session; `None` fields are left as they are.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionPatch {
    /// Replaces every line.
    pub items: Option<Items>,
    /// Sets the buyer.
    pub buyer: Option<Buyer>,
    /// Sets the fulfillment.
    pub fulfillment: Option<Fulfillment>,
}

/// What placing the order produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompletionOutcome {
    /// The order is placed.
    Completed(OrderConfirmation),
    /// The store had to ask the wallet itself and the person must step up first.
    AwaitingAuthorization {
        /// The wallet's step-up id.
        step_up_id: String,
    },
}

/// The merchant's store.
///
/// Error contract (every method): [`UpstreamError::Unavailable`] when the store cannot be
/// reached or fails (5xx), [`UpstreamError::Timeout`] when it does not answer in time,
/// [`UpstreamError::MalformedResponse`] when its answer breaks the contract (including money
/// that is not exact and totals that do not add up), [`UpstreamError::RateLimited`] when it
/// throttles. Method docs list the other errors.
#[async_trait]
pub trait Store: Send + Sync {
    /// The merchant behind the store (its id is what payment tokens are issued for).
    async fn merchant(&self) -> Result<Merchant, UpstreamError>;

    /// Lists products, optionally in one category.
    async fn list_products(&self, query: &ProductQuery) -> Result<ProductPage, UpstreamError>;

    /// Searches products by text. [`UpstreamError::Rejected`] (`invalid_request`) for an
    /// empty query.
    async fn search_products(&self, query: &SearchQuery) -> Result<ProductPage, UpstreamError>;

    /// One product. [`UpstreamError::NotFound`] when the store has no such product.
    async fn product(&self, id: &ProductId) -> Result<Product, UpstreamError>;

    /// Opens a checkout session with `items`. [`UpstreamError::ItemsUnavailable`] names
    /// products that cannot be bought; [`UpstreamError::NotFound`] or
    /// [`UpstreamError::Rejected`] for products the store does not know.
    async fn create_session(
        &self,
        items: &Items,
        buyer: Option<&Buyer>,
        fulfillment: Option<&Fulfillment>,
    ) -> Result<StoreSession, UpstreamError>;

    /// A session. [`UpstreamError::NotFound`] for unknown ids.
    async fn session(&self, id: &StoreSessionId) -> Result<StoreSession, UpstreamError>;

    /// Changes a session. [`UpstreamError::NotFound`] for unknown ids;
    /// [`UpstreamError::Rejected`] with `session_not_editable` or `session_expired`;
    /// [`UpstreamError::ItemsUnavailable`] for new items that cannot be bought.
    async fn update_session(
        &self,
        id: &StoreSessionId,
        patch: &SessionPatch,
    ) -> Result<StoreSession, UpstreamError>;

    /// Places the order with a wallet payment token, on behalf of the user whose access
    /// token is given. [`UpstreamError::Rejected`] with `session_not_ready`, `declined`,
    /// `invalid_payment_token`; [`UpstreamError::Unauthorized`] for a refused user token;
    /// [`UpstreamError::Unavailable`] when the payment failed inside the store (its 500).
    async fn complete_session(
        &self,
        id: &StoreSessionId,
        payment_token: &BearerToken,
        user_token: &BearerToken,
    ) -> Result<CompletionOutcome, UpstreamError>;

    /// Cancels a session. [`UpstreamError::Rejected`] with `session_not_cancellable` once it
    /// is completed; [`UpstreamError::NotFound`] for unknown ids.
    async fn cancel_session(&self, id: &StoreSessionId) -> Result<(), UpstreamError>;

    /// A placed order, read with the user's token. [`UpstreamError::NotFound`] for unknown
    /// orders; [`UpstreamError::Unauthorized`] for a refused token.
    async fn order(&self, order_id: &str, user_token: &BearerToken)
    -> Result<Order, UpstreamError>;
}
