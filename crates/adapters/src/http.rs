//! What both HTTP clients share: configuration, URL building, error mapping, decoding.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{RequestBuilder, StatusCode};
use sacp_domain::{Currency, Money};
use sacp_ports::UpstreamError;
use sacp_ports::error::from_http_status;
use sacp_ports::telemetry;
use serde::de::DeserializeOwned;
use url::Url;

use crate::breaker::{Breaker, BreakerConfig};

/// Timeouts of an upstream client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpConfig {
    /// Time allowed to open a connection.
    pub connect_timeout: Duration,
    /// Time allowed for a whole request, answer included.
    pub request_timeout: Duration,
    /// When to stop calling a failing upstream for a while.
    pub breaker: BreakerConfig,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
            breaker: BreakerConfig::default(),
        }
    }
}

/// One upstream: a client per thread, the base URL every path is appended to, and its
/// breaker.
#[derive(Debug, Clone)]
pub(crate) struct Upstream {
    clients: Arc<PerThread>,
    /// `store` or `wallet`: the `upstream` label of its metrics and the prefix of its spans.
    name: &'static str,
    base: Url,
    breaker: Arc<Breaker>,
    series: Arc<Series>,
}

/// One HTTP client per thread that calls the upstream. A client's connections are driven
/// by tasks on the runtime of the thread that opened them; each actix worker runs a runtime
/// of its own, so with one shared client a request on one worker often went out on a
/// connection driven by another, and every exchange crossed threads twice (measured: 5 % of
/// the gateway's samples in cross-thread wakes on uncached catalog reads). With a client per
/// thread, a worker's calls stay on its connections.
#[derive(Debug)]
struct PerThread {
    config: HttpConfig,
    /// The client built at start (which proved the configuration), for a thread whose own
    /// client could not be built.
    first: reqwest::Client,
    clients: thread_local::ThreadLocal<reqwest::Client>,
}

impl PerThread {
    fn new(config: HttpConfig) -> Result<PerThread, String> {
        let first = client(config).map_err(|e| format!("cannot build HTTP client: {e}"))?;
        Ok(PerThread {
            config,
            first,
            clients: thread_local::ThreadLocal::new(),
        })
    }

    fn get(&self) -> reqwest::Client {
        self.clients
            .get_or(|| client(self.config).unwrap_or_else(|_| self.first.clone()))
            .clone()
    }
}

/// A client with the upstream timeouts.
fn client(config: HttpConfig) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .connect_timeout(config.connect_timeout)
        .timeout(config.request_timeout)
        .user_agent(concat!("sacp-gateway/", env!("CARGO_PKG_VERSION")))
        // Drop idle connections before the upstream does: many servers (actix, node)
        // close keep-alive connections after 5 s, and reusing one just as it closes
        // fails the request. Found by the benchmark, where the catalog cache's 5 s TTL
        // left the store connections idle exactly that long.
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .build()
}

/// The `outcome` labels of upstream calls.
const OUTCOMES: [&str; 8] = [
    "2xx",
    "3xx",
    "4xx",
    "5xx",
    "timeout",
    "unreachable",
    "circuit_open",
    "not_sent",
];

/// The metric series of one operation, made on first use.
#[derive(Debug, Default)]
struct OperationSeries {
    duration: OnceLock<metrics::Histogram>,
    outcomes: [OnceLock<metrics::Counter>; OUTCOMES.len()],
}

/// The series of an upstream's operations: resolved once each, so a call records without
/// a lock (a handle is an atomic the exporter reads).
#[derive(Debug)]
struct Series {
    operations: Vec<(&'static str, OperationSeries)>,
}

impl Series {
    fn new(operations: &[&'static str]) -> Series {
        Series {
            operations: operations
                .iter()
                .map(|op| (*op, OperationSeries::default()))
                .collect(),
        }
    }

    fn of(&self, operation: &str) -> Option<&OperationSeries> {
        self.operations
            .iter()
            .find(|(name, _)| *name == operation)
            .map(|(_, series)| series)
    }

    fn count(&self, upstream: &'static str, operation: &'static str, outcome: &'static str) {
        let counter = || {
            metrics::counter!(
                telemetry::UPSTREAM_REQUESTS,
                "upstream" => upstream,
                "operation" => operation,
                "outcome" => outcome
            )
        };
        match (
            self.of(operation),
            OUTCOMES.iter().position(|o| *o == outcome),
        ) {
            (Some(series), Some(index)) => {
                series.outcomes[index].get_or_init(counter).increment(1);
            }
            _ => counter().increment(1),
        }
    }

    fn duration(&self, upstream: &'static str, operation: &'static str, elapsed: Duration) {
        let histogram = || {
            metrics::histogram!(
                telemetry::UPSTREAM_REQUEST_DURATION,
                "upstream" => upstream,
                "operation" => operation
            )
        };
        let seconds = elapsed.as_secs_f64();
        match self.of(operation) {
            Some(series) => series.duration.get_or_init(histogram).record(seconds),
            None => histogram().record(seconds),
        }
    }
}

/// An answer that arrived: status, headers and body.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: bytes::Bytes,
    /// The breaker of the upstream that sent it: a body that breaks the contract is a fault
    /// of the upstream too.
    breaker: Arc<Breaker>,
}

/// How long an idle upstream connection is kept for reuse (under the common 5 s server
/// keep-alive).
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(4);

impl Upstream {
    /// A client for the upstream at `base` (which may carry a path prefix, e.g.
    /// `http://127.0.0.1:8090/ssim`).
    /// `name` is `store` or `wallet`; `operations` are the operation names its calls use
    /// (their metric series are resolved once).
    pub(crate) fn new(
        name: &'static str,
        operations: &[&'static str],
        base: &str,
        config: HttpConfig,
    ) -> Result<Upstream, String> {
        // One TLS stack, with the ring provider: install it once per process.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut base =
            Url::parse(base).map_err(|e| format!("invalid upstream URL {base:?}: {e}"))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(format!("upstream URL must be http(s): {base}"));
        }
        base.set_query(None);
        base.set_fragment(None);
        Ok(Upstream {
            clients: Arc::new(PerThread::new(config)?),
            name,
            base,
            breaker: Arc::new(Breaker::new(name, config.breaker)),
            series: Arc::new(Series::new(operations)),
        })
    }

    /// This thread's client for the upstream.
    pub(crate) fn client(&self) -> reqwest::Client {
        self.clients.get()
    }

    /// The base URL with `segments` appended, each percent-encoded as one path segment.
    /// An empty, `.` or `..` segment (which would name another resource, or be dropped) is
    /// [`UpstreamError::InvalidRequest`].
    pub(crate) fn url(&self, segments: &[&str]) -> Result<Url, UpstreamError> {
        if let Some(bad) = segments.iter().find(|s| matches!(**s, "" | "." | "..")) {
            return Err(UpstreamError::InvalidRequest(format!(
                "{bad:?} cannot be a path segment"
            )));
        }
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        Ok(url)
    }

    /// Sends a request; transport failures become typed errors.
    ///
    /// A request that cannot be built from what the caller gave (an over-long URL, a header
    /// value with forbidden characters) is [`UpstreamError::InvalidRequest`]: it is never sent
    /// and never counted against the upstream, so no caller can open another caller's
    /// circuit. Only faults of the upstream count: unreachable, timeout, 5xx, a body that
    /// breaks the contract. While the circuit is open, answers [`UpstreamError::Unavailable`]
    /// at once.
    ///
    /// Every call is counted under `operation` (a fixed name, e.g. `get_product`) and carries
    /// the request's W3C trace context (`traceparent`, `tracestate`) in a client span of its
    /// own.
    pub(crate) async fn send(
        &self,
        operation: &'static str,
        request: RequestBuilder,
    ) -> Result<Answer, UpstreamError> {
        let (client, request) = request.build_split();
        let refused = |outcome: &'static str, error: UpstreamError| {
            self.count(operation, outcome);
            Err(error)
        };
        let mut request = match request {
            Ok(request) => request,
            Err(e) => return refused("not_sent", UpstreamError::InvalidRequest(without_url(&e))),
        };
        if http::Uri::try_from(request.url().as_str()).is_err() {
            return refused(
                "not_sent",
                UpstreamError::InvalidRequest("the URL is too long or not valid".into()),
            );
        }
        if !self.breaker.allow(Instant::now()) {
            return refused("circuit_open", UpstreamError::Unavailable);
        }
        let span = crate::trace::client_span(self.name, operation, request.headers_mut());
        let started = Instant::now();
        let answer = self.exchange(&client, request).await;
        let elapsed = started.elapsed();
        let (failed, outcome) = match &answer {
            Ok(answer) => (answer.status.is_server_error(), outcome_of(answer.status)),
            Err(UpstreamError::Timeout) => (true, "timeout"),
            Err(_) => (true, "unreachable"),
        };
        span.end(answer.as_ref().ok().map(|a| a.status.as_u16()), outcome);
        self.breaker.record(failed, Instant::now());
        self.count(operation, outcome);
        self.series.duration(self.name, operation, elapsed);
        answer
    }

    fn count(&self, operation: &'static str, outcome: &'static str) {
        self.series.count(self.name, operation, outcome);
    }

    async fn exchange(
        &self,
        client: &reqwest::Client,
        request: reqwest::Request,
    ) -> Result<Answer, UpstreamError> {
        let response = client.execute(request).await.map_err(transport_error)?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(transport_error)?;
        Ok(Answer {
            status,
            headers,
            body,
            breaker: self.breaker.clone(),
        })
    }
}

/// The `outcome` label of an answer: its status class.
fn outcome_of(status: StatusCode) -> &'static str {
    match status.as_u16() {
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// A reqwest error's description without the URL (which may carry a caller's input).
fn without_url(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    if let Some(url) = error.url() {
        text = text.replace(url.as_str(), "<url>");
    }
    text
}

fn transport_error(error: reqwest::Error) -> UpstreamError {
    if error.is_timeout() {
        UpstreamError::Timeout
    } else if error.is_decode() {
        UpstreamError::MalformedResponse("undecodable body".into())
    } else {
        // Connection refused or reset, DNS, TLS: the upstream cannot be reached.
        tracing::warn!(error = %error, "upstream unreachable");
        UpstreamError::Unavailable
    }
}

impl Answer {
    /// The upstream's `error` code of an error body, if it sent one.
    pub(crate) fn error_code(&self) -> Option<String> {
        let body: serde_json::Value = serde_json::from_slice(&self.body).ok()?;
        body.get("error")?.as_str().map(str::to_owned)
    }

    /// The upstream's `error_description` (OAuth-style error bodies), if it sent one.
    pub(crate) fn error_description(&self) -> Option<String> {
        let body: serde_json::Value = serde_json::from_slice(&self.body).ok()?;
        body.get("error_description")?.as_str().map(str::to_owned)
    }

    /// The typed error for a non-success answer.
    pub(crate) fn error(&self) -> UpstreamError {
        let retry_after = self
            .headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        from_http_status(
            self.status.as_u16(),
            self.error_code().as_deref(),
            retry_after,
        )
    }

    /// Decodes a JSON body; one that breaks the contract counts against the upstream.
    pub(crate) fn json<T: DeserializeOwned>(&self) -> Result<T, UpstreamError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            self.breaker.record(true, Instant::now());
            UpstreamError::MalformedResponse(format!("{e}"))
        })
    }

    /// Decodes a JSON success body, or maps the error.
    pub(crate) fn success<T: DeserializeOwned>(&self) -> Result<T, UpstreamError> {
        if self.status.is_success() {
            self.json()
        } else {
            Err(self.error())
        }
    }
}

/// Decimal dollars sent as a JSON number (`18.99`) or string (`"25"`), converted exactly.
///
/// A JSON number reaches us as the shortest decimal text that identifies its binary double,
/// which for amounts of up to 15 significant digits is exactly the text the upstream wrote.
pub(crate) fn money(value: &serde_json::Value, currency: Currency) -> Result<Money, UpstreamError> {
    let text = match value {
        serde_json::Value::Number(number) => number.to_string(),
        serde_json::Value::String(text) => text.clone(),
        _ => {
            return Err(UpstreamError::MalformedResponse(
                "amount is not a number".into(),
            ));
        }
    };
    Money::parse_decimal(&text, currency)
        .map_err(|e| UpstreamError::MalformedResponse(e.to_string()))
}

/// A currency code from an upstream.
pub(crate) fn currency(code: &str) -> Result<Currency, UpstreamError> {
    Currency::parse(code).map_err(|e| UpstreamError::MalformedResponse(e.to_string()))
}

/// Decimal dollars as a JSON number, for upstream requests.
pub(crate) fn dollars(amount: Money) -> serde_json::Value {
    amount
        .to_decimal_string()
        .parse::<serde_json::Number>()
        .map(serde_json::Value::Number)
        .unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_appended_under_the_prefix_and_encoded() {
        let upstream = Upstream::new(
            "store",
            &[],
            "http://127.0.0.1:8090/ssim",
            HttpConfig::default(),
        )
        .unwrap();
        assert_eq!(
            upstream
                .url(&["api", "agent", "v1", "products", "a/b c?d"])
                .unwrap()
                .as_str(),
            "http://127.0.0.1:8090/ssim/api/agent/v1/products/a%2Fb%20c%3Fd"
        );
        let slash = Upstream::new(
            "store",
            &[],
            "http://127.0.0.1:8090/ssim/",
            HttpConfig::default(),
        )
        .unwrap();
        assert_eq!(
            slash.url(&["x"]).unwrap().as_str(),
            "http://127.0.0.1:8090/ssim/x"
        );
        let root =
            Upstream::new("store", &[], "http://127.0.0.1:8090", HttpConfig::default()).unwrap();
        assert_eq!(
            root.url(&[".well-known", "ucp"]).unwrap().as_str(),
            "http://127.0.0.1:8090/.well-known/ucp"
        );
        // A segment that would name another resource is refused, never sent.
        for bad in ["..", ".", ""] {
            assert!(matches!(
                upstream.url(&["products", bad]),
                Err(UpstreamError::InvalidRequest(_))
            ));
        }
        assert!(Upstream::new("store", &[], "ftp://x", HttpConfig::default()).is_err());
        assert!(Upstream::new("store", &[], "not a url", HttpConfig::default()).is_err());
    }

    #[test]
    fn every_operation_an_adapter_sends_has_its_series() {
        for (source, operations) in [
            (include_str!("http_store.rs"), crate::http_store::OPERATIONS),
            (
                include_str!("http_wallet.rs"),
                crate::http_wallet::OPERATIONS,
            ),
        ] {
            let mut sent = 0;
            for call in source.split(".send(").skip(1) {
                let name = call.trim_start().trim_start_matches('"');
                let name = &name[..name.find('"').unwrap_or(0)];
                assert!(operations.contains(&name), "{name:?} has no series");
                sent += 1;
            }
            assert!(
                sent >= operations.len(),
                "an operation is listed but never sent"
            );
        }
    }

    #[test]
    fn json_amounts_convert_exactly() {
        let cad = Currency::CAD;
        assert_eq!(
            money(&serde_json::json!(18.99), cad).unwrap().minor_units(),
            1899
        );
        assert_eq!(
            money(&serde_json::json!("25"), cad).unwrap().minor_units(),
            2500
        );
        assert_eq!(
            money(&serde_json::json!(59.970), cad)
                .unwrap()
                .minor_units(),
            5997
        );
        let parsed: serde_json::Value = serde_json::from_str("0.1").unwrap();
        assert_eq!(money(&parsed, cad).unwrap().minor_units(), 10);
        assert!(money(&serde_json::json!(18.999), cad).is_err());
        assert!(money(&serde_json::json!(true), cad).is_err());
        assert_eq!(dollars(Money::from_minor(2146, cad)).to_string(), "21.46");
    }
}
