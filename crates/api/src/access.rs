//! What a route needs — declared with the route itself (see [`crate::endpoints`]) — and the
//! authentication step of the guard that enforces it.
//!
//! The decision rides on the route actix dispatched: the guard is a middleware of that route,
//! holding that route's [`Policy`]. There is no second parse of the raw path that could
//! disagree with the router (a percent-encoded or otherwise respelled path either dispatches
//! to the same route, and gets the same decision, or to none, and is refused before any key
//! is looked at).

use actix_web::dev::{Payload, ServiceRequest};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use sacp_app::AppError;
pub use sacp_app::Caller;
use sacp_domain::access::{Scope, SecretHash};
use sacp_domain::switches::Operation;

use crate::ApiState;
use crate::problem::ApiError;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without a key.
    Public,
    /// A valid key holding every one of these scopes.
    Scopes(&'static [Scope]),
    /// The operator: `Authorization: Bearer <SACP_ADMIN_TOKEN>`, or a key with `admin`.
    Admin,
    /// Any valid key — in `X-API-Key`, or as `Authorization: Bearer <key>` — or, with the
    /// anonymous tier on, a caller without one. The handler checks scopes per call (MCP).
    AnyKey,
}

/// How the guardrails treat a route: who may call it and what the kill switches see it as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Who may call it.
    pub access: Access,
    /// What the kill switches and the write limits see.
    pub operation: Operation,
    /// A non-empty `q` query parameter also needs `search:read` (browsing vs searching).
    pub search_with_q: bool,
    /// Whether the route counts against the in-flight cap (health probes do not).
    pub capped: bool,
    /// The handler applies the switches, the operation's limits, idempotency and audit to
    /// each call it carries (MCP tool calls, each as the REST route it mirrors): the guard
    /// authenticates, caps, reads the body, and counts what every request counts against
    /// and the traffic.
    pub per_call: bool,
    /// Reads are audited too (the admin API's are; a metrics scrape every few seconds is
    /// not).
    pub audit_reads: bool,
}

impl Policy {
    /// A public page, counted against the in-flight cap.
    pub const PUBLIC: Policy = Policy {
        access: Access::Public,
        operation: Operation::Read,
        search_with_q: false,
        capped: true,
        per_call: false,
        audit_reads: false,
    };

    /// The MCP endpoint: any key (or the anonymous tier), guardrails applied per tool call.
    pub const MCP: Policy = Policy {
        access: Access::AnyKey,
        per_call: true,
        ..Policy::PUBLIC
    };

    /// A health probe: public, and answered even at capacity.
    pub const PROBE: Policy = Policy {
        capped: false,
        ..Policy::PUBLIC
    };

    /// An operator read. The admin API is not counted against the in-flight cap: whatever
    /// fills the replica, the operator can still revoke keys and flip switches.
    pub const ADMIN_READ: Policy = Policy {
        access: Access::Admin,
        capped: false,
        audit_reads: true,
        ..Policy::PUBLIC
    };

    /// The metrics scrape on the main listener: the operator's, never capped, not audited.
    pub const SCRAPE: Policy = Policy {
        audit_reads: false,
        ..Policy::ADMIN_READ
    };

    /// An operator change (not counted against the in-flight cap either).
    pub const ADMIN_WRITE: Policy = Policy {
        operation: Operation::Write,
        ..Policy::ADMIN_READ
    };

    /// A read needing these scopes.
    pub const fn read(scopes: &'static [Scope]) -> Policy {
        Policy {
            access: Access::Scopes(scopes),
            ..Policy::PUBLIC
        }
    }

    /// A change needing these scopes, seen by the switches as `operation`.
    pub const fn write(scopes: &'static [Scope], operation: Operation) -> Policy {
        Policy {
            access: Access::Scopes(scopes),
            operation,
            ..Policy::PUBLIC
        }
    }

    /// The same policy, also needing `search:read` when the query has a non-empty `q`.
    pub const fn searching(self) -> Policy {
        Policy {
            search_with_q: true,
            ..self
        }
    }
}

/// The header carrying the integration key.
pub const API_KEY_HEADER: &str = "x-api-key";

const ADMIN: &[Scope] = &[Scope::Admin];
const CATALOG_AND_SEARCH: &[Scope] = &[Scope::CatalogRead, Scope::SearchRead];

/// The organisation a handler acts for: the one of the key that authenticated the request.
/// Handlers of key-protected routes take it to scope what they read and change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Org(pub String);

impl FromRequest for Org {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Org, ApiError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let org = match request.extensions().get::<Caller>() {
            Some(Caller::Key(principal)) => Ok(Org(principal.org.clone())),
            // A route taking `Org` is declared with `Access::Scopes`: the guard admitted a key.
            _ => Err(AppError::ApiKeyRequired.into()),
        };
        std::future::ready(org)
    }
}

/// The scopes a request to a route with `policy` needs (`None` for public and admin routes).
pub fn needed_scopes(policy: &Policy, query: &str) -> Option<&'static [Scope]> {
    let Access::Scopes(scopes) = policy.access else {
        return None;
    };
    // The same decoding as the handler's `web::Query`, so both see the same `q`.
    let searching = || {
        web::Query::<Vec<(String, String)>>::from_query(query)
            .map(|q| q.iter().any(|(k, v)| k == "q" && !v.trim().is_empty()))
            .unwrap_or(false)
    };
    if policy.search_with_q && searching() {
        return Some(CATALOG_AND_SEARCH);
    }
    Some(scopes)
}

/// A credential header that cannot be used: sent more than once, or not visible ASCII.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnusableHeader;

/// The one value of a credential header: `Ok(None)` when absent, [`UnusableHeader`] when it is
/// sent more than once (which one would count is a guess no credential should depend on) or
/// is not visible ASCII.
pub fn single_header(
    headers: &actix_web::http::header::HeaderMap,
    name: impl actix_web::http::header::AsHeaderName,
) -> Result<Option<&str>, UnusableHeader> {
    let mut values = headers.get_all(name);
    match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some(_), Some(_)) => Err(UnusableHeader),
        (Some(value), None) => visible_ascii(value).map(Some).ok_or(UnusableHeader),
    }
}

/// The text of a header value made of visible ASCII, spaces and tabs only (the rule of
/// `HeaderValue::to_str`), else `None`. Every byte is checked without stopping at the
/// first bad one, which the compiler does many bytes at a time: a credential header is
/// read on every request, and checking it one byte at a time was a visible share of one.
fn visible_ascii(value: &HeaderValue) -> Option<&str> {
    let bytes = value.as_bytes();
    let visible = bytes.iter().fold(true, |all, &b| {
        all & (matches!(b, 0x20..=0x7e) | (b == b'\t'))
    });
    if visible {
        std::str::from_utf8(bytes).ok()
    } else {
        None
    }
}

/// [`API_KEY_HEADER`] as a header name made at compile time (a name given as text is made
/// again, on the heap, at every lookup).
const API_KEY: HeaderName = HeaderName::from_static(API_KEY_HEADER);

/// The value of the `X-API-Key` header; `Err` when it is sent twice or is not visible ASCII.
fn presented_key(request: &ServiceRequest) -> Result<Option<&str>, AppError> {
    single_header(request.headers(), API_KEY)
        .map(|v| v.map(str::trim).filter(|v| !v.is_empty()))
        .map_err(|UnusableHeader| {
            AppError::ApiKeyRefused(sacp_domain::access::AuthFailure::Invalid)
        })
}

/// The bearer token of the `Authorization` header, if it has the Bearer scheme and is sent
/// once.
pub fn bearer(request: &HttpRequest) -> Option<&str> {
    single_header(request.headers(), header::AUTHORIZATION)
        .ok()
        .flatten()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
}

/// Authenticates a request to a route with `policy` and checks what the route needs.
///
/// On a refusal, the caller known so far (a key that authenticated but lacks a scope) is
/// returned with the error, so that the refusal is attributed to it and to nobody else.
pub async fn authenticate(
    policy: &Policy,
    request: &ServiceRequest,
    state: &ApiState,
) -> Result<Caller, (AppError, Option<Caller>)> {
    let scopes = match policy.access {
        Access::Public => return Ok(Caller::Public),
        Access::Admin => ADMIN,
        Access::Scopes(_) => needed_scopes(policy, request.query_string()).unwrap_or(&[]),
        Access::AnyKey => &[],
    };
    let mut presented = presented_key(request).map_err(|e| (e, None))?;
    if policy.access == Access::AnyKey && presented.is_none() {
        // What MCP clients send (Claude's connector, the OpenAI Responses API).
        presented = bearer(request.request()).filter(|key| !key.is_empty());
    }
    if policy.access == Access::Admin && presented.is_none() {
        // The operator's token, compared through its SHA-256 in constant time.
        let token = bearer(request.request()).map(SecretHash::of);
        return match (token, &state.admin_token) {
            (Some(presented), Some(expected)) if presented.matches(expected) => {
                Ok(Caller::Operator)
            }
            _ => Err((AppError::AdminCredentialsRequired, None)),
        };
    }
    let catalog_only = !scopes.is_empty() && scopes.iter().all(|s| *s == Scope::CatalogRead);
    if presented.is_none()
        && (catalog_only || policy.access == Access::AnyKey)
        && state
            .gateway
            .guard()
            .settings()
            .anonymous_per_minute
            .is_some()
        && let Some(address) = request.peer_addr()
    {
        return Ok(Caller::Anonymous(address.ip()));
    }
    let principal = state
        .gateway
        .keys()
        .authenticate(presented)
        .await
        .map_err(|e| (e, None))?;
    match principal.require(scopes) {
        Ok(()) => Ok(Caller::Key(principal)),
        Err(error) => Err((error, Some(Caller::Key(principal)))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CATALOG: &[Scope] = &[Scope::CatalogRead];

    #[test]
    fn credential_headers_follow_the_to_str_rule_for_every_byte() {
        for byte in 0..=u8::MAX {
            let Ok(value) = HeaderValue::from_bytes(&[b'k', byte, b'y']) else {
                continue;
            };
            assert_eq!(
                visible_ascii(&value),
                value.to_str().ok(),
                "byte {byte:#04x}"
            );
        }
        let long = HeaderValue::from_static("sacp_live_abcdefghijklmnopqrstuvwxyz234567_x y\tz");
        assert_eq!(visible_ascii(&long), long.to_str().ok());
        let bad_last =
            HeaderValue::from_bytes(b"sacp_live_abcdefghijklmnopqrstuvwxyz234567\xff").unwrap();
        assert_eq!(visible_ascii(&bad_last), None, "checked to the end");
    }

    #[test]
    fn searching_needs_search_read_as_well() {
        let browse = Policy::read(CATALOG).searching();
        assert_eq!(needed_scopes(&browse, ""), Some(CATALOG));
        assert_eq!(needed_scopes(&browse, "q=&limit=2"), Some(CATALOG));
        assert_eq!(needed_scopes(&browse, "q=%20"), Some(CATALOG));
        assert_eq!(needed_scopes(&browse, "q=coffee"), Some(CATALOG_AND_SEARCH));
        // Keys are decoded as the handler decodes them.
        assert_eq!(
            needed_scopes(&browse, "%71=coffee"),
            Some(CATALOG_AND_SEARCH)
        );
        assert_eq!(
            needed_scopes(&Policy::read(CATALOG), "q=coffee"),
            Some(CATALOG),
            "only routes declared as searching refine"
        );
        assert_eq!(needed_scopes(&Policy::PUBLIC, "q=x"), None);
        assert_eq!(needed_scopes(&Policy::ADMIN_READ, ""), None);
    }
}
