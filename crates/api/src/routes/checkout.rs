//! The checkout routes: create, read, change, cancel, complete, and the payment polls.

use actix_web::http::header;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use sacp_app::CompleteOutcome;

use super::{State, user_token};
use crate::access::Org;
use crate::guard::{self, EndUser};
use crate::problem::ApiError;
use sacp_domain::Checkout;
use sacp_domain::idempotency::StoredResponse;
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
    let (checkout, stored) = state
        .gateway
        .create_checkout_answered(&org.0, &body.into_inner().into(), answering)
        .await
        .inspect_err(|e| state.catalog_cache.note(e))?;
    // The answer stored with the checkout is the one sent: rendered once, and the first
    // answer and its replays are the same bytes.
    let answer = stored.unwrap_or_else(|| render(&checkout));
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
    request: HttpRequest,
    body: web::Json<CheckoutRequestDto>,
) -> Result<HttpResponse, ApiError> {
    let links = &state.links;
    let render = |checkout: &Checkout| json_answer(200, &CheckoutDto::new(checkout, links));
    let answering = guard::answering(&request, &render);
    let claimed = answering.is_some();
    let checkout = state
        .gateway
        .update_checkout_details_answering(&org.0, &id, &body.into_inner().into(), answering)
        .await
        .inspect_err(|e| state.catalog_cache.note(e))?;
    let answer = render(&checkout);
    let mut response = HttpResponse::Ok()
        .content_type("application/json")
        .body(answer.body);
    guard::mark_answered(&mut response, claimed);
    Ok(response)
}

/// A JSON answer as the idempotency record keeps it (what the guard would store of it).
fn json_answer(status: u16, dto: &impl serde::Serialize) -> StoredResponse {
    StoredResponse {
        status,
        content_type: Some("application/json".into()),
        location: None,
        body: serde_json::to_vec(dto).unwrap_or_default(),
    }
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
    let links = &state.links;
    let now = state.gateway.now();
    // A payment this request starts stores its answer with the payment's hold.
    let render = |outcome: &CompleteOutcome| match outcome {
        CompleteOutcome::AuthorizationRequired {
            checkout,
            authorization,
        } => json_answer(
            202,
            &AuthorizationRequiredDto::new(checkout, authorization, links, now),
        ),
        // Only a started payment is answered by the use case; the guard stores the rest.
        _ => json_answer(500, &()),
    };
    let answering = guard::answering(&request, &render);
    let outcome = state
        .gateway
        .complete_checkout_answering(&org.0, &id, token.as_ref(), answering)
        .await;
    if let Some(subject) = token.as_ref().and_then(|t| t.subject()) {
        request.extensions_mut().insert(EndUser(subject.to_owned()));
    }
    let (outcome, answered) = outcome?;
    let mut response = match outcome {
        CompleteOutcome::AuthorizationRequired { .. } => {
            let answer = render(&outcome);
            HttpResponse::Accepted()
                .content_type("application/json")
                .body(answer.body)
        }
        CompleteOutcome::Completed(checkout) => {
            HttpResponse::Ok().json(CompletedDto::new(&checkout, links))
        }
        CompleteOutcome::StepUpRequired {
            checkout,
            step_up_id,
            expires_at,
            trigger,
        } => HttpResponse::Accepted().json(StepUpRequiredDto::new(
            &checkout, step_up_id, expires_at, trigger, links,
        )),
    };
    guard::mark_answered(&mut response, answered);
    Ok(response)
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
    Ok(HttpResponse::Ok().json(PaymentStatusDto::new(&view)))
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
    Ok(HttpResponse::Ok().json(StepUpStatusDto::new(&view, &state.links)))
}
