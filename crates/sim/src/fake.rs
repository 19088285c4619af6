//! In-process fakes of the [`Store`] and [`Wallet`] ports over the simulator cores.
//!
//! They honour the same fault knobs as the HTTP faces and fail with the errors the HTTP
//! adapters produce for the same faults (via the shared [`from_http_status`] mapping): a
//! 503 is [`UpstreamError::Unavailable`], a garbage body is
//! [`UpstreamError::MalformedResponse`], latency beyond the fake's timeout is
//! [`UpstreamError::Timeout`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rand::RngExt;
use sacp_domain::catalog::{Merchant, Order, OrderLine, Product, ProductImage, ProductPage};
use sacp_domain::validation::{AddressInput, BuyerInput, FulfillmentInput};
use sacp_domain::{
    Buyer, DeviceCode, DeviceGrant, Fulfillment, Items, OrderConfirmation, ProductId,
    StoreSessionId,
};
use sacp_ports::error::from_http_status;
use sacp_ports::store::{
    CompletionOutcome, ProductQuery, ReportedLine, ReportedSession, SearchQuery, SessionPatch,
    StoreSession,
};
use sacp_ports::wallet::{
    DeviceAuthorizationRequest, DevicePoll, Introspection, IssuedToken, PaymentToken,
    PaymentTokenOutcome, PaymentTokenRequest, StepUp, StepUpStatus, TokenInfo, payment_token_error,
};
use sacp_ports::{BearerToken, Store, UpstreamError, Wallet};

use crate::SimError;
use crate::catalog::SimProduct;
use crate::faults::{Faults, Injected};
use crate::store_core::{
    Completion, SessionChange, SimAddress, SimBuyer, SimFulfillment, SimSession, StoreCore,
};
use crate::wallet_core::{DeviceRequest, PaymentAnswer, StepUpState, TokenOut, WalletCore};

fn to_upstream(error: SimError) -> UpstreamError {
    if error.code == "item_unavailable" {
        let product_ids = error
            .extra
            .as_ref()
            .and_then(|e| e.get("unavailable_items"))
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default();
        return UpstreamError::ItemsUnavailable { product_ids };
    }
    from_http_status(error.status, Some(&error.code), None)
}

fn malformed(what: &str) -> UpstreamError {
    UpstreamError::MalformedResponse(what.to_owned())
}

/// Plays the faults of one call as the HTTP face would, seen from a client with `timeout`.
async fn play_faults(faults: Faults, timeout: Duration) -> Result<(), UpstreamError> {
    if faults.latency_ms > 0 {
        if faults.latency() >= timeout {
            tokio::time::sleep(timeout).await;
            return Err(UpstreamError::Timeout);
        }
        tokio::time::sleep(faults.latency()).await;
    }
    match faults.decide(rand::rng().random()) {
        Injected::ServerError => Err(UpstreamError::Unavailable),
        Injected::Malformed => Err(malformed("injected garbage body")),
        Injected::None => Ok(()),
    }
}

/// The simulated store as an in-process [`Store`].
#[derive(Debug, Clone)]
pub struct FakeStore {
    core: Arc<StoreCore>,
    timeout: Duration,
}

impl FakeStore {
    /// A fake over `core` that gives up after `timeout` like an HTTP client would.
    pub fn new(core: Arc<StoreCore>, timeout: Duration) -> FakeStore {
        FakeStore { core, timeout }
    }

    async fn faults(&self) -> Result<(), UpstreamError> {
        play_faults(self.core.faults(), self.timeout).await
    }
}

fn product(product: &SimProduct) -> Result<Product, UpstreamError> {
    Ok(Product {
        id: ProductId::parse(product.id).map_err(|_| malformed("product id"))?,
        name: product.name.to_owned(),
        description: product.description.to_owned(),
        price: sacp_domain::Money::from_minor(product.price_cents, sacp_domain::Currency::CAD),
        available: product.available,
        stock: product.quantity,
        categories: product.categories.iter().map(|c| (*c).to_owned()).collect(),
        images: vec![ProductImage {
            url: format!("https://images.example/{}.jpg", product.id),
            alt: Some(product.name.to_owned()),
        }],
    })
}

fn page(
    products: Vec<&SimProduct>,
    total: usize,
    limit: u32,
    offset: u32,
) -> Result<ProductPage, UpstreamError> {
    let total = u32::try_from(total).map_err(|_| malformed("total"))?;
    Ok(ProductPage {
        products: products
            .into_iter()
            .map(product)
            .collect::<Result<_, _>>()?,
        next_offset: (offset.saturating_add(limit) < total).then(|| offset.saturating_add(limit)),
        total: Some(total),
    })
}

fn sim_buyer(buyer: &Buyer) -> SimBuyer {
    SimBuyer {
        name: Some(buyer.name.clone()),
        email: Some(buyer.email.as_str().to_owned()),
        phone: buyer.phone.as_ref().map(|p| p.as_str().to_owned()),
    }
}

fn sim_fulfillment(fulfillment: &Fulfillment) -> SimFulfillment {
    match fulfillment {
        Fulfillment::Pickup => SimFulfillment {
            kind: "pickup".into(),
            address: None,
        },
        Fulfillment::Shipping { address } => SimFulfillment {
            kind: "shipping".into(),
            address: Some(SimAddress {
                street: Some(address.street.clone()),
                city: Some(address.city.clone()),
                state: Some(address.state.clone()),
                postal_code: Some(address.postal_code.clone()),
                country: Some(address.country.clone()),
            }),
        },
    }
}

fn sim_lines(items: &Items) -> Vec<(String, i64)> {
    items
        .lines()
        .iter()
        .map(|l| {
            (
                l.product_id.as_str().to_owned(),
                i64::from(l.quantity.get()),
            )
        })
        .collect()
}

fn domain_session(session: SimSession) -> Result<StoreSession, UpstreamError> {
    let lines = session
        .cart
        .items
        .into_iter()
        .map(|l| ReportedLine {
            product_id: l.product_id,
            name: l.name,
            quantity: i64::from(l.quantity),
            unit_price: l.unit_price,
            line_total: l.subtotal,
        })
        .collect();
    StoreSession::from_reported(ReportedSession {
        id: session.id,
        status: session.status,
        lines,
        subtotal: session.cart.subtotal,
        tax: session.cart.tax,
        shipping: session.cart.shipping,
        total: session.cart.total,
        buyer: session.buyer.map(|b| BuyerInput {
            name: b.name,
            email: b.email,
            phone: b.phone,
        }),
        fulfillment: session.fulfillment.map(|f| FulfillmentInput {
            kind: Some(f.kind),
            address: f.address.map(|a| AddressInput {
                street: a.street,
                city: a.city,
                state: a.state,
                postal_code: a.postal_code,
                country: a.country,
            }),
        }),
        order_id: session.order_id,
        transaction_id: session.transaction_id,
        expires_at: session.expires_at,
    })
}

#[async_trait]
impl Store for FakeStore {
    async fn merchant(&self) -> Result<Merchant, UpstreamError> {
        let config = self.core.config();
        Ok(Merchant {
            id: config.merchant_id.clone(),
            name: config.merchant_name.clone(),
        })
    }

    async fn list_products(&self, query: &ProductQuery) -> Result<ProductPage, UpstreamError> {
        self.faults().await?;
        let limit = query.limit.clamp(1, 100);
        let (products, total) = self.core.list(
            query.category.as_deref(),
            None,
            None,
            limit as usize,
            query.offset as usize,
        );
        page(products, total, limit, query.offset)
    }

    async fn search_products(&self, query: &SearchQuery) -> Result<ProductPage, UpstreamError> {
        self.faults().await?;
        let limit = query.limit.clamp(1, 100);
        let (products, total) = self
            .core
            .search(&query.q, limit as usize, query.offset as usize)
            .map_err(to_upstream)?;
        page(products, total, limit, query.offset)
    }

    async fn product(&self, id: &ProductId) -> Result<Product, UpstreamError> {
        self.faults().await?;
        product(self.core.product(id.as_str()).map_err(to_upstream)?)
    }

    async fn create_session(
        &self,
        items: &Items,
        buyer: Option<&Buyer>,
        fulfillment: Option<&Fulfillment>,
    ) -> Result<StoreSession, UpstreamError> {
        self.faults().await?;
        let change = SessionChange {
            items: Some(sim_lines(items)),
            buyer: buyer.map(sim_buyer),
            fulfillment: fulfillment.map(sim_fulfillment),
        };
        domain_session(self.core.create_session(change).map_err(to_upstream)?)
    }

    async fn session(&self, id: &StoreSessionId) -> Result<StoreSession, UpstreamError> {
        self.faults().await?;
        domain_session(self.core.session(&id.0).map_err(to_upstream)?)
    }

    async fn update_session(
        &self,
        id: &StoreSessionId,
        patch: &SessionPatch,
    ) -> Result<StoreSession, UpstreamError> {
        self.faults().await?;
        let change = SessionChange {
            items: patch.items.as_ref().map(sim_lines),
            buyer: patch.buyer.as_ref().map(sim_buyer),
            fulfillment: patch.fulfillment.as_ref().map(sim_fulfillment),
        };
        domain_session(
            self.core
                .update_session(&id.0, change)
                .map_err(to_upstream)?,
        )
    }

    async fn complete_session(
        &self,
        id: &StoreSessionId,
        payment_token: &BearerToken,
        user_token: &BearerToken,
    ) -> Result<CompletionOutcome, UpstreamError> {
        self.faults().await?;
        match self
            .core
            .complete_session(
                &id.0,
                Some(user_token.expose()),
                Some(payment_token.expose()),
            )
            .map_err(to_upstream)?
        {
            Completion::Completed {
                order_id,
                transaction_id,
            } => Ok(CompletionOutcome::Completed(OrderConfirmation {
                order_id,
                transaction_id,
            })),
            Completion::AwaitingAuthorization { step_up_id } => {
                Ok(CompletionOutcome::AwaitingAuthorization { step_up_id })
            }
        }
    }

    async fn cancel_session(&self, id: &StoreSessionId) -> Result<(), UpstreamError> {
        self.faults().await?;
        self.core.cancel_session(&id.0).map_err(to_upstream)
    }

    async fn order(
        &self,
        order_id: &str,
        user_token: &BearerToken,
    ) -> Result<Order, UpstreamError> {
        self.faults().await?;
        let order = self
            .core
            .order(order_id, Some(user_token.expose()))
            .map_err(to_upstream)?;
        Ok(Order {
            order_id: order.order_id,
            status: "confirmed".into(),
            items: order
                .items
                .iter()
                .map(|l| {
                    Ok(OrderLine {
                        product_id: ProductId::parse(&l.product_id)
                            .map_err(|_| malformed("order line"))?,
                        name: l.name.clone(),
                        quantity: l.quantity,
                        unit_price: l.unit_price,
                    })
                })
                .collect::<Result<_, UpstreamError>>()?,
            subtotal: order.subtotal,
            transaction_id: Some(order.transaction_id),
            created_at: Some(order.created_at.to_rfc3339()),
        })
    }
}

/// The simulated wallet as an in-process [`Wallet`], acting as the gateway's client.
#[derive(Debug, Clone)]
pub struct FakeWallet {
    core: Arc<WalletCore>,
    timeout: Duration,
}

impl FakeWallet {
    /// A fake over `core` that gives up after `timeout` like an HTTP client would.
    pub fn new(core: Arc<WalletCore>, timeout: Duration) -> FakeWallet {
        FakeWallet { core, timeout }
    }

    async fn faults(&self) -> Result<(), UpstreamError> {
        play_faults(self.core.faults(), self.timeout).await
    }
}

fn issued(token: TokenOut) -> IssuedToken {
    IssuedToken {
        access_token: BearerToken::new(token.access_token),
        expires_in: u64::try_from(token.expires_in).unwrap_or(0),
        scope: token.scope,
    }
}

fn payment(token: crate::wallet_core::PaymentTokenOut) -> PaymentToken {
    PaymentToken {
        payment_id: token.payment_id,
        token: BearerToken::new(token.payment_token),
        expires_in: u64::try_from(token.expires_in).unwrap_or(0),
    }
}

#[async_trait]
impl Wallet for FakeWallet {
    async fn start_device_authorization(
        &self,
        request: &DeviceAuthorizationRequest,
    ) -> Result<DeviceGrant, UpstreamError> {
        self.faults().await?;
        let limit = Some(request.spending_limit.to_decimal_string());
        let grant = self
            .core
            .start_device(&DeviceRequest {
                agent_name: Some(request.agent_name.clone()),
                agent_description: request.agent_description.clone(),
                scope: Some(request.scopes.join(" ")),
                per_transaction: limit.clone(),
                daily: limit.clone(),
                monthly: limit,
                currency: Some(request.spending_limit.currency().code().to_owned()),
                buyer_email: request.buyer_email.as_ref().map(|e| e.as_str().to_owned()),
            })
            .map_err(to_upstream)?;
        Ok(DeviceGrant {
            device_code: DeviceCode::new(grant.device_code),
            user_code: grant.user_code,
            verification_uri: grant.verification_uri,
            verification_uri_complete: grant.verification_uri_complete,
            expires_in: grant.expires_in,
            interval: Some(grant.interval),
            notification_sent: grant.notification_sent.unwrap_or(false),
        })
    }

    async fn poll_device_token(
        &self,
        device_code: &DeviceCode,
    ) -> Result<DevicePoll, UpstreamError> {
        self.faults().await?;
        match self.core.poll_device(device_code.expose()) {
            Ok(token) => Ok(DevicePoll::Approved(issued(token))),
            Err(error) if error.status == 401 => Err(UpstreamError::rejected("invalid_client")),
            Err(error) => {
                DevicePoll::from_error_code(&error.code).ok_or_else(|| to_upstream(error))
            }
        }
    }

    async fn client_credentials(&self) -> Result<IssuedToken, UpstreamError> {
        self.faults().await?;
        let config = self.core.config().clone();
        self.core
            .client_credentials(Some(&config.client_id), Some(&config.client_secret), false)
            .map(issued)
            .map_err(|e| match e.status {
                401 => UpstreamError::rejected("invalid_client"),
                _ => to_upstream(e),
            })
    }

    async fn introspect(&self, token: &BearerToken) -> Result<Introspection, UpstreamError> {
        self.faults().await?;
        let config = self.core.config().clone();
        let answer = self
            .core
            .introspect(
                Some((
                    &config.introspection_client_id,
                    &config.introspection_client_secret,
                )),
                token.expose(),
            )
            .map_err(|e| match e.status {
                401 => UpstreamError::rejected("invalid_client"),
                _ => to_upstream(e),
            })?;
        let Some(active) = answer.active else {
            return Ok(Introspection::Inactive);
        };
        let text = |key: &str| active.get(key).and_then(|v| v.as_str()).map(str::to_owned);
        let expires_at = active
            .get("exp")
            .and_then(serde_json::Value::as_i64)
            .and_then(|exp| chrono::DateTime::from_timestamp(exp, 0))
            .ok_or_else(|| malformed("exp"))?;
        let limits = active.get("spending_limits");
        let per_transaction_limit = match (
            limits
                .and_then(|l| l.get("per_transaction"))
                .and_then(|v| v.as_str()),
            limits
                .and_then(|l| l.get("currency"))
                .and_then(|v| v.as_str()),
        ) {
            (Some(amount), Some(currency)) => sacp_domain::Currency::parse(currency)
                .and_then(|c| sacp_domain::Money::parse_decimal(amount, c))
                .map(Some)
                .map_err(|_| malformed("spending_limits"))?,
            _ => None,
        };
        Ok(Introspection::Active(TokenInfo {
            subject: text("owner_id").ok_or_else(|| malformed("owner_id"))?,
            client_id: text("client_id"),
            scopes: active
                .get("permissions")
                .and_then(|p| serde_json::from_value(p.clone()).ok())
                .unwrap_or_default(),
            expires_at,
            per_transaction_limit,
        }))
    }

    async fn request_payment_token(
        &self,
        user_token: &BearerToken,
        request: &PaymentTokenRequest,
    ) -> Result<PaymentTokenOutcome, UpstreamError> {
        self.faults().await?;
        let answer = self
            .core
            .payment_token(
                Some(user_token.expose()),
                Some(&request.amount.to_decimal_string()),
                Some(request.amount.currency().code()),
                Some(&request.merchant_id),
                request.merchant_name.as_deref(),
            )
            .map_err(|e| payment_token_error(e.status, Some(&e.code), Some(&e.message)))?;
        Ok(match answer {
            PaymentAnswer::Issued(token) => PaymentTokenOutcome::Issued(payment(token)),
            PaymentAnswer::StepUp(step_up) => PaymentTokenOutcome::StepUpRequired(StepUp {
                step_up_id: step_up.step_up_id,
                expires_at: Some(step_up.expires_at),
                reason: Some(step_up.trigger_type),
            }),
        })
    }

    async fn step_up_status(
        &self,
        user_token: &BearerToken,
        step_up_id: &str,
    ) -> Result<StepUpStatus, UpstreamError> {
        self.faults().await?;
        Ok(
            match self
                .core
                .step_up_status(Some(user_token.expose()), step_up_id)
                .map_err(to_upstream)?
            {
                StepUpState::Pending => StepUpStatus::Pending,
                StepUpState::Approved(token) => StepUpStatus::Approved(payment(token)),
                StepUpState::ApprovedWithoutToken => StepUpStatus::ApprovedWithoutToken,
                StepUpState::Rejected => StepUpStatus::Rejected,
                StepUpState::Expired => StepUpStatus::Expired,
            },
        )
    }

    async fn revoke_token(&self, token: &BearerToken) -> Result<(), UpstreamError> {
        self.faults().await?;
        self.core.revoke(token.expose());
        Ok(())
    }
}
