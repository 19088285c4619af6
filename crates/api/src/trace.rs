//! The server side of W3C trace context: each request continues the caller's trace
//! (`traceparent`, `tracestate`) or starts one, in a server span that is the current
//! context while its handler runs (so upstream calls carry it on).

use actix_web::http::Method;
use actix_web::http::header::HeaderMap;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, TraceId, Tracer};
use opentelemetry::{Context, KeyValue, global};
use opentelemetry_sdk::propagation::TraceContextPropagator;

/// The name spans of this process are recorded under.
const TRACER: &str = "sacp-gateway";

/// Most `tracestate` kept from a caller, in characters (what W3C asks every vendor to pass on).
const MAX_TRACESTATE: usize = 512;
/// Longest `tracestate` member kept (W3C: longer ones are the first to drop).
const MAX_TRACESTATE_MEMBER: usize = 128;

/// The incoming trace headers, as the propagator reads them: one `traceparent` (two are
/// ambiguous, so neither is continued) and the `tracestate` lines combined, each member of
/// at most 128 characters, 512 in all — a caller's state is passed on to the store, the
/// wallet and the exporter, so it is bounded here.
struct Incoming {
    traceparent: Option<String>,
    tracestate: Option<String>,
}

impl Incoming {
    fn of(headers: &HeaderMap) -> Incoming {
        let mut parents = headers.get_all("traceparent");
        let traceparent = match (parents.next(), parents.next()) {
            (Some(only), None) => only.to_str().ok().map(str::to_owned),
            _ => None,
        };
        let mut kept = String::new();
        let members = headers
            .get_all("tracestate")
            .filter_map(|v| v.to_str().ok())
            .flat_map(|line| line.split(','))
            .map(str::trim)
            .filter(|m| !m.is_empty() && m.len() <= MAX_TRACESTATE_MEMBER);
        for member in members {
            if kept.len() + member.len() + 1 > MAX_TRACESTATE {
                break;
            }
            if !kept.is_empty() {
                kept.push(',');
            }
            kept.push_str(member);
        }
        Incoming {
            traceparent,
            tracestate: (!kept.is_empty()).then_some(kept),
        }
    }
}

impl Extractor for Incoming {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            "traceparent" => self.traceparent.as_deref(),
            "tracestate" => self.tracestate.as_deref(),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent", "tracestate"]
    }
}

/// The span of one request.
#[derive(Debug)]
pub struct ServerSpan {
    context: Context,
    method: &'static str,
}

/// A method's name without allocating for the usual ones.
fn method_name(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

impl ServerSpan {
    /// Starts the span of a request with these headers: a child of the caller's trace
    /// context when it sent a valid one, else the root of a new trace.
    pub fn start(headers: &HeaderMap, method: &Method) -> ServerSpan {
        let parent = TraceContextPropagator::new().extract(&Incoming::of(headers));
        let tracer = global::tracer(TRACER);
        let method = method_name(method);
        let span = tracer
            .span_builder(method)
            .with_kind(SpanKind::Server)
            .with_attributes([KeyValue::new("http.request.method", method)])
            .start_with_context(&tracer, &parent);
        ServerSpan {
            context: parent.with_span(span),
            method,
        }
    }

    /// The trace id, as in `traceparent` (32 hexadecimal digits).
    pub fn trace_id(&self) -> TraceId {
        self.context.span().span_context().trace_id()
    }

    /// The context the handler runs in.
    pub fn context(&self) -> Context {
        self.context.clone()
    }

    /// Ends the span, named after the route pattern the request took.
    pub fn end(self, route: &str, status: u16) {
        let span = self.context.span();
        if span.is_recording() {
            span.update_name(format!("{} {route}", self.method));
            span.set_attribute(KeyValue::new("http.route", route.to_owned()));
            span.set_attribute(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
            if status >= 500 {
                span.set_status(Status::error(status.to_string()));
            }
        }
        span.end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    #[test]
    fn a_valid_traceparent_is_continued() {
        let mut headers = HeaderMap::new();
        headers.insert(
            HeaderName::from_static("traceparent"),
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        let span = ServerSpan::start(&headers, &Method::GET);
        assert_eq!(
            span.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
    }

    #[test]
    fn two_traceparents_are_not_continued_and_tracestate_is_bounded() {
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut headers = HeaderMap::new();
        headers.append(
            HeaderName::from_static("traceparent"),
            HeaderValue::from_static(parent),
        );
        headers.append(
            HeaderName::from_static("traceparent"),
            HeaderValue::from_static(parent),
        );
        assert_eq!(Incoming::of(&headers).get("traceparent"), None);

        let mut headers = HeaderMap::new();
        let long = format!("big={}", "x".repeat(200));
        let many: Vec<String> = (0..100).map(|i| format!("v{i}=value{i}")).collect();
        headers.append(
            HeaderName::from_static("tracestate"),
            HeaderValue::from_str(&format!("a=1,{long}")).unwrap(),
        );
        headers.append(
            HeaderName::from_static("tracestate"),
            HeaderValue::from_str(&many.join(",")).unwrap(),
        );
        let kept = Incoming::of(&headers);
        let state = kept.get("tracestate").unwrap();
        assert!(state.starts_with("a=1,v0=value0,"), "{state}");
        assert!(!state.contains("big="), "an over-long member is dropped");
        assert!(state.len() <= MAX_TRACESTATE, "{}", state.len());
    }
}
