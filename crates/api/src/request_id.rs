//! Request ids and access logs.
//!
//! Every request gets an id (the caller's `X-Request-Id` when it is a short token, else a new
//! one), echoed in the `X-Request-Id` response header, carried by every log line of the
//! request (a tracing span) and by problem bodies (a task-local). Access logs carry the
//! method, the path without its query string (a query may hold an `access_token`), the
//! status and the latency. The request's W3C trace context (`traceparent`, `tracestate`,
//! or a new trace) is the current context of its handler, so every upstream call carries
//! it, and its trace id is in every log line of the request.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use actix_web::HttpMessage;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use opentelemetry::context::FutureExt;
use tracing::Instrument;

use crate::access::Caller;
use crate::metrics::RouteLabel;

/// The request id header.
pub const HEADER: &str = "x-request-id";

#[derive(Clone)]
struct RequestContext {
    /// Shared, so that what records the request (audit, traffic) takes it without a copy.
    id: Arc<str>,
    path: String,
}

tokio::task_local! {
    static CONTEXT: RequestContext;
}

/// The id of the request being handled, if any.
pub fn current() -> Option<String> {
    CONTEXT.try_with(|c| c.id.to_string()).ok()
}

/// [`current`], shared rather than copied.
pub fn shared() -> Option<Arc<str>> {
    CONTEXT.try_with(|c| c.id.clone()).ok()
}

/// The path of the request being handled, if any.
pub fn current_path() -> Option<String> {
    CONTEXT.try_with(|c| c.path.clone()).ok()
}

fn acceptable(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn new_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    // `req_` and up to 12 + 4 hex digits, written without the formatting machinery (this
    // runs for every request).
    let mut id = String::with_capacity(20);
    id.push_str("req_");
    push_hex(
        &mut id,
        u64::try_from(nanos & 0xffff_ffff_ffff).unwrap_or(0),
        1,
    );
    push_hex(&mut id, count & 0xffff, 4);
    id
}

/// Appends `value` in lowercase hex, at least `width` digits (zero-padded).
fn push_hex(text: &mut String, value: u64, width: u32) {
    let digits = (u64::BITS - value.leading_zeros()).div_ceil(4).max(width);
    for shift in (0..digits).rev() {
        let nibble = (value >> (shift * 4)) & 0xf;
        text.push(char::from_digit(u32::try_from(nibble).unwrap_or(0), 16).unwrap_or('0'));
    }
}

/// The middleware: assigns the id, takes or starts the W3C trace context, runs the request
/// inside its span and contexts, logs it and records its metrics.
pub async fn middleware(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let in_flight = crate::metrics::InFlight::enter();
    let id = request
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| acceptable(v))
        .map_or_else(new_id, str::to_owned);
    let method = request.method().clone();
    let path = request.path().to_owned();
    let trace = crate::trace::ServerSpan::start(request.headers(), &method);
    // The method and path are in the access line's message, not repeated as span fields:
    // formatting a field costs the request's thread per character (a 50-character path was
    // ≈ 2,500 instructions when the formatter also escaped it). The key is named on the
    // access line only (see below), not recorded into the span once known: recording into
    // a span looks it up and formats into its fields again, ≈ 2,000 instructions.
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        trace_id = %trace.trace_id(),
    );
    let started = Instant::now();
    request
        .extensions_mut()
        .insert(sacp_wire::RequestId(id.clone()));
    // For handlers that run on a task of their own (the MCP SDK's).
    request.extensions_mut().insert(trace.context());
    let context = RequestContext {
        id: Arc::from(id.as_str()),
        path: path.clone(),
    };
    let result = CONTEXT
        .scope(context, next.call(request).with_context(trace.context()))
        .instrument(span.clone())
        .await;
    let _entered = span.enter();
    let elapsed = started.elapsed();
    match result {
        Ok(mut response) => {
            if let Ok(value) = HeaderValue::from_str(&id) {
                response
                    .headers_mut()
                    .insert(HeaderName::from_static(HEADER), value);
            }
            let status = response.status().as_u16();
            let answered = response.request();
            let labelled = answered.extensions().get::<RouteLabel>().copied();
            let route = match labelled {
                Some(RouteLabel(route)) => Cow::Borrowed(route),
                None => answered
                    .match_pattern()
                    .map_or(Cow::Borrowed(crate::UNMATCHED), Cow::Owned),
            };
            crate::metrics::record(&method, &route, status, elapsed);
            trace.end(&route, status);
            drop(in_flight);
            let latency_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
            // The key the guard admitted, or refused after it authenticated.
            match answered
                .extensions()
                .get::<Caller>()
                .and_then(Caller::principal)
            {
                Some(principal) => tracing::info!(
                    status,
                    latency_us,
                    key_id = %principal.key_id,
                    "{method} {path}"
                ),
                None => tracing::info!(status, latency_us, "{method} {path}"),
            }
            Ok(response)
        }
        Err(error) => {
            let status = error.as_response_error().status_code().as_u16();
            crate::metrics::record(&method, crate::UNMATCHED, status, elapsed);
            trace.end(crate::UNMATCHED, status);
            tracing::warn!(error = %error, "{method} {path} failed");
            Err(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_plain_ids_are_taken_from_callers() {
        assert!(acceptable("abc-123_x.y"));
        assert!(!acceptable(""));
        assert!(!acceptable(&"a".repeat(65)));
        assert!(!acceptable("bad id"));
        assert!(!acceptable("a\nb"));
        assert!(new_id().starts_with("req_"));
    }

    #[test]
    fn new_ids_are_plain_distinct_and_hex() {
        let (a, b) = (new_id(), new_id());
        assert_ne!(a, b);
        for id in [a, b] {
            assert!(acceptable(&id), "{id}");
            assert!(
                id[4..]
                    .bytes()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
            );
        }
        let hex = |value, width| {
            let mut text = String::new();
            push_hex(&mut text, value, width);
            text
        };
        assert_eq!(hex(0, 1), "0");
        assert_eq!(hex(0xab, 4), "00ab");
        assert_eq!(hex(0xffff_ffff_ffff, 1), "ffffffffffff");
        assert_eq!(hex(u64::MAX, 1), "ffffffffffffffff");
    }
}
