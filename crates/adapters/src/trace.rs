//! W3C trace context on the gateway's calls to its upstreams, and the HTTP client that
//! exports spans over OTLP.
//!
//! Each upstream call runs in a client span that is a child of the current context (the
//! request's, set by the API's middleware; a new trace for background work), and carries
//! it to the upstream as `traceparent` / `tracestate`. Without an exporter configured the
//! spans are not recorded; their ids still propagate.

use std::fmt;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue, global};
use opentelemetry_http::{Bytes, HeaderInjector, HttpError, Request, Response};
use opentelemetry_sdk::propagation::TraceContextPropagator;

/// The name spans of this process are recorded under.
pub const TRACER: &str = "sacp-gateway";

/// The span of one upstream call.
pub(crate) struct ClientSpan(Context);

/// Starts the span of a call to `upstream` for `operation` and writes its trace context
/// into `headers`.
pub(crate) fn client_span(
    upstream: &'static str,
    operation: &'static str,
    headers: &mut http::HeaderMap,
) -> ClientSpan {
    let tracer = global::tracer(TRACER);
    let parent = Context::current();
    let span = tracer
        .span_builder(operation)
        .with_kind(SpanKind::Client)
        .with_attributes([KeyValue::new("peer.service", upstream)])
        .start_with_context(&tracer, &parent);
    let context = parent.with_span(span);
    TraceContextPropagator::new().inject_context(&context, &mut HeaderInjector(headers));
    ClientSpan(context)
}

impl ClientSpan {
    /// Ends the span with the answer's status (`None`: no answer) and outcome label.
    pub(crate) fn end(self, status: Option<u16>, outcome: &'static str) {
        let span = self.0.span();
        if let Some(status) = status {
            span.set_attribute(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
        }
        if !matches!(outcome, "2xx" | "3xx" | "4xx") {
            span.set_status(Status::error(outcome));
        }
        span.end();
    }
}

/// The HTTP client of the OTLP span exporter: the gateway's own reqwest (one TLS stack),
/// driven on the tokio runtime it was made on — the exporter calls it from a thread of
/// its own.
#[derive(Clone)]
pub struct OtlpHttpClient {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

impl fmt::Debug for OtlpHttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpHttpClient").finish_non_exhaustive()
    }
}

impl OtlpHttpClient {
    /// A client on the current tokio runtime (call from within it).
    pub fn new(timeout: std::time::Duration) -> Result<OtlpHttpClient, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| format!("the OTLP exporter needs the tokio runtime: {e}"))?;
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("sacp-gateway/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the OTLP HTTP client: {e}"))?;
        Ok(OtlpHttpClient { client, runtime })
    }
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for OtlpHttpClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let request = reqwest::Request::try_from(request)?;
        let client = self.client.clone();
        let answer = self
            .runtime
            .spawn(async move {
                let response = client.execute(request).await?;
                let status = response.status();
                let headers = response.headers().clone();
                let body = response.bytes().await?;
                Ok::<_, reqwest::Error>((status, headers, body))
            })
            .await??;
        let (status, headers, body) = answer;
        let mut response = Response::builder().status(status).body(body)?;
        *response.headers_mut() = headers;
        Ok(response)
    }
}
