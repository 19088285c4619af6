//! RFC 9457 problem details, protocol-neutral: one table of codes and the mapping from a use
//! case's [`AppError`] to a problem. The REST API answers them as
//! `application/problem+json`; MCP tools return them as error results.
//!
//! Every problem has a stable `code`, a `type` (`/problems/{code}`, served by the gateway), a
//! `detail` an AI agent can act on, and extensions where they help (`errors` per field,
//! `missing`, `product_ids`).

use sacp_app::AppError;
use sacp_domain::access::AuthFailure;
use sacp_domain::checkout::Action;
use sacp_domain::{CheckoutStatus, TransitionError};
use sacp_ports::{RepositoryError, UpstreamError};
use serde_json::{Map, Value, json};

/// Every problem code the API answers with: (code, HTTP status, title, what it means).
pub const PROBLEMS: &[(&str, u16, &str, &str)] = &[
    (
        "bad_request",
        400,
        "Bad request",
        "The request could not be read: malformed JSON, a wrong type, or an invalid query parameter. The detail names what to fix.",
    ),
    (
        "api_key_required",
        401,
        "API key required",
        "Every call but the public pages (health, docs, QR codes) needs an integration key: send it as `X-API-Key: <key>`. Operators create keys.",
    ),
    (
        "api_key_invalid",
        401,
        "API key not valid",
        "The X-API-Key is not a key the gateway knows (mistyped, or an old secret after rotation).",
    ),
    (
        "api_key_revoked",
        401,
        "API key revoked",
        "The key was revoked by an operator; ask for a new one.",
    ),
    (
        "api_key_expired",
        401,
        "API key expired",
        "The key passed its expiry; ask for a new one.",
    ),
    (
        "admin_credentials_required",
        401,
        "Operator credentials required",
        "The admin API needs `Authorization: Bearer <SACP_ADMIN_TOKEN>` (when the gateway has one) or an X-API-Key holding the `admin` scope.",
    ),
    (
        "forbidden_origin",
        403,
        "Origin not allowed",
        "The request came from a web page of another site (its Origin header). The MCP endpoint serves MCP clients, and pages of the gateway's own origin only.",
    ),
    (
        "insufficient_scope",
        403,
        "Scope missing",
        "The key does not hold the scope this call needs; `required_scope` names it.",
    ),
    (
        "api_key_disabled",
        503,
        "API key disabled",
        "An operator switched this key off for now (a kill switch). Retry later or contact the operator.",
    ),
    (
        "rate_limited",
        429,
        "Rate limit reached",
        "A rate limit or quota of this key, its organisation, the end user or the client address is used up. Wait `Retry-After` seconds; `RateLimit-Policy` and `RateLimit` headers (on every answer) show each limit and what is left.",
    ),
    (
        "switched_off",
        503,
        "Switched off by the operator",
        "An operator kill switch refuses this kind of call for now (read-only mode, checkout creation off, or payments off). The detail says which; retry later.",
    ),
    (
        "overloaded",
        503,
        "Gateway at capacity",
        "Too many requests are in flight on this gateway instance. Retry after `Retry-After` seconds.",
    ),
    (
        "idempotency_key_invalid",
        400,
        "Idempotency-Key not valid",
        "The Idempotency-Key header must be 1 to 255 printable ASCII characters, bare or as a quoted string.",
    ),
    (
        "idempotency_key_reused",
        422,
        "Idempotency-Key reused with another request",
        "This Idempotency-Key was already used on this path with a different body. Use a new key for a new request, or resend the original body to get its answer.",
    ),
    (
        "idempotency_key_in_flight",
        409,
        "Request with this Idempotency-Key in progress",
        "The first request with this Idempotency-Key has not finished. Retry after `Retry-After` seconds to get its answer.",
    ),
    (
        "user_token_required",
        401,
        "User token required",
        "This call acts for the person: send their wallet access token as `Authorization: Bearer <token>` (or an `access_token` query or form parameter).",
    ),
    (
        "user_token_invalid",
        401,
        "User token not valid",
        "The wallet says the user token is unknown, expired or revoked. Obtain a new one.",
    ),
    (
        "user_token_scope",
        403,
        "User token lacks a permission",
        "The user token does not carry the permission the wallet requires (for payments: `purchase`).",
    ),
    (
        "not_found",
        404,
        "Not found",
        "No such resource. Ids are opaque: use the ids returned by earlier calls.",
    ),
    (
        "method_not_allowed",
        405,
        "Method not allowed",
        "This path exists but not with this method. See /openapi.json.",
    ),
    (
        "checkout_not_ready",
        409,
        "Checkout not ready for payment",
        "Payment needs items, buyer and fulfillment. `missing` lists what to add with PATCH /checkout/{id}.",
    ),
    (
        "cart_frozen",
        409,
        "Cart frozen during payment",
        "A payment authorization is pending for the exact total: the cart cannot change until it ends. Poll its payment-status, or cancel the checkout.",
    ),
    (
        "payment_in_progress",
        409,
        "Payment already in progress",
        "A payment authorization is already pending for this checkout; poll its payment-status endpoint.",
    ),
    (
        "checkout_completed",
        409,
        "Checkout already completed",
        "The order is placed; the checkout can no longer change.",
    ),
    (
        "checkout_closed",
        409,
        "Checkout closed",
        "The checkout was cancelled, expired or failed. Start a new checkout with POST /checkout.",
    ),
    (
        "checkout_expired",
        409,
        "Checkout expired",
        "The checkout's time ran out before payment. Start a new checkout with POST /checkout.",
    ),
    (
        "invalid_transition",
        409,
        "Not allowed in this state",
        "The checkout's state does not allow this call; `next_step` in GET /checkout/{id} says what does.",
    ),
    (
        "concurrent_update",
        409,
        "Concurrent update",
        "The checkout was being changed by another request at the same time. Retry.",
    ),
    (
        "key_revoked",
        409,
        "Key revoked",
        "The key was revoked: it can no longer be changed or rotated (revoking it again changes nothing). Create a new key.",
    ),
    (
        "key_expired",
        409,
        "Key expired",
        "The key passed its expiry: it can no longer be changed or rotated. Create a new key.",
    ),
    (
        "authorization_gone",
        410,
        "No longer available",
        "The payment authorization is no longer pending (expired, rejected or used).",
    ),
    (
        "payload_too_large",
        413,
        "Request body too large",
        "Request bodies are limited to 64 KiB.",
    ),
    (
        "request_timeout",
        408,
        "Request body too slow",
        "The request body did not arrive within the time allowed; the connection is closed. Send the whole body at once.",
    ),
    (
        "unsupported_media_type",
        415,
        "Unsupported media type",
        "Send JSON with `Content-Type: application/json`.",
    ),
    (
        "validation_failed",
        422,
        "Validation failed",
        "Some fields are missing or invalid; `errors` lists each field with what is accepted.",
    ),
    (
        "items_unavailable",
        422,
        "Items unavailable",
        "The store cannot sell some products now; `product_ids` lists them. Remove them or choose others.",
    ),
    (
        "payment_refused",
        422,
        "Payment refused",
        "The wallet or store refused the payment (declined, no payment method, or a limit). The checkout cannot be paid this way.",
    ),
    (
        "internal_error",
        500,
        "Internal error",
        "Something failed inside the gateway. Retry later; report the request_id if it persists.",
    ),
    (
        "upstream_error",
        502,
        "Upstream error",
        "The store or wallet answered something unexpected. Retry later.",
    ),
    (
        "upstream_unavailable",
        502,
        "Upstream unavailable",
        "The store or wallet could not be reached. Retry later.",
    ),
    (
        "upstream_rate_limited",
        503,
        "Upstream rate limited",
        "The store or wallet is throttling the gateway. Retry after the indicated delay.",
    ),
    (
        "storage_unavailable",
        503,
        "Storage unavailable",
        "The gateway's storage is unavailable. Retry after the indicated delay.",
    ),
    (
        "upstream_timeout",
        504,
        "Upstream timeout",
        "The store or wallet did not answer in time. Retry later; a write may or may not have taken effect, so read the resource first.",
    ),
];

/// A problem ready to be answered.
#[derive(Debug, Clone)]
pub struct Problem {
    code: &'static str,
    status: u16,
    detail: String,
    extensions: Map<String, Value>,
    retry_after: Option<u64>,
}

impl Problem {
    /// A problem with a code from [`PROBLEMS`] and a detail.
    pub fn new(code: &'static str, detail: impl Into<String>) -> Problem {
        let status = PROBLEMS
            .iter()
            .find(|(c, ..)| *c == code)
            .map_or(500, |(_, status, ..)| *status);
        Problem {
            code,
            status,
            detail: detail.into(),
            extensions: Map::new(),
            retry_after: None,
        }
    }

    /// Adds an extension member.
    pub fn with(mut self, key: &str, value: Value) -> Problem {
        self.extensions.insert(key.to_owned(), value);
        self
    }

    /// Adds a retry delay (seconds): HTTP sends it as `Retry-After`.
    pub fn retry_after(mut self, seconds: u64) -> Problem {
        self.retry_after = Some(seconds);
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// What an agent can act on.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// Seconds to wait before retrying, when the problem says.
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after
    }

    /// The RFC 9457 body: `type`, `title`, `status`, `detail`, `code`, the `instance` and
    /// `request_id` when given, and the extensions. The one place bodies are built.
    pub fn body(&self, instance: Option<&str>, request_id: Option<&str>) -> Value {
        let title = PROBLEMS
            .iter()
            .find(|(c, ..)| *c == self.code)
            .map(|(_, _, title, _)| *title)
            .unwrap_or("Error");
        let mut body = json!({
            "type": format!("/problems/{}", self.code),
            "title": title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        });
        if let Some(map) = body.as_object_mut() {
            if let Some(instance) = instance {
                map.insert("instance".into(), json!(instance));
            }
            if let Some(id) = request_id {
                map.insert("request_id".into(), json!(id));
            }
            for (key, value) in &self.extensions {
                map.insert(key.clone(), value.clone());
            }
        }
        body
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.detail)
    }
}

fn transition_problem(error: &TransitionError) -> Problem {
    let detail = error.to_string();
    match error {
        TransitionError::NotReady(missing) => Problem::new("checkout_not_ready", detail).with(
            "missing",
            json!(missing.iter().map(|m| m.as_str()).collect::<Vec<_>>()),
        ),
        TransitionError::Expired => Problem::new("checkout_expired", detail),
        TransitionError::NotAllowed {
            action: Action::Edit,
            status: CheckoutStatus::Authorizing,
        } => Problem::new("cart_frozen", detail),
        TransitionError::NotAllowed {
            action: Action::StartPayment | Action::Complete,
            status: CheckoutStatus::Authorizing,
        } => Problem::new("payment_in_progress", detail),
        TransitionError::NotAllowed {
            status: CheckoutStatus::Completed,
            ..
        } => Problem::new("checkout_completed", detail),
        TransitionError::NotAllowed { status, .. } if status.is_terminal() => {
            Problem::new("checkout_closed", detail)
        }
        TransitionError::NotAllowed { .. } | TransitionError::AuthorizationMismatch => {
            Problem::new("invalid_transition", detail)
        }
        TransitionError::EditInProgress => Problem::new("concurrent_update", detail).retry_after(1),
        TransitionError::OrderBeingPlaced => {
            Problem::new("payment_in_progress", detail).retry_after(1)
        }
    }
}

fn upstream_problem(upstream: &str, error: &UpstreamError) -> Problem {
    match error {
        UpstreamError::Timeout => Problem::new(
            "upstream_timeout",
            format!("the {upstream} did not answer in time"),
        ),
        UpstreamError::Unavailable => Problem::new(
            "upstream_unavailable",
            format!("the {upstream} is unavailable"),
        ),
        UpstreamError::RateLimited { retry_after } => Problem::new(
            "upstream_rate_limited",
            format!("the {upstream} is throttling requests"),
        )
        .retry_after(retry_after.map_or(5, |d| d.as_secs().max(1))),
        UpstreamError::InvalidRequest(_) => Problem::new(
            "bad_request",
            format!(
                "the request cannot be passed on to the {upstream} as given (too long, or characters it cannot carry); shorten or correct it"
            ),
        ),
        UpstreamError::MalformedResponse(_) => Problem::new(
            "upstream_error",
            format!("the {upstream} answered something unexpected"),
        ),
        UpstreamError::Rejected { code } => Problem::new(
            "upstream_error",
            format!("the {upstream} refused the request ({code})"),
        ),
        UpstreamError::NotFound
        | UpstreamError::Unauthorized
        | UpstreamError::ItemsUnavailable { .. } => Problem::new(
            "upstream_error",
            format!("the {upstream} answered unexpectedly"),
        ),
    }
}

impl From<&AppError> for Problem {
    fn from(error: &AppError) -> Problem {
        match error {
            AppError::NotFound(what) => Problem::new("not_found", format!("no such {what}")),
            AppError::Invalid(errors) => {
                let problem = Problem::new("validation_failed", errors.to_string()).with(
                    "errors",
                    serde_json::to_value(errors.errors()).unwrap_or_default(),
                );
                match errors.omitted() {
                    0 => problem,
                    omitted => problem.with("errors_omitted", json!(omitted)),
                }
            }
            AppError::BadRequest(detail) => Problem::new("bad_request", detail.clone()),
            AppError::Transition(error) => transition_problem(error),
            AppError::ItemsUnavailable(ids) => Problem::new(
                "items_unavailable",
                format!(
                    "the store cannot sell these products now: {}",
                    ids.join(", ")
                ),
            )
            .with("product_ids", json!(ids)),
            AppError::UserTokenRequired => Problem::new(
                "user_token_required",
                "send the person's wallet token as Authorization: Bearer <token>",
            ),
            AppError::UserTokenMalformed => Problem::new(
                "user_token_invalid",
                "the user token is not a valid bearer token (RFC 6750: letters, digits and - . _ ~ + /, at most 4096 characters)",
            ),
            AppError::UserTokenInvalid => Problem::new(
                "user_token_invalid",
                "the wallet does not accept this user token (unknown, expired or revoked)",
            ),
            AppError::StoreRefusedUserToken => Problem::new(
                "user_token_invalid",
                "the store did not accept the person's wallet token (the wallet did); obtain a new token from the person, or tell the operator if it keeps happening",
            ),
            AppError::UserTokenScope(scope) => Problem::new(
                "user_token_scope",
                format!("the user token lacks the {scope} permission"),
            ),
            AppError::Gone(detail) => Problem::new("authorization_gone", detail.clone()),
            AppError::KeyEnded(sacp_domain::access::KeyStatus::Expired) => Problem::new(
                "key_expired",
                "this key has expired and can no longer be changed or rotated; create a new key",
            ),
            AppError::KeyEnded(_) => Problem::new(
                "key_revoked",
                "this key was revoked and can no longer be changed or rotated; create a new key",
            ),
            AppError::UnsupportedMediaType => Problem::new(
                "unsupported_media_type",
                "send the body as JSON with Content-Type: application/json",
            ),
            AppError::PaymentRefused(reason) if reason == "no_payment_method" => Problem::new(
                "payment_refused",
                "the payment was refused (no_payment_method): the person's wallet has no payment method; ask them to add a card in their wallet app, then call complete again. Nothing was charged",
            ),
            AppError::PaymentRefused(reason) => Problem::new(
                "payment_refused",
                format!("the payment was refused ({reason}); nothing was charged"),
            ),
            AppError::Upstream { upstream, error } => upstream_problem(upstream.name(), error),
            AppError::Storage(RepositoryError::Corrupt(_)) => {
                Problem::new("internal_error", "a stored record could not be read")
            }
            AppError::Storage(_) => Problem::new(
                "storage_unavailable",
                "storage is unavailable; retry shortly",
            )
            .retry_after(2),
            AppError::Busy => Problem::new("concurrent_update", error.to_string()).retry_after(1),
            AppError::AdminCredentialsRequired => Problem::new(
                "admin_credentials_required",
                "send Authorization: Bearer <SACP_ADMIN_TOKEN> or an X-API-Key with the admin scope",
            ),
            AppError::ApiKeyRequired => Problem::new(
                "api_key_required",
                "send your integration key as X-API-Key: <key>",
            ),
            AppError::ApiKeyRefused(AuthFailure::Invalid) => {
                Problem::new("api_key_invalid", "the X-API-Key is not a valid key")
            }
            AppError::ApiKeyRefused(AuthFailure::Revoked) => {
                Problem::new("api_key_revoked", "this API key was revoked")
            }
            AppError::ApiKeyRefused(AuthFailure::Expired) => {
                Problem::new("api_key_expired", "this API key has expired")
            }
            AppError::ApiKeyRefused(AuthFailure::Disabled) => Problem::new(
                "api_key_disabled",
                "this API key is switched off by an operator",
            )
            .retry_after(60),
            AppError::RateLimited {
                policy,
                limit,
                window_secs,
                retry_after,
            } => Problem::new(
                "rate_limited",
                format!(
                    "the {policy} limit ({limit} requests per {}) is used up; retry in {retry_after} s",
                    window_name(*window_secs)
                ),
            )
            .with("policy", json!(policy))
            .retry_after(*retry_after),
            AppError::SwitchedOff(switch) => {
                Problem::new("switched_off", switch.reason()).retry_after(30)
            }
            AppError::Overloaded { tenant: false } => Problem::new(
                "overloaded",
                "too many requests are in flight on this gateway instance; retry shortly",
            )
            .retry_after(1),
            AppError::Overloaded { tenant: true } => Problem::new(
                "overloaded",
                "your organisation has as many requests in flight on this gateway instance as it may hold; retry when some have finished",
            )
            .retry_after(1),
            AppError::PayloadTooLarge => Problem::new(
                "payload_too_large",
                format!(
                    "request bodies are limited to {} KiB",
                    crate::MAX_BODY_BYTES / 1024
                ),
            ),
            AppError::BodyTimeout => Problem::new(
                "request_timeout",
                "the request body did not arrive in time; send it whole and promptly",
            ),
            AppError::IdempotencyKeyInvalid(e) => {
                Problem::new("idempotency_key_invalid", e.to_string())
            }
            AppError::IdempotencyKeyReused => Problem::new(
                "idempotency_key_reused",
                "this Idempotency-Key was used on this path with a different body; send a new key for a new request",
            ),
            AppError::IdempotencyKeyInFlight { retry_after } => Problem::new(
                "idempotency_key_in_flight",
                "the first request with this Idempotency-Key is still running; retry to get its answer",
            )
            .retry_after(*retry_after),
            AppError::MissingScope(scope) => Problem::new(
                "insufficient_scope",
                format!("this call needs the {scope} scope, which the API key does not hold"),
            )
            .with("required_scope", json!(scope.as_str())),
        }
    }
}

fn window_name(secs: u32) -> String {
    match secs {
        60 => "minute".into(),
        86_400 => "day".into(),
        n => format!("{n} s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_declared_once_with_a_4xx_or_5xx_status() {
        let mut codes: Vec<&str> = PROBLEMS.iter().map(|(c, ..)| *c).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), PROBLEMS.len());
        assert!(PROBLEMS.iter().all(|(_, s, ..)| (400..600).contains(s)));
    }

    #[test]
    fn every_app_error_renders_a_declared_code() {
        use sacp_app::{AppError, Upstream};
        use sacp_domain::access::{AuthFailure, Scope};
        use sacp_domain::checkout::Action;
        let errors = vec![
            AppError::NotFound("checkout"),
            AppError::Invalid(sacp_domain::ValidationErrors::default()),
            AppError::BadRequest("x".into()),
            AppError::Transition(TransitionError::Expired),
            AppError::Transition(TransitionError::NotReady(vec![])),
            AppError::Transition(TransitionError::AuthorizationMismatch),
            AppError::Transition(TransitionError::NotAllowed {
                action: Action::Edit,
                status: CheckoutStatus::Authorizing,
            }),
            AppError::Transition(TransitionError::NotAllowed {
                action: Action::Cancel,
                status: CheckoutStatus::Completed,
            }),
            AppError::Transition(TransitionError::NotAllowed {
                action: Action::Cancel,
                status: CheckoutStatus::Expired,
            }),
            AppError::ItemsUnavailable(vec![]),
            AppError::UserTokenRequired,
            AppError::UserTokenInvalid,
            AppError::UserTokenMalformed,
            AppError::StoreRefusedUserToken,
            AppError::UserTokenScope("purchase".into()),
            AppError::Gone("x".into()),
            AppError::KeyEnded(sacp_domain::access::KeyStatus::Revoked),
            AppError::KeyEnded(sacp_domain::access::KeyStatus::Expired),
            AppError::UnsupportedMediaType,
            AppError::PaymentRefused("declined".into()),
            AppError::Upstream {
                upstream: Upstream::Store,
                error: UpstreamError::Timeout,
            },
            AppError::Upstream {
                upstream: Upstream::Wallet,
                error: UpstreamError::Unavailable,
            },
            AppError::Upstream {
                upstream: Upstream::Store,
                error: UpstreamError::rejected("x"),
            },
            AppError::Upstream {
                upstream: Upstream::Store,
                error: UpstreamError::RateLimited { retry_after: None },
            },
            AppError::Storage(RepositoryError::Unavailable("x".into())),
            AppError::Busy,
            AppError::ApiKeyRequired,
            AppError::ApiKeyRefused(AuthFailure::Invalid),
            AppError::ApiKeyRefused(AuthFailure::Revoked),
            AppError::ApiKeyRefused(AuthFailure::Expired),
            AppError::ApiKeyRefused(AuthFailure::Disabled),
            AppError::MissingScope(Scope::Admin),
            AppError::AdminCredentialsRequired,
            AppError::RateLimited {
                policy: "key-minute",
                limit: 1,
                window_secs: 60,
                retry_after: 3,
            },
            AppError::SwitchedOff(sacp_domain::switches::SwitchedOff::Payments),
            AppError::Overloaded { tenant: false },
            AppError::Overloaded { tenant: true },
            AppError::PayloadTooLarge,
            AppError::BodyTimeout,
            AppError::IdempotencyKeyInvalid(sacp_domain::idempotency::IdempotencyKeyError::TooLong),
            AppError::IdempotencyKeyReused,
            AppError::IdempotencyKeyInFlight { retry_after: 5 },
        ];
        for error in &errors {
            let problem = Problem::from(error);
            assert!(
                PROBLEMS.iter().any(|(code, ..)| *code == problem.code),
                "{error:?} renders undeclared {}",
                problem.code
            );
            assert_ne!(problem.status(), 500, "{error:?}");
        }
    }

    #[test]
    fn unknown_codes_never_render_as_success() {
        assert_eq!(Problem::new("nope", "x").status(), 500);
    }
}
