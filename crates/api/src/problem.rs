//! Problems as HTTP answers: `application/problem+json` with the request's `instance` and
//! `request_id`, and `Retry-After` when the problem says (the codes and the mapping from use
//! case errors are in [`sacp_wire::problem`]).

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use sacp_app::AppError;
pub use sacp_wire::problem::{PROBLEMS, Problem};

use crate::request_id;

/// The `WWW-Authenticate` challenge of a 401 (RFC 9110 §11.6.1): the integration key
/// (`X-API-Key`, a scheme of the gateway's own — no OAuth is offered, so none is advertised),
/// or the person's wallet token (RFC 6750 §3).
fn challenge(code: &str) -> Option<&'static str> {
    match code {
        "api_key_required"
        | "api_key_invalid"
        | "api_key_revoked"
        | "api_key_expired"
        | "admin_credentials_required" => {
            Some(r#"ApiKey realm="sacp-gateway", header="X-API-Key""#)
        }
        "user_token_required" => Some(r#"Bearer realm="wallet""#),
        "user_token_invalid" => Some(r#"Bearer realm="wallet", error="invalid_token""#),
        _ => None,
    }
}

/// Renders a [`Problem`] as this API's answer.
pub trait Respond {
    /// The `application/problem+json` response, carrying the current request's id.
    fn response(&self, instance: Option<&str>) -> HttpResponse;
}

impl Respond for Problem {
    fn response(&self, instance: Option<&str>) -> HttpResponse {
        let status =
            StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = self.body(instance, request_id::current().as_deref());
        let mut response = HttpResponse::build(status);
        response.content_type("application/problem+json");
        if let Some(seconds) = self.retry_after_secs() {
            response.insert_header((header::RETRY_AFTER, HeaderValue::from(seconds)));
        }
        if let Some(challenge) = challenge(self.code()) {
            response.insert_header((header::WWW_AUTHENTICATE, challenge));
        }
        response.body(body.to_string())
    }
}

/// A use case's error as an HTTP answer: the problem+json of [`Problem::from`]. (The use
/// cases know nothing of HTTP; this is where their errors meet it.)
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct ApiError(#[from] pub AppError);

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(Problem::from(&self.0).status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let problem = Problem::from(&self.0);
        if problem.status() >= 500 {
            tracing::error!(error = %self.0, "request failed");
        }
        problem.response(request_id::current_path().as_deref())
    }
}

/// Turns any error answer that is not already a problem (actix's own answers for oversized
/// raw bodies, unmatched methods and the like) into `application/problem+json`.
pub async fn fallback(
    request: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    let response = next.call(request).await?;
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/problem+json"));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return Ok(response.map_into_boxed_body());
    }
    let code = match status.as_u16() {
        404 => "not_found",
        405 => "method_not_allowed",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        400..=499 => "bad_request",
        _ => "internal_error",
    };
    let detail = match code {
        "payload_too_large" => "request bodies are limited to 64 KiB".to_owned(),
        "internal_error" => "the gateway failed to answer".to_owned(),
        _ => status.canonical_reason().unwrap_or("error").to_lowercase(),
    };
    let (request, _) = response.into_parts();
    let answer = Problem::new(code, detail).response(Some(request.path()));
    Ok(actix_web::dev::ServiceResponse::new(request, answer))
}
