//! Products, merchant and orders as the gateway sees them (converted from the store).

use serde::{Deserialize, Serialize};

use crate::money::Money;
use crate::validation::ProductId;

/// A product of the store's catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    /// Store id.
    pub id: ProductId,
    /// Display name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Unit price.
    pub price: Money,
    /// Whether it can be bought now.
    pub available: bool,
    /// Units in stock, when the store tracks it.
    pub stock: Option<u32>,
    /// Category slugs.
    pub categories: Vec<String>,
    /// Image URLs.
    pub images: Vec<ProductImage>,
}

/// A product image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductImage {
    /// Image URL.
    pub url: String,
    /// Alternative text.
    pub alt: Option<String>,
}

/// One page of products with the position of the next page, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductPage {
    /// The products on this page.
    pub products: Vec<Product>,
    /// Offset of the next page when more products follow.
    pub next_offset: Option<u32>,
    /// Total number of matching products, when the store reports it.
    pub total: Option<u32>,
}

/// The merchant behind the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Merchant {
    /// Merchant id, sent to the wallet with payment token requests.
    pub id: String,
    /// Display name, shown to the person approving a payment.
    pub name: String,
}

/// A placed order as the store reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// Store order id.
    pub order_id: String,
    /// Order status as the store names it (e.g. `confirmed`).
    pub status: String,
    /// Ordered lines.
    pub items: Vec<OrderLine>,
    /// Amount charged before tax and shipping.
    pub subtotal: Money,
    /// Payment transaction id.
    pub transaction_id: Option<String>,
    /// Creation time as reported (RFC 3339).
    pub created_at: Option<String>,
}

/// One line of a placed order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    /// The product.
    pub product_id: ProductId,
    /// Name.
    pub name: String,
    /// How many.
    pub quantity: u32,
    /// Unit price.
    pub unit_price: Money,
}
