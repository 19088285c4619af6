//! `GET /orders/{id}`.

use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};

use super::{State, user_token};
use crate::guard::EndUser;
use crate::problem::ApiError;
use sacp_wire::dto::{OrderDto, ProblemDto};

/// A placed order, read with the person's wallet token.
#[utoipa::path(
    get, path = "/orders/{id}", tag = "orders",
    params(
        ("id" = String, Path, description = "Order id"),
        ("access_token" = Option<String>, Query, description = "The person's wallet token, for clients that cannot send an Authorization header"),
    ),
    security(("user_token" = [])),
    responses(
        (status = 200, description = "The order", body = OrderDto),
        (status = 401, description = "User token missing or not valid", body = ProblemDto, content_type = "application/problem+json"),
        (status = 404, description = "No such order placed through this gateway for this person", body = ProblemDto, content_type = "application/problem+json"),
    )
)]
pub async fn get(
    state: State,
    id: web::Path<String>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let token = user_token(&request, None)?;
    let order = state.gateway.get_order(&id, token.as_ref()).await;
    if let Some(subject) = token.as_ref().and_then(|t| t.subject()) {
        request.extensions_mut().insert(EndUser(subject.to_owned()));
    }
    let order = order?;
    Ok(HttpResponse::Ok().json(OrderDto::from(order)))
}
