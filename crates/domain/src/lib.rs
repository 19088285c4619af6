//! The SACP gateway's domain: pure types and rules, with no I/O, no clock and no async
//! runtime. Time and randomness are passed in by callers.
//!
//! - [`money`]: integer minor units, exact decimal conversion, formatting.
//! - [`ids`]: prefixed, unguessable ids from an injected random source.
//! - [`validation`]: items, buyer and fulfillment rules with field-level messages.
//! - [`checkout`]: the checkout state machine.
//! - [`authorization`]: the payment-authorization lifecycle and RFC 8628 poll arithmetic.
//! - [`catalog`]: products, merchant and orders.
//! - [`access`], [`audit`]: integration keys and scopes, audit events and traffic counts.
//! - [`ratelimit`], [`idempotency`], [`switches`]: the guardrails.

pub mod access;
pub mod audit;
pub mod authorization;
pub mod catalog;
pub mod checkout;
pub mod idempotency;
pub mod ids;
pub mod money;
pub mod ratelimit;
pub mod switches;
pub mod validation;

pub use authorization::{
    AuthorizationStatus, DeviceCode, DeviceGrant, PaymentAuthorization, PaymentStatus, Work,
};
pub use catalog::{Merchant, Order, Product, ProductPage};
pub use checkout::{
    Cart, Checkout, CheckoutStatus, LineItem, MissingField, NextStep, OrderConfirmation,
    PaymentHold, StoreSessionId, TransitionError,
};
pub use ids::{ApiKeyId, CheckoutId, PaymentAuthorizationId, RandomSource};
pub use money::{Currency, Money, MoneyError};
pub use validation::{Buyer, Fulfillment, Items, ProductId, Quantity, ValidationErrors};
