//! The answers about paying, built from what the use cases return: the same shapes over REST
//! and MCP.

use chrono::{DateTime, Utc};
use sacp_app::{PaymentStatusView, StepUpView};
use sacp_domain::{Checkout, OrderConfirmation, PaymentAuthorization, PaymentStatus};

use crate::dto::{
    AuthorizationRequiredDto, CheckoutDto, CompletedDto, Links, PaymentStatusDto,
    StepUpRequiredDto, StepUpStatusDto,
};
use crate::messages::payment_message;

impl AuthorizationRequiredDto {
    /// The guest path's answer: what the person opens, scans or types to approve.
    pub fn new(
        checkout: &Checkout,
        authorization: &PaymentAuthorization,
        links: &Links,
        now: DateTime<Utc>,
    ) -> AuthorizationRequiredDto {
        let amount = authorization.amount();
        let checkout_id = checkout.id().as_str();
        let request_id = authorization.id().as_str();
        AuthorizationRequiredDto {
            status: "authorization_required".into(),
            authorization_url: authorization.verification_uri_complete().to_owned(),
            qr_code_url: links.qr(request_id),
            user_code: authorization.user_code().to_owned(),
            verification_uri: authorization.verification_uri().to_owned(),
            poll_endpoint: links.payment_status(checkout_id, request_id),
            expires_in: authorization.expires_in(now),
            request_id: request_id.to_owned(),
            interval: authorization.interval_secs(),
            amount: amount.into(),
            notification_sent: authorization.notification_sent(),
            message: format!(
                "Please authorize the payment of {} by opening {} or entering code {} in your wallet app.",
                amount.formatted(),
                authorization.verification_uri_complete(),
                authorization.user_code()
            ),
            checkout_id: checkout_id.to_owned(),
        }
    }
}

impl CompletedDto {
    /// The user-token path's answer once the order is placed.
    pub fn new(checkout: &Checkout, links: &Links) -> CompletedDto {
        let order = checkout
            .order()
            .cloned()
            .unwrap_or_else(|| OrderConfirmation {
                order_id: String::new(),
                transaction_id: String::new(),
            });
        CompletedDto {
            status: "completed".into(),
            message: format!(
                "Payment of {} approved. Order {} is confirmed.",
                checkout.cart().total().formatted(),
                order.order_id
            ),
            order_id: order.order_id,
            transaction_id: order.transaction_id,
            checkout: CheckoutDto::new(checkout, links),
        }
    }
}

impl StepUpRequiredDto {
    /// The user-token path's answer when the wallet wants the person to approve more.
    pub fn new(
        checkout: &Checkout,
        step_up_id: String,
        expires_at: Option<DateTime<Utc>>,
        trigger: Option<String>,
        links: &Links,
    ) -> StepUpRequiredDto {
        let amount = checkout.cart().total();
        let limit = match trigger.as_deref() {
            Some("daily_limit") => "daily limit",
            Some("monthly_limit") => "monthly limit",
            _ => "per-payment limit",
        };
        StepUpRequiredDto {
            status: "step_up_required".into(),
            poll_endpoint: links.step_up(checkout.id().as_str(), &step_up_id),
            message: format!(
                "The payment of {} is above the {limit} the person set in their wallet: they must open their wallet app and approve this payment there (the wallet asks them). The order is placed as soon as they approve; poll the step-up endpoint with the same token to follow it.",
                amount.formatted()
            ),
            step_up_id,
            expires_at,
            trigger,
            amount: amount.into(),
            checkout_id: checkout.id().as_str().to_owned(),
        }
    }
}

impl PaymentStatusDto {
    /// Where a guest payment stands.
    pub fn new(view: &PaymentStatusView) -> PaymentStatusDto {
        let authorization = &view.authorization;
        let pending = view.status == PaymentStatus::Pending;
        let order = view
            .checkout
            .order()
            .filter(|_| view.status == PaymentStatus::Completed);
        PaymentStatusDto {
            status: view.status.as_str().to_owned(),
            message: payment_message(
                view.status,
                &authorization.amount().formatted(),
                authorization.user_code(),
                authorization.failure(),
            ),
            reason: authorization.failure().map(str::to_owned),
            expires_in: pending.then_some(view.expires_in),
            order_id: order.map(|o| o.order_id.clone()),
            transaction_id: order.map(|o| o.transaction_id.clone()),
            request_id: authorization.id().as_str().to_owned(),
            checkout_id: view.checkout.id().as_str().to_owned(),
            interval: authorization.interval_secs(),
        }
    }
}

impl StepUpStatusDto {
    /// Where a step-up stands.
    pub fn new(view: &StepUpView, links: &Links) -> StepUpStatusDto {
        let order = view
            .checkout
            .order()
            .filter(|_| view.status == PaymentStatus::Completed);
        let amount = view.checkout.cart().total().formatted();
        let message = match view.status {
            PaymentStatus::Pending => {
                format!("Waiting for the person to approve {amount} in their wallet app.")
            }
            other => payment_message(other, &amount, "", view.reason.as_deref()),
        };
        StepUpStatusDto {
            status: view.status.as_str().to_owned(),
            message,
            reason: view.reason.clone(),
            order_id: order.map(|o| o.order_id.clone()),
            transaction_id: order.map(|o| o.transaction_id.clone()),
            checkout: CheckoutDto::new(&view.checkout, links),
        }
    }
}
