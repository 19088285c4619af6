//! The error contract shared by the [`crate::Store`] and [`crate::Wallet`] ports.

use std::time::Duration;

/// Why a call to an upstream service did not succeed.
///
/// Implementations map every failure to one of these; no upstream body text is carried, only
/// the upstream's machine-readable error code, so nothing the upstream says can leak to
/// clients verbatim.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// The thing asked for does not exist upstream (HTTP 404).
    #[error("not found upstream")]
    NotFound,
    /// The upstream refused the request (HTTP 400/403/409/422) with this error code, e.g.
    /// `session_not_editable`, `invalid_grant`, `insufficient_scope`. Codes are reduced to
    /// `[a-z0-9_]`, at most 64 characters; a free-text error becomes `invalid_request`.
    #[error("rejected upstream: {code}")]
    Rejected {
        /// The upstream's error code.
        code: String,
    },
    /// The store refused items that cannot be bought now.
    #[error("items unavailable: {product_ids:?}")]
    ItemsUnavailable {
        /// The products refused.
        product_ids: Vec<String>,
    },
    /// The user's bearer token is missing, invalid, expired or revoked (HTTP 401).
    #[error("user token refused upstream")]
    Unauthorized,
    /// The upstream throttled the gateway (HTTP 429).
    #[error("rate limited upstream")]
    RateLimited {
        /// How long the upstream asked to wait, if it said.
        retry_after: Option<Duration>,
    },
    /// The upstream could not be reached, or failed (connection refused, HTTP 5xx).
    #[error("upstream unavailable")]
    Unavailable,
    /// The upstream did not answer within the configured timeout.
    #[error("upstream timed out")]
    Timeout,
    /// The upstream answered something that does not follow its contract.
    #[error("malformed upstream response: {0}")]
    MalformedResponse(String),
    /// What the caller gave cannot become a valid upstream request (a URL too long to send,
    /// a header value with forbidden characters). Nothing was sent, and the upstream's health
    /// is not judged by it: this is the caller's error.
    #[error("cannot be sent upstream: {0}")]
    InvalidRequest(String),
}

impl UpstreamError {
    /// A [`UpstreamError::Rejected`] with `code` reduced to a safe error code.
    pub fn rejected(code: &str) -> UpstreamError {
        UpstreamError::Rejected {
            code: safe_code(code),
        }
    }

    /// Whether trying again later may succeed (the request never took effect upstream or
    /// its outcome is unknown).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            UpstreamError::Unavailable | UpstreamError::Timeout | UpstreamError::RateLimited { .. }
        )
    }
}

/// Reduces an upstream error string to a machine code: snake_case codes pass, sentences
/// (`"Product not found"`) become `invalid_request`.
pub fn safe_code(code: &str) -> String {
    let ok = !code.is_empty()
        && code.len() <= 64
        && code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        code.to_owned()
    } else {
        "invalid_request".to_owned()
    }
}

/// The one mapping from an upstream HTTP error status and error code to [`UpstreamError`],
/// shared by the HTTP adapters and the in-process fakes so that both fail the same way.
///
/// `code` is the upstream's `error` field when it sent one.
pub fn from_http_status(
    status: u16,
    code: Option<&str>,
    retry_after: Option<Duration>,
) -> UpstreamError {
    match status {
        401 => UpstreamError::Unauthorized,
        404 => UpstreamError::NotFound,
        429 => UpstreamError::RateLimited { retry_after },
        400..=499 => UpstreamError::rejected(code.unwrap_or("invalid_request")),
        504 => UpstreamError::Timeout,
        _ => UpstreamError::Unavailable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_kept_only_when_they_are_codes() {
        assert_eq!(safe_code("session_not_editable"), "session_not_editable");
        assert_eq!(safe_code("Product not found"), "invalid_request");
        assert_eq!(safe_code("<script>"), "invalid_request");
        assert_eq!(safe_code(&"a".repeat(65)), "invalid_request");
    }

    #[test]
    fn statuses_map_to_the_error_contract() {
        assert_eq!(
            from_http_status(404, Some("x"), None),
            UpstreamError::NotFound
        );
        assert_eq!(
            from_http_status(401, None, None),
            UpstreamError::Unauthorized
        );
        assert_eq!(
            from_http_status(400, Some("session_expired"), None),
            UpstreamError::rejected("session_expired")
        );
        assert_eq!(
            from_http_status(503, None, None),
            UpstreamError::Unavailable
        );
        assert_eq!(
            from_http_status(500, None, None),
            UpstreamError::Unavailable
        );
        assert_eq!(from_http_status(504, None, None), UpstreamError::Timeout);
    }
}
