//! The process's telemetry: the Prometheus recorder every layer records into, the
//! `/metrics` exposition (main listener, to the operator; `SACP_METRICS_LISTEN`, to the
//! scraper), and the tracer provider behind W3C trace context (with OTLP export when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set).

use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpResponse, HttpServer, web};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use sacp_adapters::pg::PgStorage;
use sacp_adapters::trace::OtlpHttpClient;
use sacp_api::{METRICS_CONTENT_TYPE, MetricsSource};
use sacp_app::Gateway;
use sacp_ports::telemetry::{CATALOGUE, Kind};

/// Bucket bounds (seconds) of every histogram: from a cached read to a slow upstream.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How often histograms are compacted between scrapes.
const UPKEEP: Duration = Duration::from_secs(5);

/// The process's recorder, installed once (every gateway this process starts records into
/// it) and its handle for rendering.
pub fn recorder() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new();
        // Histograms rendered as Prometheus histograms (not summaries), so replicas add up.
        let builder = match builder.set_buckets(BUCKETS) {
            Ok(with_buckets) => with_buckets,
            Err(_) => PrometheusBuilder::new(),
        };
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics shows none");
        }
        describe();
        metrics::gauge!(sacp_ports::telemetry::BUILD_INFO, "version" => env!("CARGO_PKG_VERSION"))
            .set(1.0);
        // Counters alerts compare over time exist from the start (at 0), so the first
        // completion, failure or token after a start counts as an increase.
        for outcome in ["completed", "rejected", "expired", "failed", "cancelled"] {
            metrics::counter!(sacp_ports::telemetry::PAYMENTS, "outcome" => outcome).increment(0);
        }
        metrics::counter!(sacp_ports::telemetry::WALLET_TOKENS_MINTED).increment(0);
        let upkeep = handle.clone();
        let started = std::thread::Builder::new()
            .name("sacp-metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP);
                    upkeep.run_upkeep();
                }
            });
        if let Err(error) = started {
            tracing::warn!(%error, "metrics upkeep thread not started; histograms compact at each scrape");
        }
        handle
    })
}

/// Gives every metric of the catalogue its help text.
fn describe() {
    for metric in CATALOGUE {
        match metric.kind {
            Kind::Counter => metrics::describe_counter!(metric.name, metric.help),
            Kind::Gauge => metrics::describe_gauge!(metric.name, metric.help),
            Kind::Histogram => {
                metrics::describe_histogram!(metric.name, metrics::Unit::Seconds, metric.help)
            }
        }
    }
}

/// How often scrapes may read the gauges that come from storage: more scrapers (or a
/// flood of scrapes) than that reuse the last reading instead of querying again.
const GAUGES_EVERY: Duration = Duration::from_secs(1);

/// What `/metrics` answers: the gauges read from storage refreshed (at most once a
/// second), then everything this process recorded.
#[derive(Debug, Clone)]
pub struct Exposition {
    handle: PrometheusHandle,
    gateway: Gateway,
    pool: Option<Arc<PgStorage>>,
    refreshed: Arc<tokio::sync::Mutex<Option<std::time::Instant>>>,
}

impl Exposition {
    /// The exposition of `gateway`, with the pool of `pool` when storage is PostgreSQL.
    pub fn new(gateway: Gateway, pool: Option<Arc<PgStorage>>) -> Exposition {
        Exposition {
            handle: recorder().clone(),
            gateway,
            pool,
            refreshed: Arc::default(),
        }
    }
}

#[async_trait::async_trait]
impl MetricsSource for Exposition {
    async fn render(&self) -> String {
        {
            // Concurrent scrapes wait for one reading instead of each querying.
            let mut refreshed = self.refreshed.lock().await;
            if refreshed.is_none_or(|at| at.elapsed() >= GAUGES_EVERY) {
                self.gateway.refresh_gauges().await;
                *refreshed = Some(std::time::Instant::now());
            }
        }
        if let Some(pool) = &self.pool {
            pool.record_pool_gauges();
        }
        self.handle.render()
    }
}

/// Serves `GET /metrics` without credentials on `listener` (the scraper's address; nothing
/// else is answered there).
pub fn serve_metrics(
    listener: TcpListener,
    exposition: Exposition,
) -> std::io::Result<(SocketAddr, ServerHandle)> {
    let address = listener.local_addr()?;
    let source = web::Data::new(exposition);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(source.clone())
            .route("/metrics", web::get().to(scrape))
            .route("/metrics", web::head().to(scrape))
            .default_service(web::to(|| async {
                HttpResponse::NotFound()
                    .content_type("text/plain; charset=utf-8")
                    .body("only GET /metrics is served here\n")
            }))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)?
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    Ok((address, handle))
}

async fn scrape(source: web::Data<Exposition>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(METRICS_CONTENT_TYPE)
        .body(source.render().await)
}

/// Installs the tracer provider: spans continue callers' sampled traces and start
/// unsampled ones (ids only, nothing recorded) — unless `otlp_endpoint` is set, then every
/// request's spans are exported there (OTLP over HTTP, protobuf, to `/v1/traces`).
pub fn install_tracer(otlp_endpoint: Option<&str>) -> Result<SdkTracerProvider, String> {
    let builder = SdkTracerProvider::builder();
    let provider = match otlp_endpoint.map(str::trim).filter(|e| !e.is_empty()) {
        None => builder
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOff)))
            .build(),
        Some(endpoint) => {
            let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_http_client(OtlpHttpClient::new(Duration::from_secs(10))?)
                .with_endpoint(url)
                .with_timeout(Duration::from_secs(10))
                .build()
                .map_err(|e| format!("OTLP exporter for {endpoint}: {e}"))?;
            let resource = opentelemetry_sdk::Resource::builder()
                .with_service_name("sacp-gateway")
                .build();
            builder
                .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
                .with_batch_exporter(exporter)
                .with_resource(resource)
                .build()
        }
    };
    opentelemetry::global::set_tracer_provider(provider.clone());
    Ok(provider)
}
