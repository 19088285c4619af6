//! The checkout routes: create, read, change, cancel, complete, and the payment polls.

use actix_web::http::header;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use sacp_app::CompleteOutcome;

use super::{State, user_token};
use crate::access::Org;
use crate::guard::{self, EndUser};
use crate::problem::ApiError;
use sacp_domain::idempotency::StoredResponse;
use sacp_domain::{Checkout, PaymentStatus};
use sacp_wire::dto::{
    AuthorizationRequiredDto, CheckoutDto, CheckoutRequestDto, CompleteAcceptedDto, CompletedDto,
    PaymentStatusDto, ProblemDto, StepUpRequiredDto, StepUpStatusDto,
};

/// Open a guest checkout.
#[utoipa::path(
    post, path = "/checkout", tag = "checkout", request_body = CheckoutRequestDto,
    responses(
        (status = 201, description = "Created; `missing` and `next_step` say what comes next", body = CheckoutDto),
        (status = 400, description = "Malformed JSON", body = ProblemDto, content_type = "application/problem+json"),
        (status = 413, description = "Body over 64 KiB", body = ProblemDto, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = ProblemDto, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields or unavailable items", body = ProblemDto, content_type = "application/problem+json"),
        (status = 502, description = "Store unavailable", body = ProblemDto, content_type = "application/problem+json"),
    )
)]
pub async fn create(
    state: State,
    org: Org,
    request: HttpRequest,
    body: web::Json<CheckoutRequestDto>,
) -> Result<HttpResponse, ApiError> {
    let links = &state.links;
    let render = |checkout: &Checkout| StoredResponse {
        status: 201,
        content_type: Some("application/json".into()),
        location: Some(links.checkout(checkout.id().as_str())),
        body: serde_json::to_vec(&CheckoutDto::new(checkout, links)).unwrap_or_default(),
    };
    let answering = guard::answering(&request, &render);
    let claimed = answering.is_some();
    let checkout = state
        .gateway
        .create_checkout(&org.0, &body.into_inner().into(), answering)
        .await
        .inspect_err(|e| state.catalog_cache.note(e))?;
    let answer = render(&checkout);
    let mut response = HttpResponse::Created()
        .insert_header((header::LOCATION, answer.location.unwrap_or_default()))
        .content_type("application/json")
        .body(answer.body);
    guard::mark_answered(&mut response, claimed);
    Ok(response)
}

/// Read a checkout.
#[utoipa::path(
    get, path = "/checkout/{id}", tag = "checkout",
    params(("id" = String, Path, description = "Checkout id")),
    responses(
        (status = 200, description = "The checkout", body = CheckoutDto),
        (status = 404, description = "No such checkout", body = ProblemDto, content_type = "application/problem+json"),
    )
)]
pub async fn get(state: State, org: Org, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let checkout = state.gateway.get_checkout(&org.0, &id).await?;
    Ok(HttpResponse::Ok().json(CheckoutDto::new(&checkout, &state.links)))
}

/// Change items, buyer or fulfillment. Refused (409) while a payment is being authorized.
#[utoipa::path(
    patch, path = "/checkout/{id}", tag = "checkout", request_body = CheckoutRequestDto,
    params(("id" = String, Path, description = "Checkout id")),
    responses(
        (status = 200, description = "The changed checkout", body = CheckoutDto),
        (status = 400, description = "Malformed JSON", body = ProblemDto, content_type = "application/problem+json"),
        (status = 404, description = "No such checkout", body = ProblemDto, content_type = "application/problem+json"),
        (status = 409, description = "Not editable now (payment pending, completed, closed, expired)", body = ProblemDto, content_type = "application/problem+json"),
        (status = 413, description = "Body over 64 KiB", body = ProblemDto, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = ProblemDto, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields or unavailable items", body = ProblemDto, content_type = "application/problem+json"),
    )
)]
pub async fn update(
    state: State,
    org: Org,
    id: web::Path<String>,
    body: web::Json<CheckoutRequestDto>,
) -> Result<HttpResponse, ApiError> {
    let checkout = state
        .gateway
        .update_checkout_details(&org.0, &id, &body.into_inner().into())
        .await
        .inspect_err(|e| state.catalog_cache.note(e))?;
    Ok(HttpResponse::Ok().json(CheckoutDto::new(&checkout, &state.links)))
}

/// Cancel a checkout (a pending payment authorization is cancelled with it).
#[utoipa::path(
    post, path = "/checkout/{id}/cancel", tag = "checkout",
    params(("id" = String, Path, description = "Checkout id")),
    responses(
        (status = 200, description = "Cancelled", body = CheckoutDto),
        (status = 404, description = "No such checkout", body = ProblemDto, content_type = "application/problem+json"),
        (status = 409, description = "Already completed or closed", body = ProblemDto, content_type = "application/problem+json"),
    )
)]
pub async fn cancel(
    state: State,
    org: Org,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let checkout = state.gateway.cancel_checkout(&org.0, &id).await?;
    Ok(HttpResponse::Ok().json(CheckoutDto::new(&checkout, &state.links)))
}

/// Pay. Without a user token: 202 with a link, QR code and code the person approves in the
/// wallet. With a user token (Bearer, or `access_token`): 200 completed, or 202 step-up.
#[utoipa::path(
    post, path = "/checkout/{id}/complete", tag = "payment",
    params(
        ("id" = String, Path, description = "Checkout id"),
        ("access_token" = Option<String>, Query, description = "The person's wallet token, for clients that cannot send an Authorization header"),
    ),
    security((), ("user_token" = [])),
    responses(
        (status = 200, description = "Order placed (user token path)", body = CompletedDto),
        (status = 202, description = "The person must approve: `authorization_required` (guest) or `step_up_required` (user token)", body = CompleteAcceptedDto),
        (status = 401, description = "User token not valid", body = ProblemDto, content_type = "application/problem+json"),
        (status = 404, description = "No such checkout", body = ProblemDto, content_type = "application/problem+json"),
        (status = 409, description = "Not ready, already paying, or closed", body = ProblemDto, content_type = "application/problem+json"),
        (status = 413, description = "Body over 64 KiB", body = ProblemDto, content_type = "application/problem+json"),
        (status = 422, description = "Payment refused", body = ProblemDto, content_type = "application/problem+json"),
        (status = 502, description = "Store or wallet unavailable", body = ProblemDto, content_type = "application/problem+json"),
        (status = 504, description = "Store or wallet timeout", body = ProblemDto, content_type = "application/problem+json"),
    )
)]
pub async fn complete(
    state: State,
    org: Org,
    id: web::Path<String>,
    request: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let token = user_token(&request, Some(&body))?;
    let outcome = state
        .gateway
        .complete_checkout(&org.0, &id, token.as_ref())
        .await;
    if let Some(subject) = token.as_ref().and_then(|t| t.subject()) {
        request.extensions_mut().insert(EndUser(subject.to_owned()));
    }
    let outcome = outcome?;
    let links = &state.links;
    Ok(match outcome {
        CompleteOutcome::AuthorizationRequired {
            checkout,
            authorization,
        } => {
            let now = state.gateway.now();
            let amount = authorization.amount();
            let checkout_id = checkout.id().as_str();
            let request_id = authorization.id().as_str();
            HttpResponse::Accepted().json(AuthorizationRequiredDto {
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
            })
        }
        CompleteOutcome::Completed(checkout) => {
            let order =
                checkout
                    .order()
                    .cloned()
                    .unwrap_or_else(|| sacp_domain::OrderConfirmation {
                        order_id: String::new(),
                        transaction_id: String::new(),
                    });
            HttpResponse::Ok().json(CompletedDto {
                status: "completed".into(),
                message: format!(
                    "Payment of {} approved. Order {} is confirmed.",
                    checkout.cart().total().formatted(),
                    order.order_id
                ),
                order_id: order.order_id,
                transaction_id: order.transaction_id,
                checkout: CheckoutDto::new(&checkout, links),
            })
        }
        CompleteOutcome::StepUpRequired {
            checkout,
            step_up_id,
            expires_at,
            trigger,
        } => {
            let amount = checkout.cart().total();
            let limit = match trigger.as_deref() {
                Some("daily_limit") => "daily limit",
                Some("monthly_limit") => "monthly limit",
                _ => "per-payment limit",
            };
            HttpResponse::Accepted().json(StepUpRequiredDto {
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
            })
        }
    })
}

/// What an agent can tell the person about a failed payment, and do next.
fn failure_message(reason: Option<&str>) -> String {
    use sacp_domain::authorization::failure;
    match reason {
        Some(failure::NO_PAYMENT_METHOD) => "The person's wallet has no payment method: ask them to add a card in their wallet app, then call complete again. Nothing was charged.".into(),
        Some(failure::DECLINED) => "The card was declined; nothing was charged. The person can choose another card in their wallet, then call complete again.".into(),
        Some(failure::OVER_WALLET_LIMIT) => "The payment is above what the person's wallet allows; nothing was charged. The person can raise the limit in their wallet, then call complete again.".into(),
        Some(failure::APPROVAL_EXPIRED) => "The approval could no longer be collected from the wallet; nothing was charged. Call complete again for a new code.".into(),
        Some(failure::ORDER_NOT_PLACED) => "The order could not be placed after the approval; nothing was charged. Call complete again to retry.".into(),
        Some(failure::WALLET_TOKEN_REFUSED) => "The wallet withdrew the approval; nothing was charged. Call complete again for a new code.".into(),
        Some(failure::STORE_REFUSED_TOKEN) => "The store did not accept the wallet's approval; nothing was charged. Call complete again, or contact the merchant if it keeps happening.".into(),
        _ => "The payment could not be completed; nothing was charged. Call complete again to retry.".into(),
    }
}

fn payment_message(
    status: PaymentStatus,
    amount: &str,
    user_code: &str,
    reason: Option<&str>,
) -> String {
    match status {
        PaymentStatus::Pending => format!("Waiting for the person to approve {amount} in their wallet (code {user_code})."),
        PaymentStatus::Approved => format!("The person approved {amount}; the order is being placed. Keep polling."),
        PaymentStatus::Completed => "Payment approved! Order confirmed.".into(),
        PaymentStatus::Rejected => "Payment was rejected by the person. Nothing was charged; complete the checkout again to retry.".into(),
        PaymentStatus::Expired => "The authorization request expired. Nothing was charged; complete the checkout again to get a new code.".into(),
        PaymentStatus::Cancelled => "The checkout was cancelled; nothing was charged, and an approval given now is not used.".into(),
        PaymentStatus::Failed => failure_message(reason),
    }
}

/// Poll a guest payment authorization. Answered from the gateway's own state: polling does
/// not call the wallet, and the order completes even if nobody polls.
#[utoipa::path(
    get, path = "/checkout/{id}/payment-status/{request_id}", tag = "payment",
    params(
        ("id" = String, Path, description = "Checkout id"),
        ("request_id" = String, Path, description = "Payment request id (`par_...`)"),
    ),
    responses(
        (status = 200, description = "Current status", body = PaymentStatusDto),
        (status = 404, description = "No such checkout or request", body = ProblemDto, content_type = "application/problem+json"),
    )
)]
pub async fn payment_status(
    state: State,
    org: Org,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (checkout_id, request_id) = path.into_inner();
    let view = state
        .gateway
        .payment_status(&org.0, &checkout_id, &request_id)
        .await?;
    let authorization = &view.authorization;
    let pending = view.status == PaymentStatus::Pending;
    let order = view
        .checkout
        .order()
        .filter(|_| view.status == PaymentStatus::Completed);
    Ok(HttpResponse::Ok().json(PaymentStatusDto {
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
    }))
}

/// Poll a wallet step-up (user-token path), with the same user token.
#[utoipa::path(
    get, path = "/checkout/{id}/step-up/{step_up_id}", tag = "payment",
    params(
        ("id" = String, Path, description = "Checkout id"),
        ("step_up_id" = String, Path, description = "Step-up id from complete"),
    ),
    security(("user_token" = [])),
    responses(
        (status = 200, description = "Current status", body = StepUpStatusDto),
        (status = 401, description = "User token missing or not valid", body = ProblemDto, content_type = "application/problem+json"),
        (status = 404, description = "No such checkout or step-up", body = ProblemDto, content_type = "application/problem+json"),
    )
)]
pub async fn step_up(
    state: State,
    org: Org,
    path: web::Path<(String, String)>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (checkout_id, step_up_id) = path.into_inner();
    let token = user_token(&request, None)?;
    let view = state
        .gateway
        .step_up_status(&org.0, &checkout_id, &step_up_id, token.as_ref())
        .await?;
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
    Ok(HttpResponse::Ok().json(StepUpStatusDto {
        status: view.status.as_str().to_owned(),
        message,
        reason: view.reason.clone(),
        order_id: order.map(|o| o.order_id.clone()),
        transaction_id: order.map(|o| o.transaction_id.clone()),
        checkout: CheckoutDto::new(&view.checkout, &state.links),
    }))
}
