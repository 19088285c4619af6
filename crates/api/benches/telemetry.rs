//! What recording a request's telemetry costs on the request path: the HTTP metrics of an
//! API route (series resolved once, no lock), the same through the exporter's registry (what
//! routes outside the API pay), and the trace context's server span. `scripts/bench` runs
//! these and reports them in `docs/benchmarks.md`.

use std::hint::black_box;
use std::time::Duration;

use actix_web::http::Method;
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use criterion::{Criterion, criterion_group, criterion_main};
use metrics_exporter_prometheus::PrometheusBuilder;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use sacp_api::metrics::{InFlight, record};
use sacp_api::trace::ServerSpan;

fn install() {
    let recorder = PrometheusBuilder::new()
        .set_buckets(&[0.001, 0.01, 0.1, 1.0, 10.0])
        .map(PrometheusBuilder::build_recorder)
        .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
    let _ = metrics::set_global_recorder(recorder);
    // As the gateway runs without an exporter: callers' sampled traces continue, others
    // get ids only.
    let provider = SdkTracerProvider::builder()
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOff)))
        .build();
    opentelemetry::global::set_tracer_provider(provider);
}

fn telemetry(c: &mut Criterion) {
    install();
    let elapsed = Duration::from_micros(180);
    let mut group = c.benchmark_group("telemetry");
    group.bench_function("http_metrics_api_route", |b| {
        b.iter(|| {
            let in_flight = InFlight::enter();
            record(&Method::GET, black_box("/products/{id}"), 200, elapsed);
            drop(in_flight);
        });
    });
    group.bench_function("http_metrics_registry_route", |b| {
        b.iter(|| {
            let in_flight = InFlight::enter();
            record(
                &Method::GET,
                black_box("/sim/ssim/api/products/{id}"),
                200,
                elapsed,
            );
            drop(in_flight);
        });
    });
    let mut sampled = HeaderMap::new();
    sampled.insert(
        HeaderName::from_static("traceparent"),
        HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    );
    group.bench_function("server_span_new_trace", |b| {
        let none = HeaderMap::new();
        b.iter(|| {
            let span = ServerSpan::start(black_box(&none), &Method::GET);
            black_box(span.trace_id());
            span.end("/products/{id}", 200);
        });
    });
    group.bench_function("server_span_sampled_parent", |b| {
        b.iter(|| {
            let span = ServerSpan::start(black_box(&sampled), &Method::GET);
            black_box(span.trace_id());
            span.end("/products/{id}", 200);
        });
    });
    group.finish();
}

criterion_group!(benches, telemetry);
criterion_main!(benches);
