//! A running gateway for tests (`spawn_app`) and a client that checks every answer against
//! the OpenAPI document the gateway serves.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use sacp_server::config::LimitArgs;
use sacp_server::{Running, Settings};
use sacp_sim::Simulators;
use sacp_sim::catalog::ETHIOPIAN_YIRGACHEFFE;
use sacp_sim::faults::Faults;
use serde_json::{Value, json};

/// The admin token of every test gateway.
pub const ADMIN_TOKEN: &str = "test-admin-token";

/// The bootstrap API key every test gateway gets (every scope but admin).
pub const TEST_KEY: &str = "sacp-integration-tests-bootstrap-key-0001";

/// An HTTP client for tests that sends no API key. The workspace builds reqwest with rustls
/// and no default crypto provider, so install ring first, as the gateway's adapters do.
pub fn anonymous_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .pool_idle_timeout(IDLE)
        .build()
        .unwrap()
}

/// How long test clients keep an idle connection: under the server's 5 s keep-alive, so a
/// request never goes out on a connection the server is closing (a test that waits for a
/// browser or a wallet poll between two calls would otherwise fail now and then).
const IDLE: Duration = Duration::from_secs(3);

/// An HTTP client for tests that sends [`TEST_KEY`] as `X-API-Key` on every request.
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        "x-api-key",
        reqwest::header::HeaderValue::from_static(TEST_KEY),
    );
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .pool_idle_timeout(IDLE)
        .default_headers(headers)
        .build()
        .unwrap()
}

/// A gateway in sandbox mode on a free loopback port.
pub struct TestApp {
    pub url: String,
    /// The gateway's use cases (to create or revoke keys in tests).
    pub gateway: sacp_app::Gateway,
    pub sims: Simulators,
    pub http: reqwest::Client,
    running: Option<Running>,
    spec: Arc<Spec>,
    /// Every response body seen, to prove secrets never appear in one.
    pub seen: Arc<Mutex<Vec<String>>>,
}

/// A response, already checked against the OpenAPI document.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn str(&self, pointer: &str) -> String {
        self.body
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no string at {pointer} in {}", self.body))
            .to_owned()
    }

    pub fn assert_problem(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "{}", self.body);
        assert_eq!(self.body["code"], code, "{}", self.body);
        assert_eq!(self.body["status"], status);
        assert!(self.body["detail"].as_str().is_some_and(|d| !d.is_empty()));
        assert!(
            self.body["request_id"].is_string(),
            "problems carry the request id"
        );
        let content_type = self
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert!(
            content_type.starts_with("application/problem+json"),
            "{content_type}"
        );
    }
}

pub fn settings() -> Settings {
    Settings {
        listen: "127.0.0.1:0".into(),
        public_url: None,
        database_url: None,
        ssim_base_url: None,
        wsim_base_url: None,
        gateway_client_id: "sacp-gateway".into(),
        gateway_client_secret: None,
        introspection_client_id: None,
        introspection_client_secret: None,
        ssim_token: None,
        bootstrap_api_key: Some(TEST_KEY.to_owned().into()),
        admin_token: Some(ADMIN_TOKEN.to_owned().into()),
        token_sealing_key: Some(crate::support::SEALING_KEY.to_owned().into()),
        mcp_allowed_origins: Vec::new(),
        upstream_timeout_ms: 5_000,
        // Fault tests inject runs of upstream failures; the breaker test sets its own.
        breaker_failures: 1_000_000,
        breaker_cool_down_ms: 5_000,
        // Upstream-failure tests read the catalog right after changing the store's faults;
        // the catalog-cache tests turn it on.
        catalog_cache_ttl_ms: 0,
        db_pool_size: 16,
        workers: Some(2),
        log_format: "text".into(),
        metrics_listen: None,
        otlp_endpoint: None,
        retention_secs: 30 * 24 * 3600,
        audit_retention_secs: 365 * 24 * 3600,
        // Generous gateway-wide limits: the rate-limit tests set their own.
        limits: LimitArgs {
            org_per_minute: 1_000_000,
            user_per_minute: 1_000_000,
            writes_per_minute: 1_000_000,
            completions_per_minute: 1_000_000,
            checkouts_per_day: 1_000_000,
            anonymous_per_minute: None,
            max_in_flight: 4_096,
            max_in_flight_per_org: None,
            body_timeout_ms: 10_000,
        },
    }
}

/// Every log line of a test process, once [`CapturedLogs::install`]ed.
#[derive(Clone, Default)]
pub struct CapturedLogs(pub std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLogs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLogs {
    /// Sends this process's log lines at `filter` here (instead of the test's output). Once
    /// per process: each test runs in a process of its own under nextest.
    pub fn install(filter: &str) -> CapturedLogs {
        let logs = CapturedLogs::default();
        let writer = logs.clone();
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .try_init()
            .expect("this test process logs to the capture");
        logs
    }

    /// What was logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Starts a sandbox gateway whose wallet asks to be polled every second (instead of 5 s) so
/// that approval tests run fast.
pub async fn spawn_app() -> TestApp {
    spawn_with_faults(Faults {
        poll_interval_secs: Some(1),
        ..Faults::default()
    })
    .await
}

pub async fn spawn_with_faults(wallet_faults: Faults) -> TestApp {
    spawn_app_with(settings(), wallet_faults).await
}

/// Starts a sandbox gateway with these settings and wallet faults.
pub async fn spawn_app_with(settings: Settings, wallet_faults: Faults) -> TestApp {
    // Gateway logs go to the test's output (shown for failing tests); RUST_LOG filters them.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
    let running = sacp_server::start(&settings).await.expect("gateway starts");
    // The shared test key gets room for load tests (1000 concurrent polls); keys made by the
    // rate-limit tests keep their own limits.
    let test_key = sacp_domain::access::key_id_of(TEST_KEY).expect("test key id");
    running
        .gateway
        .keys()
        .update(
            test_key.as_str(),
            &sacp_app::KeyChanges {
                requests_per_minute: Some(1_000_000),
                daily_quota: Some(100_000_000),
                ..Default::default()
            },
        )
        .await
        .expect("test key limits raised");
    let sims = running.simulators.clone().expect("sandbox simulators");
    sims.wallet.set_faults(wallet_faults);
    let url = running.public_url.clone();
    let gateway = running.gateway.clone();
    let http = http_client();
    let doc: Value = http
        .get(format!("{url}/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    TestApp {
        url,
        gateway,
        sims,
        http,
        running: Some(running),
        spec: Arc::new(Spec::new(doc)),
        seen: Arc::default(),
    }
}

impl TestApp {
    /// Where the scraper's `/metrics` listener is bound, when the settings asked for one.
    pub fn metrics_address(&self) -> Option<std::net::SocketAddr> {
        self.running.as_ref().and_then(|r| r.metrics_address)
    }

    /// Sends a request and checks the answer against the OpenAPI document.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        self.call_with(method, path, body, &[]).await
    }

    pub async fn call_with(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.url));
        if let Some(body) = body {
            request = request.json(&body);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.finish(method, path, request).await
    }

    /// Sends a prepared request (odd bodies, headers) and checks the answer.
    pub async fn finish(
        &self,
        method: Method,
        path: &str,
        request: reqwest::RequestBuilder,
    ) -> Answer {
        let response = request.send().await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        self.seen.lock().unwrap().push(text.clone());
        let body: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        assert!(
            headers.contains_key("x-request-id"),
            "every answer carries X-Request-Id"
        );
        let content_type = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        self.spec.check(&method, path, status, &content_type, &body);
        Answer {
            status,
            headers,
            body,
        }
    }

    /// Sends a request with the person's wallet token as `Authorization: Bearer`.
    pub async fn as_user(&self, method: Method, path: &str, token: &str) -> Answer {
        let bearer = format!("Bearer {token}");
        self.call_with(method, path, None, &[("authorization", bearer.as_str())])
            .await
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Answer {
        self.call(Method::PATCH, path, Some(body)).await
    }

    /// Creates a checkout for `quantity` Ethiopian Yirgacheffe.
    pub async fn create_checkout(&self, quantity: u32) -> String {
        let created = self
            .post(
                "/checkout",
                json!({"items": [{"product_id": ETHIOPIAN_YIRGACHEFFE, "quantity": quantity}]}),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        created.str("/id")
    }

    /// Adds the seed conversation's buyer and shipping address.
    pub async fn add_buyer_and_shipping(&self, id: &str) -> Answer {
        let updated = self.patch(&format!("/checkout/{id}"), seed_details()).await;
        assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
        assert_eq!(updated.body["status"], "ready_for_payment");
        updated
    }

    /// A ready checkout of `quantity` Ethiopian Yirgacheffe.
    pub async fn ready_checkout(&self, quantity: u32) -> String {
        let id = self.create_checkout(quantity).await;
        self.add_buyer_and_shipping(&id).await;
        id
    }

    /// Completes as a guest; returns the 202 body.
    pub async fn complete_as_guest(&self, id: &str) -> Answer {
        let answer = self
            .call(Method::POST, &format!("/checkout/{id}/complete"), None)
            .await;
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
        assert_eq!(answer.body["status"], "authorization_required");
        answer
    }

    /// Acts as the person in a browser without JavaScript: opens the authorization URL,
    /// reads the form, submits it with the chosen button.
    pub async fn decide_in_wallet(&self, authorization_url: &str, approve: bool) {
        let page = self.http.get(authorization_url).send().await.unwrap();
        assert!(page.status().is_success());
        let html = page.text().await.unwrap();
        let form = regex::Regex::new(r#"<form method="post" action="([^"]*)">"#).unwrap();
        let action = form
            .captures(&html)
            .unwrap_or_else(|| panic!("no approval form in {html}"))[1]
            .to_owned();
        let code = regex::Regex::new(r#"name="user_code" value="([^"]+)""#)
            .unwrap()
            .captures(&html)
            .unwrap()[1]
            .to_owned();
        let button = if approve {
            r#"name="decision" value="approve""#
        } else {
            r#"name="decision" value="reject""#
        };
        assert!(html.contains(button));
        let target = reqwest::Url::parse(authorization_url)
            .unwrap()
            .join(&action)
            .unwrap();
        let decision = if approve { "approve" } else { "reject" };
        let result = self
            .http
            .post(target)
            .form(&[("user_code", code.as_str()), ("decision", decision)])
            .send()
            .await
            .unwrap();
        assert!(
            result.status().is_success(),
            "{}",
            result.text().await.unwrap()
        );
    }

    /// Polls a payment status until it is no longer pending.
    pub async fn poll_until_settled(&self, poll_endpoint: &str) -> Answer {
        let path = poll_endpoint
            .strip_prefix(&self.url)
            .unwrap_or(poll_endpoint)
            .to_owned();
        let mut last = Value::Null;
        for _ in 0..100 {
            let answer = self.get(&path).await;
            assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
            // `approved`: the person approved and the order is being placed.
            if !matches!(answer.body["status"].as_str(), Some("pending" | "approved")) {
                return answer;
            }
            last = answer.body;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("payment still pending after 20 s: {last}");
    }

    /// A user token from the sandbox wallet with this per-transaction limit.
    pub fn user_token(&self, per_transaction_cents: Option<i64>) -> String {
        let limit = per_transaction_cents
            .map(|c| sacp_domain::Money::from_minor(c, sacp_domain::Currency::CAD));
        self.sims.wallet.issue_user_token(limit).access_token
    }

    /// A user token of another wallet user than the demo one.
    pub fn user_token_of(&self, user: &str) -> String {
        self.sims
            .wallet
            .issue_user_token_for(user, None)
            .access_token
    }

    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.stop().await;
        }
    }
}

/// The buyer and shipping address of the seed conversation.
pub fn seed_details() -> Value {
    json!({
        "buyer": {"name": "John Doe", "email": "john@example.com"},
        "fulfillment": {"type": "shipping", "address": {
            "street": "123 Main St", "city": "Toronto", "state": "ON", "postal_code": "M5V 1A1", "country": "CA"
        }},
    })
}

/// The served OpenAPI document, used to check answers.
struct Spec {
    doc: Value,
    routes: Vec<(regex::Regex, String)>,
    validators: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
}

fn escape_pointer(segment: &str) -> String {
    // RFC 6901 §6: a pointer in a URI fragment is also percent-encoded.
    segment
        .replace('~', "~0")
        .replace('/', "~1")
        .replace('{', "%7B")
        .replace('}', "%7D")
}

impl Spec {
    fn new(doc: Value) -> Spec {
        assert!(
            doc["openapi"]
                .as_str()
                .is_some_and(|v| v.starts_with("3.1")),
            "OpenAPI 3.1: {}",
            doc["openapi"]
        );
        let routes = doc["paths"]
            .as_object()
            .unwrap()
            .keys()
            .map(|template| {
                let pattern = regex::Regex::new(r"\{[^}]+\}")
                    .unwrap()
                    .replace_all(
                        &regex::escape(template)
                            .replace(r"\{", "{")
                            .replace(r"\}", "}"),
                        "[^/]+",
                    )
                    .into_owned();
                (
                    regex::Regex::new(&format!("^{pattern}$")).unwrap(),
                    template.clone(),
                )
            })
            .collect();
        Spec {
            doc,
            routes,
            validators: Mutex::default(),
        }
    }

    /// Fails the test unless the answer is documented and its body fits the schema.
    fn check(
        &self,
        method: &Method,
        path: &str,
        status: StatusCode,
        content_type: &str,
        body: &Value,
    ) {
        let path = path.split('?').next().unwrap_or(path);
        let Some((_, template)) = self.routes.iter().find(|(re, _)| re.is_match(path)) else {
            // Routes outside the document (simulators, docs) are not checked.
            return;
        };
        let method = match method.as_str() {
            // HEAD answers as GET does, without a body.
            "HEAD" => "get".to_owned(),
            other => other.to_lowercase(),
        };
        if self.doc["paths"][template].get(&method).is_none() {
            if method == "options" {
                assert_eq!(status, StatusCode::NO_CONTENT, "OPTIONS {template}");
                return;
            }
            // A method the document does not offer: the API must refuse it (405).
            assert_eq!(
                status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{} {template}",
                method.to_uppercase()
            );
            return;
        }
        let responses = &self.doc["paths"][template][&method]["responses"];
        let code = status.as_u16().to_string();
        assert!(
            responses.get(&code).is_some(),
            "{} {template} answered {code}, which the OpenAPI document does not list: {body}",
            method.to_uppercase()
        );
        let media = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_owned();
        let content = &responses[&code]["content"];
        if content.is_null() {
            return;
        }
        assert!(
            content.get(&media).is_some(),
            "{template} {code} answered {media}, documented: {content}"
        );
        if content[&media]["schema"].is_null() || !media.contains("json") {
            return;
        }
        let pointer = format!(
            "#/paths/{}/{method}/responses/{code}/content/{}/schema",
            escape_pointer(template),
            escape_pointer(&media)
        );
        let validator = {
            let mut cache = self.validators.lock().unwrap();
            cache
                .entry(pointer.clone())
                .or_insert_with(|| {
                    let schema = json!({"$ref": pointer, "paths": self.doc["paths"], "components": self.doc["components"]});
                    Arc::new(jsonschema::draft202012::new(&schema).unwrap_or_else(|e| panic!("schema {pointer}: {e}")))
                })
                .clone()
        };
        let errors: Vec<String> = validator
            .iter_errors(body)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{} {template} {code} does not match the OpenAPI document: {errors:?}\n{body}",
            method.to_uppercase()
        );
    }
}
