//! Route handlers: each translates HTTP into one use-case call and back.

pub mod admin;
pub mod catalog;
pub mod checkout;
pub mod guardrails;
pub mod orders;
pub mod system;

use actix_web::http::header;
use actix_web::{HttpRequest, web};
use sacp_ports::BearerToken;

use crate::ApiState;

/// Shared state of every handler.
pub type State = web::Data<ApiState>;

/// The person's wallet token: `Authorization: Bearer`, else an `access_token` query
/// parameter, else an `access_token` form field (RFC 6750 §2.1–2.3, for clients that cannot
/// set headers). The value is never logged.
pub fn user_token(request: &HttpRequest, body: Option<&[u8]>) -> Option<BearerToken> {
    let from_header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim().to_owned());
    let from_query = || {
        url_pairs(request.query_string().as_bytes())
            .into_iter()
            .find(|(k, _)| k == "access_token")
            .map(|(_, v)| v)
    };
    let from_form = || {
        let is_form = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        body.filter(|_| is_form)
            .and_then(|b| url_pairs(b).into_iter().find(|(k, _)| k == "access_token"))
            .map(|(_, v)| v)
    };
    from_header
        .or_else(from_query)
        .or_else(from_form)
        .filter(|t| !t.is_empty())
        .map(BearerToken::new)
}

/// Parses `application/x-www-form-urlencoded` pairs, ignoring malformed ones.
fn url_pairs(bytes: &[u8]) -> Vec<(String, String)> {
    web::Query::<Vec<(String, String)>>::from_query(&String::from_utf8_lossy(bytes))
        .map(web::Query::into_inner)
        .unwrap_or_default()
}
