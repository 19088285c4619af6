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

/// The incoming headers, as the propagator reads them.
struct Incoming<'a>(&'a HeaderMap);

impl Extractor for Incoming<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
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
        let parent = TraceContextPropagator::new().extract(&Incoming(headers));
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
}
