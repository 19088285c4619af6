//! What can go wrong in a use case, independent of HTTP (the API maps each to a problem).

use sacp_domain::access::{AuthFailure, Scope};
use sacp_domain::idempotency::IdempotencyKeyError;
use sacp_domain::switches::SwitchedOff;
use sacp_domain::{TransitionError, ValidationErrors};
use sacp_ports::{RepositoryError, UpstreamError};

/// Which upstream failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upstream {
    /// The store (SSIM).
    Store,
    /// The wallet (WSIM).
    Wallet,
}

impl Upstream {
    /// A name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Upstream::Store => "store",
            Upstream::Wallet => "wallet",
        }
    }
}

/// Why a use case did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// No such resource (`checkout`, `product`, `order`, `payment authorization`,
    /// `step-up`).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The input breaks validation rules.
    #[error(transparent)]
    Invalid(#[from] ValidationErrors),
    /// The input is not understood (e.g. a bad cursor).
    #[error("{0}")]
    BadRequest(String),
    /// The checkout's state does not allow this.
    #[error(transparent)]
    Transition(#[from] TransitionError),
    /// The store cannot sell these products now.
    #[error("not available: {0:?}")]
    ItemsUnavailable(Vec<String>),
    /// A user token is required and was not given.
    #[error("a user token is required")]
    UserTokenRequired,
    /// The user token is not a bearer token at all (RFC 6750 syntax); it was not sent on.
    #[error("the user token is malformed")]
    UserTokenMalformed,
    /// The user token is unknown, expired or revoked.
    #[error("the user token is not valid")]
    UserTokenInvalid,
    /// The store refused the person's wallet token (which the wallet had accepted).
    #[error("the store refused the user token")]
    StoreRefusedUserToken,
    /// The user token lacks a permission the wallet requires.
    #[error("the user token lacks the {0} permission")]
    UserTokenScope(String),
    /// The resource existed but is no longer usable.
    #[error("{0}")]
    Gone(String),
    /// The payment was refused (declined, no payment method).
    #[error("payment refused: {0}")]
    PaymentRefused(String),
    /// An upstream failed.
    #[error("{} failed: {error}", .upstream.name())]
    Upstream {
        /// Which one.
        upstream: Upstream,
        /// How.
        error: UpstreamError,
    },
    /// Storage failed.
    #[error("storage: {0}")]
    Storage(RepositoryError),
    /// No `X-API-Key` was sent.
    #[error("an API key is required")]
    ApiKeyRequired,
    /// The API key was refused.
    #[error("{0}")]
    ApiKeyRefused(AuthFailure),
    /// An operator tried to change or rotate a key that is revoked or expired.
    #[error("the key is {}; it can no longer be changed", .0.as_str())]
    KeyEnded(sacp_domain::access::KeyStatus),
    /// The body is not of a media type the call reads.
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// An admin call without valid operator credentials.
    #[error("operator credentials are required")]
    AdminCredentialsRequired,
    /// The API key lacks a scope the call needs.
    #[error("the API key lacks the {0} scope")]
    MissingScope(Scope),
    /// Concurrent writers kept winning; the caller may retry.
    #[error("the checkout is being changed by another request; retry")]
    Busy,
    /// A rate limit or quota is used up.
    #[error("rate limit {policy} reached")]
    RateLimited {
        /// The exceeded policy's name.
        policy: &'static str,
        /// Its limit.
        limit: u32,
        /// Its window in seconds.
        window_secs: u32,
        /// Seconds until it resets.
        retry_after: u64,
    },
    /// An operator switched this operation off.
    #[error("{}", .0.reason())]
    SwitchedOff(SwitchedOff),
    /// Too many requests in flight on this replica, or (`tenant`) of the caller's
    /// organisation on it.
    #[error("the gateway is at capacity")]
    Overloaded {
        /// Whether the caller's own organisation used up its share.
        tenant: bool,
    },
    /// The request body is over the size limit.
    #[error("the request body is too large")]
    PayloadTooLarge,
    /// The request body did not arrive in time.
    #[error("the request body did not arrive in time")]
    BodyTimeout,
    /// The `Idempotency-Key` header is unusable.
    #[error(transparent)]
    IdempotencyKeyInvalid(#[from] IdempotencyKeyError),
    /// The `Idempotency-Key` was used before with a different request body.
    #[error("the Idempotency-Key was used with a different request")]
    IdempotencyKeyReused,
    /// The first request with this `Idempotency-Key` is still running.
    #[error("a request with this Idempotency-Key is still in flight")]
    IdempotencyKeyInFlight {
        /// Seconds to wait.
        retry_after: u64,
    },
}

impl AppError {
    /// An upstream failure of the store.
    pub fn store(error: UpstreamError) -> AppError {
        AppError::Upstream {
            upstream: Upstream::Store,
            error,
        }
    }

    /// An upstream failure of the wallet.
    pub fn wallet(error: UpstreamError) -> AppError {
        AppError::Upstream {
            upstream: Upstream::Wallet,
            error,
        }
    }
}

impl From<RepositoryError> for AppError {
    fn from(error: RepositoryError) -> Self {
        match error {
            RepositoryError::NotFound => AppError::NotFound("record"),
            other => AppError::Storage(other),
        }
    }
}
