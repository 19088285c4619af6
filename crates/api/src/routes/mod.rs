//! Route handlers: each translates HTTP into one use-case call and back.

pub mod admin;
pub mod catalog;
pub mod checkout;
pub mod guardrails;
pub mod orders;
pub mod system;

use actix_web::http::header;
use actix_web::{HttpRequest, web};
use sacp_app::AppError;
use sacp_ports::BearerToken;

use crate::ApiState;

/// Shared state of every handler.
pub type State = web::Data<ApiState>;

/// Longest user token accepted (wallet access tokens are JWTs of about a kilobyte).
const MAX_USER_TOKEN: usize = 4096;

/// Whether `token` is an RFC 6750 `b64token`: what may follow `Bearer ` in a header, and
/// so what can be passed on to the wallet and the store.
fn is_b64token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && token.len() <= MAX_USER_TOKEN
        && body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}

/// The person's wallet token: `Authorization: Bearer`, else an `access_token` query
/// parameter, else an `access_token` form field (RFC 6750 §2.1–2.3, for clients that cannot
/// set headers). The value is never logged. A token that is not a valid bearer token is the
/// caller's error (401), never sent upstream.
pub fn user_token(
    request: &HttpRequest,
    body: Option<&[u8]>,
) -> Result<Option<BearerToken>, AppError> {
    let header = crate::access::single_header(request.headers(), header::AUTHORIZATION)
        .map_err(|crate::access::UnusableHeader| AppError::UserTokenMalformed)?;
    let from_header = || {
        let (scheme, token) = header?.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_owned())
    };
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
    let Some(token) = from_header()
        .or_else(from_query)
        .or_else(from_form)
        .filter(|t| !t.is_empty())
    else {
        return Ok(None);
    };
    if !is_b64token(&token) {
        return Err(AppError::UserTokenMalformed);
    }
    Ok(Some(BearerToken::new(token)))
}

/// Parses `application/x-www-form-urlencoded` pairs, ignoring malformed ones.
fn url_pairs(bytes: &[u8]) -> Vec<(String, String)> {
    if bytes.is_empty() {
        return Vec::new();
    }
    web::Query::<Vec<(String, String)>>::from_query(&String::from_utf8_lossy(bytes))
        .map(web::Query::into_inner)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_rfc_6750_bearer_tokens_are_accepted() {
        assert!(is_b64token("eyJhbGciOi.eyJzdWIi.sig-_~+/=="));
        assert!(is_b64token("wsim_at_abc123"));
        assert!(!is_b64token("x\ny"));
        assert!(!is_b64token("x y"));
        assert!(!is_b64token("=="));
        assert!(!is_b64token("tok\u{e9}n"));
        assert!(!is_b64token(&"a".repeat(MAX_USER_TOKEN + 1)));
    }
}
