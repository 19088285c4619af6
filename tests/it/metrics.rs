//! The operator's view: `/metrics` (the scraper's listener and the main one, to the
//! operator's token), exact counts with bounded labels, the breaker gauge, and W3C trace
//! context reaching the upstreams.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use actix_web::{App, HttpServer};
use reqwest::StatusCode;
use sacp_sim::catalog::ETHIOPIAN_YIRGACHEFFE;
use sacp_sim::faults::Faults;
use serde_json::json;

use crate::app::{ADMIN_TOKEN, TEST_KEY, anonymous_client, settings, spawn_app_with};
use crate::support::SimServer;

/// One sample of a scrape.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: HashMap<String, String>,
    value: f64,
}

/// One scrape, parsed by the text format's rules (independently of the exporter; CI also
/// runs `promtool check metrics` on a live scrape).
struct Scrape(Vec<Sample>);

/// Parses `{name="value",...}` honouring quotes and the format's escapes (`\\`, `\"`,
/// `\n`): label values hold braces (`/products/{id}`).
fn parse_labels(text: &str) -> (HashMap<String, String>, &str) {
    let mut labels = HashMap::new();
    let mut chars = text.char_indices().peekable();
    assert_eq!(chars.next().map(|(_, c)| c), Some('{'), "{text}");
    loop {
        let mut name = String::new();
        for (i, c) in chars.by_ref() {
            match c {
                '=' => break,
                '}' => return (labels, &text[i + 1..]),
                ',' | ' ' => {}
                c => name.push(c),
            }
        }
        assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "{text}");
        let mut value = String::new();
        while let Some((_, c)) = chars.next() {
            match c {
                '\\' => match chars.next().map(|(_, c)| c) {
                    Some('n') => value.push('\n'),
                    Some(other) => value.push(other),
                    None => panic!("dangling escape in {text}"),
                },
                '"' => break,
                c => value.push(c),
            }
        }
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && !name.is_empty(),
            "label name {name:?} in {text}"
        );
        labels.insert(name, value);
    }
}

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let mut samples = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            if let Some(comment) = line.strip_prefix('#') {
                let comment = comment.trim_start();
                assert!(
                    comment.starts_with("HELP ") || comment.starts_with("TYPE "),
                    "{line}"
                );
                continue;
            }
            let name_end = line.find(['{', ' ']).unwrap_or_else(|| panic!("{line}"));
            let name = &line[..name_end];
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
                "metric name {name:?}"
            );
            let (labels, rest) = if line[name_end..].starts_with('{') {
                parse_labels(&line[name_end..])
            } else {
                (HashMap::new(), &line[name_end..])
            };
            let value = rest
                .split_whitespace()
                .next()
                .unwrap_or_else(|| panic!("{line}"));
            let value = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                other => other.parse().unwrap_or_else(|_| panic!("value of {line}")),
            };
            samples.push(Sample {
                name: name.to_owned(),
                labels,
                value,
            });
        }
        Scrape(samples)
    }

    /// The sum of the samples `name` whose labels include `labels` (0 when absent).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .sum()
    }

    /// How much the samples `name` with `labels` grew since `before`.
    fn since(&self, before: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels) - before.value(name, labels)
    }

    /// Every label value of every sample.
    fn label_values(&self) -> Vec<(String, String, String)> {
        self.0
            .iter()
            .flat_map(|s| {
                s.labels
                    .iter()
                    .map(|(k, v)| (s.name.clone(), k.clone(), v.clone()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

async fn scrape(url: &str) -> Scrape {
    let answer = reqwest::get(url).await.expect("scrape");
    assert_eq!(answer.status(), StatusCode::OK);
    let content_type = answer
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    Scrape::parse(&answer.text().await.unwrap())
}

#[tokio::test]
async fn a_scrape_after_the_seed_conversation_counts_exactly_with_bounded_labels() {
    let mut config = settings();
    config.metrics_listen = Some("127.0.0.1:0".into());
    let app = spawn_app_with(
        config,
        Faults {
            poll_interval_secs: Some(1),
            ..Faults::default()
        },
    )
    .await;
    let metrics_url = format!(
        "http://{}/metrics",
        app.metrics_address()
            .expect("the metrics listener is bound")
    );
    let product = format!("/products/{ETHIOPIAN_YIRGACHEFFE}");
    let route = [
        ("method", "GET"),
        ("route", "/products/{id}"),
        ("status", "200"),
    ];

    let before = scrape(&metrics_url).await;
    for _ in 0..7 {
        assert_eq!(app.get(&product).await.status, StatusCode::OK);
    }
    let after = scrape(&metrics_url).await;
    assert_eq!(
        after.since(&before, "sacp_http_requests_total", &route),
        7.0,
        "seven catalog reads, seven more on that route's counter"
    );
    assert_eq!(
        after.since(
            &before,
            "sacp_http_request_duration_seconds_count",
            &[("method", "GET"), ("route", "/products/{id}")]
        ),
        7.0
    );
    assert_eq!(
        after.since(
            &before,
            "sacp_upstream_requests_total",
            &[
                ("upstream", "store"),
                ("operation", "get_product"),
                ("outcome", "2xx")
            ]
        ),
        7.0,
        "the catalog cache is off in tests: each read reached the store"
    );

    // The seed conversation: a checkout, the buyer, the approval in the wallet, the order.
    let id = app.ready_checkout(1).await;
    let started = app.complete_as_guest(&id).await;
    app.decide_in_wallet(&started.str("/authorization_url"), true)
        .await;
    let settled = app.poll_until_settled(&started.str("/poll_endpoint")).await;
    assert_eq!(settled.body["status"], "completed", "{}", settled.body);
    let after = scrape(&metrics_url).await;
    assert_eq!(
        after.value("sacp_payments_total", &[("outcome", "completed")]),
        1.0
    );
    assert_eq!(after.value("sacp_wallet_tokens_minted_total", &[]), 1.0);
    assert_eq!(
        after.value(
            "sacp_http_requests_total",
            &[
                ("method", "POST"),
                ("route", "/checkout"),
                ("status", "201")
            ]
        ),
        1.0
    );
    assert_eq!(
        after.value(
            "sacp_http_requests_total",
            &[
                ("method", "POST"),
                ("route", "/checkout/{id}/complete"),
                ("status", "202")
            ]
        ),
        1.0
    );
    assert!(
        after.value(
            "sacp_upstream_requests_total",
            &[("upstream", "wallet"), ("operation", "device_token")]
        ) >= 1.0,
        "the driver polled the wallet"
    );
    assert_eq!(
        after.value("sacp_payment_authorizations", &[("state", "pending")]),
        0.0
    );
    assert_eq!(
        after.value("sacp_build_info", &[("version", env!("CARGO_PKG_VERSION"))]),
        1.0
    );
    assert_eq!(
        after.value("sacp_upstream_breaker_open", &[("upstream", "store")]),
        0.0
    );

    // Labels are patterns and names: never an id, a key, a token or a raw path.
    let secrets = [TEST_KEY, ADMIN_TOKEN, id.as_str(), ETHIOPIAN_YIRGACHEFFE];
    for (metric, label, value) in after.label_values() {
        for secret in secrets {
            assert!(
                !value.contains(secret),
                "{metric} {label}={value} carries {secret}"
            );
        }
        if label == "route" {
            assert!(
                value == "(unmatched)" || !value.contains(['?', '%']),
                "{metric} route={value}"
            );
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn the_main_listener_serves_metrics_only_to_the_operator() {
    let app = spawn_app_with(settings(), Faults::default()).await;
    let url = format!("{}/metrics", app.url);
    let anonymous = anonymous_client().get(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let integration = app.http.get(&url).send().await.unwrap();
    assert_eq!(
        integration.status(),
        StatusCode::FORBIDDEN,
        "an integration key without `admin` is not the operator"
    );
    let operator = anonymous_client()
        .get(&url)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(operator.status(), StatusCode::OK);
    let scraped = Scrape::parse(&operator.text().await.unwrap());
    assert!(
        scraped.value(
            "sacp_http_requests_total",
            &[("route", "/metrics"), ("status", "401")]
        ) >= 1.0
    );
    // Scrapes are not audited (the admin API's reads are).
    let audit = crate::admin::admin(&app, reqwest::Method::GET, "/admin/audit", None)
        .await
        .body;
    let scrapes = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "GET /metrics" && e["status"] == 200)
        .count();
    assert_eq!(scrapes, 0, "{audit}");
    app.stop().await;
}

#[tokio::test]
async fn the_breaker_gauge_follows_a_store_outage() {
    let mut config = settings();
    config.breaker_failures = 2;
    config.breaker_cool_down_ms = 300;
    let app = spawn_app_with(config, Faults::default()).await;
    let metrics = || async {
        let text = anonymous_client()
            .get(format!("{}/metrics", app.url))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        Scrape::parse(&text).value("sacp_upstream_breaker_open", &[("upstream", "store")])
    };
    assert_eq!(metrics().await, 0.0);
    app.sims.store.set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    for _ in 0..2 {
        app.get("/products")
            .await
            .assert_problem(502, "upstream_unavailable");
    }
    assert_eq!(metrics().await, 1.0, "open after two failures in a row");
    app.sims.store.set_faults(Faults::default());
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(app.get("/products").await.status, StatusCode::OK);
    assert_eq!(metrics().await, 0.0, "closed again after a good trial");
    app.stop().await;
}

/// Simulators whose every request's `traceparent` is kept, with its path.
#[tokio::test]
async fn a_callers_traceparent_reaches_the_store_and_one_is_started_when_absent() {
    let (sims, seen) = SimServer::start_recording().await;
    let base = sims.base.clone();
    let mut config = settings();
    config.ssim_base_url = Some(format!("{base}/ssim"));
    config.wsim_base_url = Some(format!("{base}/wsim"));
    config.gateway_client_secret = Some("sandbox-secret".to_owned().into());
    config.introspection_client_id = Some("sacp-introspect".into());
    config.introspection_client_secret = Some("sandbox-introspect-secret".to_owned().into());
    let running = sacp_server::start(&config).await.expect("gateway starts");
    let url = format!("http://{}", running.address);
    let client = reqwest::Client::new();
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let incoming = format!("00-{trace_id}-00f067aa0ba902b7-01");
    let answer = client
        .get(format!("{url}/products/{ETHIOPIAN_YIRGACHEFFE}"))
        .header("X-API-Key", TEST_KEY)
        .header("traceparent", &incoming)
        .header("tracestate", "vendor=opaque")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let product_calls: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(path, _)| path.contains("/products/"))
        .map(|(_, traceparent)| traceparent.clone())
        .collect();
    assert_eq!(product_calls.len(), 1, "{product_calls:?}");
    let sent: Vec<&str> = product_calls[0].split('-').collect();
    assert_eq!(sent.len(), 4, "{product_calls:?}");
    assert_eq!(sent[0], "00");
    assert_eq!(sent[1], trace_id, "the caller's trace goes on to the store");
    assert_ne!(
        sent[2], "00f067aa0ba902b7",
        "the gateway's own span is the store call's parent"
    );
    assert_eq!(sent[3], "01", "the caller's sampling decision is kept");

    // An MCP tool call carries it on too.
    seen.lock().unwrap().clear();
    let mcp_trace = "0af7651916cd43dd8448eb211c80319c";
    let call = json!({
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {
            "name": "get_product",
            "arguments": {"product_id": ETHIOPIAN_YIRGACHEFFE},
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {}
            }
        }
    });
    let answer = client
        .post(format!("{url}/mcp"))
        .header("X-API-Key", TEST_KEY)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "get_product")
        .header("traceparent", format!("00-{mcp_trace}-b7ad6b7169203331-01"))
        .json(&call)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_ne!(body["result"]["isError"], true, "{body}");
    let traced =
        seen.lock().unwrap().iter().any(|(path, traceparent)| {
            path.contains("/products/") && traceparent.contains(mcp_trace)
        });
    assert!(
        traced,
        "the tool call's store request carries the caller's trace: {:?}",
        seen.lock().unwrap()
    );

    // Without one (or with one that is not valid), the gateway starts a trace of its own.
    seen.lock().unwrap().clear();
    for traceparent in [
        None,
        Some("00-not-a-trace-01"),
        Some("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
    ] {
        let mut request = client
            .post(format!("{url}/checkout"))
            .header("X-API-Key", TEST_KEY)
            .json(&json!({"items": [{"product_id": ETHIOPIAN_YIRGACHEFFE, "quantity": 1}]}));
        if let Some(traceparent) = traceparent {
            request = request.header("traceparent", traceparent);
        }
        assert_eq!(request.send().await.unwrap().status(), StatusCode::CREATED);
    }
    let started: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|(_, traceparent)| traceparent.clone())
        .collect();
    assert!(!started.is_empty());
    let mut traces = HashMap::new();
    for traceparent in &started {
        let parts: Vec<&str> = traceparent.split('-').collect();
        assert_eq!(
            parts.len(),
            4,
            "every upstream call carries one: {started:?}"
        );
        assert_eq!(parts[1].len(), 32);
        assert_ne!(parts[1], "00000000000000000000000000000000");
        assert_ne!(parts[1], trace_id);
        *traces.entry(parts[1].to_owned()).or_insert(0) += 1;
    }
    assert_eq!(traces.len(), 3, "one new trace per request: {started:?}");
    running.stop().await;
}

/// The metric names a text mentions (histogram series reduced to their metric).
/// Names in the `sacp_` namespace that are not metrics: the channel replicas `LISTEN` on.
const NOT_METRICS: [&str; 1] = ["sacp_changes"];

fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    let pattern = regex::Regex::new(r"\bsacp_[a-z_]+").unwrap();
    pattern
        .find_iter(text)
        .filter(|m| !NOT_METRICS.contains(&m.as_str()))
        .map(|m| {
            let name = m.as_str();
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| {
                    name.strip_suffix(suffix)
                        .filter(|base| base.ends_with("_seconds"))
                })
                .unwrap_or(name)
                .to_owned()
        })
        .collect()
}

#[test]
fn the_rules_dashboard_and_docs_name_exactly_the_metrics_the_gateway_exposes() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let read = |path: &str| std::fs::read_to_string(root.join(path)).unwrap();
    let catalogue: std::collections::BTreeSet<String> = sacp_ports::telemetry::CATALOGUE
        .iter()
        .map(|m| m.name.to_owned())
        .collect();
    for artefact in [
        "deploy/prometheus/sacp-gateway-alerts.yml",
        "deploy/grafana/sacp-gateway-dashboard.json",
        "docs/operations.md",
    ] {
        let unknown: Vec<String> = metric_names(&read(artefact))
            .difference(&catalogue)
            .cloned()
            .collect();
        assert!(
            unknown.is_empty(),
            "{artefact} names unknown metrics {unknown:?}"
        );
    }
    let documented = metric_names(&read("docs/operations.md"));
    let missing: Vec<&String> = catalogue.difference(&documented).collect();
    assert!(missing.is_empty(), "docs/operations.md lacks {missing:?}");
    let dashboard = metric_names(&read("deploy/grafana/sacp-gateway-dashboard.json"));
    let missing: Vec<&String> = catalogue.difference(&dashboard).collect();
    assert!(missing.is_empty(), "the dashboard lacks {missing:?}");
    let _: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/sacp-gateway-dashboard.json"))
            .expect("the dashboard is JSON");
}

/// What a collector received: the content type and the body.
type Exported = (String, Vec<u8>);

#[tokio::test]
async fn spans_are_exported_over_otlp_when_a_collector_is_configured() {
    // A collector that keeps what it receives.
    let received: Arc<Mutex<Vec<Exported>>> = Arc::default();
    let kept = received.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let collector = format!("http://{}", listener.local_addr().unwrap());
    let server = HttpServer::new(move || {
        let kept = kept.clone();
        App::new().route(
            "/v1/traces",
            actix_web::web::post().to(
                move |request: actix_web::HttpRequest, body: actix_web::web::Bytes| {
                    let content_type = request
                        .headers()
                        .get("content-type")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    kept.lock().unwrap().push((content_type, body.to_vec()));
                    async { actix_web::HttpResponse::Ok().finish() }
                },
            ),
        )
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);

    let mut config = settings();
    config.otlp_endpoint = Some(collector);
    let running = sacp_server::start(&config).await.expect("gateway starts");
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let answer = reqwest::Client::new()
        .get(format!(
            "http://{}/products/{ETHIOPIAN_YIRGACHEFFE}",
            running.address
        ))
        .header("X-API-Key", TEST_KEY)
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    // Stopping flushes the batch.
    running.stop().await;
    let received = received.lock().unwrap();
    assert!(!received.is_empty(), "nothing was exported");
    let trace_bytes: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&trace_id[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let carried = received.iter().any(|(content_type, body)| {
        content_type == "application/x-protobuf"
            && body
                .windows(16)
                .any(|window| window == trace_bytes.as_slice())
    });
    assert!(carried, "no exported span carries the caller's trace id");
    let names = received
        .iter()
        .any(|(_, body)| body.windows(15).any(|w| w == b"GET /products/{".as_slice()));
    assert!(names, "the server span is named after the route pattern");
}
