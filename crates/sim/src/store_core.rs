//! The simulated store (SSIM): catalog, checkout sessions and orders, shared by its HTTP
//! surface and its in-process fake.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Duration, Utc};
use rand::RngExt;
use sacp_domain::{Currency, Money};
use sacp_ports::Clock;

use crate::SimError;
use crate::catalog::{self, SimProduct};
use crate::faults::Faults;
use crate::wallet_core::{PaymentAnswer, WalletCore};

/// Tax rate of the sandbox store, in percent of the subtotal.
pub const TAX_PERCENT: i64 = 13;

/// Configuration of a simulated store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Public base URL (`http://host:port/ssim`).
    pub public_base: String,
    /// Merchant id, published in `/.well-known/ucp`.
    pub merchant_id: String,
    /// Merchant name.
    pub merchant_name: String,
    /// Session lifetime in minutes (5–60).
    pub session_minutes: i64,
    /// Flat shipping charged once fulfillment is `shipping` (0 in the sandbox, so the seed
    /// conversation totals 21.46 CAD).
    pub shipping_cents: i64,
}

impl StoreConfig {
    /// Sandbox defaults: "SACP Coffee Roasters", 30-minute sessions, no shipping charge.
    pub fn sandbox(public_base: impl Into<String>) -> StoreConfig {
        StoreConfig {
            public_base: public_base.into(),
            merchant_id: "merch_sacp_coffee".into(),
            merchant_name: "SACP Coffee Roasters".into(),
            session_minutes: 30,
            shipping_cents: 0,
        }
    }
}

/// A buyer as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SimBuyer {
    /// Name.
    pub name: Option<String>,
    /// Email.
    pub email: Option<String>,
    /// Phone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

/// A fulfillment as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SimFulfillment {
    /// `shipping` or `pickup`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Address for shipping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<SimAddress>,
}

/// An address as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SimAddress {
    /// Street.
    pub street: Option<String>,
    /// City.
    pub city: Option<String>,
    /// State or province.
    pub state: Option<String>,
    /// Postal code.
    pub postal_code: Option<String>,
    /// Country code.
    pub country: Option<String>,
}

/// One cart line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimLine {
    /// Product id.
    pub product_id: String,
    /// Name.
    pub name: String,
    /// Quantity.
    pub quantity: u32,
    /// Unit price.
    pub unit_price: Money,
    /// `unit_price × quantity`.
    pub subtotal: Money,
}

/// A session's cart with its figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimCart {
    /// Lines.
    pub items: Vec<SimLine>,
    /// Sum of the lines.
    pub subtotal: Money,
    /// 13% of the subtotal, to the cent.
    pub tax: Money,
    /// Shipping once fulfillment is set.
    pub shipping: Option<Money>,
    /// Total.
    pub total: Money,
}

/// Session statuses of the store.
pub use sacp_ports::store::StoreSessionStatus as SessionStatus;

/// A checkout session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimSession {
    /// Id.
    pub id: String,
    /// Status.
    pub status: SessionStatus,
    /// Cart.
    pub cart: SimCart,
    /// Buyer.
    pub buyer: Option<SimBuyer>,
    /// Fulfillment.
    pub fulfillment: Option<SimFulfillment>,
    /// Order, once completed.
    pub order_id: Option<String>,
    /// Transaction, once completed.
    pub transaction_id: Option<String>,
    /// Step-up the store is waiting for.
    pub step_up_id: Option<String>,
    /// Log of what happened.
    pub messages: Vec<(DateTime<Utc>, &'static str, String)>,
    /// Expiry.
    pub expires_at: DateTime<Utc>,
    /// Creation.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl SimSession {
    /// The call the store suggests next.
    pub fn next_step(&self) -> &'static str {
        match self.status {
            SessionStatus::CartBuilding | SessionStatus::AwaitingBuyerInfo => {
                "add_buyer_and_fulfillment"
            }
            SessionStatus::ReadyForPayment => "complete_checkout",
            SessionStatus::AwaitingAuthorization => "await_wallet_authorization",
            SessionStatus::Processing => "wait",
            SessionStatus::Completed => "view_order",
            _ => "start_new_session",
        }
    }
}

/// A placed order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimOrder {
    /// Order id.
    pub order_id: String,
    /// Session it came from.
    pub session_id: String,
    /// Owner of the paying token.
    pub owner: String,
    /// Lines.
    pub items: Vec<SimLine>,
    /// Amount charged.
    pub total: Money,
    /// Subtotal.
    pub subtotal: Money,
    /// Transaction id.
    pub transaction_id: String,
    /// Creation.
    pub created_at: DateTime<Utc>,
}

/// What completing a session produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// Order placed.
    Completed {
        /// Order id.
        order_id: String,
        /// Transaction id.
        transaction_id: String,
    },
    /// The store asked the wallet and the person must step up.
    AwaitingAuthorization {
        /// Step-up id.
        step_up_id: String,
    },
}

/// A requested line: product id and quantity, as the store receives them.
pub type LineRequest = (String, i64);

/// A change to a session.
#[derive(Debug, Clone, Default)]
pub struct SessionChange {
    /// New lines.
    pub items: Option<Vec<LineRequest>>,
    /// New buyer.
    pub buyer: Option<SimBuyer>,
    /// New fulfillment.
    pub fulfillment: Option<SimFulfillment>,
}

/// Counters, for tests that must prove how often something happened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Catalog answers served (`GET /products`, `/products/search`, `/products/{id}`).
    pub catalog_reads: u64,
    /// Sessions created.
    pub sessions_created: u64,
    /// Successful completions (orders placed).
    pub completions: u64,
    /// Completion attempts, successful or not.
    pub completion_attempts: u64,
}

#[derive(Default)]
struct State {
    sessions: HashMap<String, SimSession>,
    orders: HashMap<String, SimOrder>,
    faults: Faults,
    stats: StoreStats,
}

/// The simulated store.
pub struct StoreCore {
    clock: Arc<dyn Clock>,
    config: StoreConfig,
    wallet: Arc<WalletCore>,
    catalog: Vec<SimProduct>,
    // Outside the state lock: catalog reads are the hot path and never touch the state.
    catalog_reads: AtomicU64,
    state: Mutex<State>,
}

impl std::fmt::Debug for StoreCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreCore")
            .field("public_base", &self.config.public_base)
            .finish_non_exhaustive()
    }
}

fn random_id(prefix: &str) -> String {
    let mut rng = rand::rng();
    let hex: String = (0..12)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect();
    format!("{prefix}{hex}")
}

fn currency() -> Currency {
    Currency::CAD
}

/// 13% of `subtotal`, rounded half up to the cent.
pub fn tax_of(subtotal: Money) -> Money {
    let minor = (subtotal.minor_units() * TAX_PERCENT + 50).div_euclid(100);
    Money::from_minor(minor, subtotal.currency())
}

impl StoreCore {
    /// A store with the seeded catalog, paying through `wallet`.
    pub fn new(config: StoreConfig, wallet: Arc<WalletCore>, clock: Arc<dyn Clock>) -> StoreCore {
        StoreCore {
            clock,
            config,
            wallet,
            catalog: catalog::seed(),
            catalog_reads: AtomicU64::new(0),
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The configuration.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Current faults.
    pub fn faults(&self) -> Faults {
        self.state().faults.clone()
    }

    /// Replaces the faults.
    pub fn set_faults(&self, faults: Faults) {
        self.state().faults = faults;
    }

    /// Counters.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            catalog_reads: self.catalog_reads.load(Ordering::Relaxed),
            ..self.state().stats
        }
    }

    /// Counts one catalog answer served over HTTP.
    pub fn count_catalog_read(&self) {
        self.catalog_reads.fetch_add(1, Ordering::Relaxed);
    }

    /// Every order placed, for tests.
    pub fn orders(&self) -> Vec<SimOrder> {
        self.state().orders.values().cloned().collect()
    }

    /// A product by id.
    pub fn product(&self, id: &str) -> Result<&SimProduct, SimError> {
        self.catalog
            .iter()
            .find(|p| p.id == id)
            .ok_or_else(|| SimError::store(404, "Product not found", "Product not found"))
    }

    /// `GET /products`: `(page, total)`.
    pub fn list(
        &self,
        category: Option<&str>,
        min_cents: Option<i64>,
        max_cents: Option<i64>,
        limit: usize,
        offset: usize,
    ) -> (Vec<&SimProduct>, usize) {
        let matching: Vec<&SimProduct> = self
            .catalog
            .iter()
            .filter(|p| {
                category.is_none_or(|c| p.categories.iter().any(|pc| pc.eq_ignore_ascii_case(c)))
            })
            .filter(|p| min_cents.is_none_or(|min| p.price_cents >= min))
            .filter(|p| max_cents.is_none_or(|max| p.price_cents <= max))
            .collect();
        let total = matching.len();
        (
            matching
                .into_iter()
                .skip(offset)
                .take(limit.min(100))
                .collect(),
            total,
        )
    }

    /// `GET /products/search`: every word of `q` must appear in the name, description or
    /// categories.
    pub fn search(
        &self,
        q: &str,
        limit: usize,
        offset: usize,
    ) -> Result<(Vec<&SimProduct>, usize), SimError> {
        let words: Vec<String> = q.split_whitespace().map(str::to_lowercase).collect();
        if words.is_empty() {
            return Err(SimError::store(
                400,
                "invalid_request",
                "Query parameter q is required",
            ));
        }
        let matching: Vec<&SimProduct> = self
            .catalog
            .iter()
            .filter(|p| {
                let text = format!("{} {} {}", p.name, p.description, p.categories.join(" "))
                    .to_lowercase();
                words.iter().all(|w| text.contains(w.as_str()))
            })
            .collect();
        let total = matching.len();
        Ok((
            matching
                .into_iter()
                .skip(offset)
                .take(limit.min(100))
                .collect(),
            total,
        ))
    }

    fn price_lines(&self, items: &[LineRequest]) -> Result<Vec<SimLine>, SimError> {
        let mut unavailable = Vec::new();
        let mut lines = Vec::new();
        for (product_id, quantity) in items {
            let product = self.catalog.iter().find(|p| p.id == product_id);
            let quantity = u32::try_from(*quantity).ok().filter(|q| *q >= 1);
            match (product, quantity) {
                (Some(product), Some(quantity)) if product.available => {
                    let unit_price = Money::from_minor(product.price_cents, currency());
                    let subtotal = unit_price.checked_mul(quantity).map_err(|_| {
                        SimError::store(400, "invalid_request", "Quantity too large")
                    })?;
                    lines.push(SimLine {
                        product_id: product.id.to_owned(),
                        name: product.name.to_owned(),
                        quantity,
                        unit_price,
                        subtotal,
                    });
                }
                (_, None) => {
                    return Err(SimError::store(
                        400,
                        "invalid_request",
                        "Quantity must be a positive integer",
                    ));
                }
                _ => unavailable.push(product_id.clone()),
            }
        }
        if !unavailable.is_empty() {
            return Err(
                SimError::store(400, "item_unavailable", "Some items are not available")
                    .with_extra(serde_json::json!({ "unavailable_items": unavailable })),
            );
        }
        Ok(lines)
    }

    fn cart_of(&self, items: Vec<SimLine>, fulfillment: Option<&SimFulfillment>) -> SimCart {
        let zero = Money::zero(currency());
        let subtotal = items
            .iter()
            .try_fold(zero, |sum, line| sum.checked_add(line.subtotal))
            .unwrap_or(zero);
        let tax = tax_of(subtotal);
        let shipping = fulfillment.map(|f| {
            let cents = if f.kind == "shipping" {
                self.config.shipping_cents
            } else {
                0
            };
            Money::from_minor(cents, currency())
        });
        let total = [Some(subtotal), Some(tax), shipping]
            .into_iter()
            .flatten()
            .try_fold(zero, Money::checked_add)
            .unwrap_or(zero);
        SimCart {
            items,
            subtotal,
            tax,
            shipping,
            total,
        }
    }

    fn status_of(session: &SimSession) -> SessionStatus {
        match (&session.buyer, &session.fulfillment) {
            (Some(_), Some(_)) => SessionStatus::ReadyForPayment,
            (None, None) => SessionStatus::CartBuilding,
            _ => SessionStatus::AwaitingBuyerInfo,
        }
    }

    /// `POST /sessions`.
    pub fn create_session(&self, change: SessionChange) -> Result<SimSession, SimError> {
        let items = change
            .items
            .filter(|items| !items.is_empty())
            .ok_or_else(|| {
                SimError::store(400, "Items array is required", "Items array is required")
            })?;
        let lines = self.price_lines(&items)?;
        let now = self.clock.now();
        let cart = self.cart_of(lines, change.fulfillment.as_ref());
        let mut session = SimSession {
            id: random_id("sess_"),
            status: SessionStatus::CartBuilding,
            cart,
            buyer: change.buyer,
            fulfillment: change.fulfillment,
            order_id: None,
            transaction_id: None,
            step_up_id: None,
            messages: vec![(now, "info", "Session created".to_owned())],
            expires_at: now + Duration::minutes(self.config.session_minutes),
            created_at: now,
            updated_at: now,
        };
        session.status = Self::status_of(&session);
        let mut state = self.state();
        state.stats.sessions_created += 1;
        state.sessions.insert(session.id.clone(), session.clone());
        Ok(session)
    }

    fn live_session<'s>(
        state: &'s mut State,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<&'s mut SimSession, SimError> {
        let session = state
            .sessions
            .get_mut(id)
            .ok_or_else(|| SimError::store(404, "Session not found", "Session not found"))?;
        let open = matches!(
            session.status,
            SessionStatus::CartBuilding
                | SessionStatus::AwaitingBuyerInfo
                | SessionStatus::ReadyForPayment
        );
        if open && now >= session.expires_at {
            session.status = SessionStatus::Expired;
            session.updated_at = now;
        }
        Ok(session)
    }

    /// `GET /sessions/{id}`.
    pub fn session(&self, id: &str) -> Result<SimSession, SimError> {
        let now = self.clock.now();
        let mut state = self.state();
        Self::live_session(&mut state, id, now).map(|s| s.clone())
    }

    /// `PATCH /sessions/{id}`.
    pub fn update_session(&self, id: &str, change: SessionChange) -> Result<SimSession, SimError> {
        let now = self.clock.now();
        let lines = match &change.items {
            Some(items) if items.is_empty() => {
                return Err(SimError::store(
                    400,
                    "Items array is required",
                    "Items array is required",
                ));
            }
            Some(items) => Some(self.price_lines(items)?),
            None => None,
        };
        let mut state = self.state();
        let session = Self::live_session(&mut state, id, now)?;
        match session.status {
            SessionStatus::Expired => {
                return Err(SimError::store(
                    400,
                    "session_expired",
                    "The session has expired",
                ));
            }
            SessionStatus::CartBuilding
            | SessionStatus::AwaitingBuyerInfo
            | SessionStatus::ReadyForPayment => {}
            _ => {
                return Err(SimError::store(
                    400,
                    "session_not_editable",
                    "The session can no longer be edited",
                ));
            }
        }
        if let Some(buyer) = change.buyer {
            session.buyer = Some(buyer);
        }
        if let Some(fulfillment) = change.fulfillment {
            session.fulfillment = Some(fulfillment);
        }
        let lines = lines.unwrap_or_else(|| session.cart.items.clone());
        let cart = self.cart_of(lines, session.fulfillment.as_ref());
        session.cart = cart;
        session.status = Self::status_of(session);
        session.updated_at = now;
        session
            .messages
            .push((now, "info", "Session updated".to_owned()));
        Ok(session.clone())
    }

    /// `DELETE /sessions/{id}`.
    pub fn cancel_session(&self, id: &str) -> Result<(), SimError> {
        let now = self.clock.now();
        let mut state = self.state();
        let session = Self::live_session(&mut state, id, now)?;
        match session.status {
            SessionStatus::Completed | SessionStatus::Processing => Err(SimError::store(
                400,
                "session_not_cancellable",
                "The session can no longer be cancelled",
            )),
            _ => {
                session.status = SessionStatus::Cancelled;
                session.updated_at = now;
                Ok(())
            }
        }
    }

    /// `POST /sessions/{id}/complete`: charges `payment_token` (or, without one, asks the
    /// wallet for a token itself, which may need a step-up).
    pub fn complete_session(
        &self,
        id: &str,
        bearer: Option<&str>,
        payment_token: Option<&str>,
    ) -> Result<Completion, SimError> {
        let now = self.clock.now();
        self.state().stats.completion_attempts += 1;
        let owner = bearer
            .and_then(|b| self.wallet.token_owner(b))
            .ok_or_else(|| {
                SimError::store(401, "unauthorized", "A valid Bearer token is required")
            })?;
        let (total, step_up) = {
            let mut state = self.state();
            let session = Self::live_session(&mut state, id, now)?;
            let ready = matches!(
                session.status,
                SessionStatus::ReadyForPayment | SessionStatus::AwaitingAuthorization
            );
            if !ready {
                return Err(SimError::store(
                    400,
                    "session_not_ready",
                    "The session is not ready for payment",
                ));
            }
            (session.cart.total, session.step_up_id.clone())
        };
        if self.faults().decline_payments {
            let mut state = self.state();
            if let Some(session) = state.sessions.get_mut(id) {
                session.status = SessionStatus::Failed;
                session.updated_at = now;
            }
            return Err(SimError::store(400, "declined", "The payment was declined")
                .with_extra(serde_json::json!({ "order_id": null })));
        }
        let token = match payment_token.map(str::trim).filter(|t| !t.is_empty()) {
            Some(token) => token.to_owned(),
            None => {
                // Without a token the store asks the wallet itself, as the user.
                let step_up_token =
                    step_up.and_then(|s| match self.wallet.step_up_status(bearer, &s) {
                        Ok(crate::wallet_core::StepUpState::Approved(issued)) => {
                            Some(issued.payment_token)
                        }
                        _ => None,
                    });
                match step_up_token {
                    Some(token) => token,
                    None => {
                        let answer = self.wallet.payment_token(
                            bearer,
                            Some(&total.to_decimal_string()),
                            Some(total.currency().code()),
                            Some(&self.config.merchant_id),
                            Some(&self.config.merchant_name),
                        )?;
                        match answer {
                            PaymentAnswer::Issued(issued) => issued.payment_token,
                            PaymentAnswer::StepUp(step_up) => {
                                let mut state = self.state();
                                if let Some(session) = state.sessions.get_mut(id) {
                                    session.status = SessionStatus::AwaitingAuthorization;
                                    session.step_up_id = Some(step_up.step_up_id.clone());
                                    session.updated_at = now;
                                }
                                return Ok(Completion::AwaitingAuthorization {
                                    step_up_id: step_up.step_up_id,
                                });
                            }
                        }
                    }
                }
            }
        };
        let redemption = self
            .wallet
            .redeem(&token, &self.config.merchant_id, total)?;
        let mut state = self.state();
        let session = Self::live_session(&mut state, id, now)?;
        if !matches!(
            session.status,
            SessionStatus::ReadyForPayment | SessionStatus::AwaitingAuthorization
        ) {
            return Err(SimError::store(
                400,
                "session_not_ready",
                "The session is not ready for payment",
            ));
        }
        let order_id = random_id("ord_");
        let transaction_id = format!("txn_{}", redemption.payment_id.trim_start_matches("pay_"));
        session.status = SessionStatus::Completed;
        session.order_id = Some(order_id.clone());
        session.transaction_id = Some(transaction_id.clone());
        session.updated_at = now;
        session
            .messages
            .push((now, "info", format!("Order {order_id} placed")));
        let order = SimOrder {
            order_id: order_id.clone(),
            session_id: id.to_owned(),
            owner,
            items: session.cart.items.clone(),
            total: session.cart.total,
            subtotal: session.cart.subtotal,
            transaction_id: transaction_id.clone(),
            created_at: now,
        };
        state.orders.insert(order_id.clone(), order);
        state.stats.completions += 1;
        Ok(Completion::Completed {
            order_id,
            transaction_id,
        })
    }

    /// `GET /orders/{id}`: Bearer required.
    pub fn order(&self, id: &str, bearer: Option<&str>) -> Result<SimOrder, SimError> {
        bearer
            .and_then(|b| self.wallet.token_owner(b))
            .ok_or_else(|| {
                SimError::store(401, "unauthorized", "A valid Bearer token is required")
            })?;
        self.state()
            .orders
            .get(id)
            .cloned()
            .ok_or_else(|| SimError::store(404, "Order not found", "Order not found"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_cart_totals_21_46_cad() {
        let subtotal = Money::from_minor(1899, Currency::CAD);
        assert_eq!(tax_of(subtotal).minor_units(), 247);
    }
}
