//! What an AI agent (and the person at the wallet) sends: the units of work the load
//! generator repeats. Each unit checks the answer, so a run that only produces errors
//! cannot pass for a fast one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Client, RequestBuilder, StatusCode};
use serde_json::{Value, json};

/// The Ethiopian Yirgacheffe of the simulated store (CA$18.99).
pub const PRODUCT_ID: &str = "7f3c9a52-1d8e-4b6a-9c2f-0e5d8b1a4c71";

/// The bench's admin token (the gateways it starts accept it).
pub const ADMIN_TOKEN: &str = "bench-admin-token-of-at-least-32-characters";

/// Sends a request and checks its status; returns the body.
pub async fn expect(request: RequestBuilder, status: StatusCode) -> Result<bytes::Bytes, String> {
    let answer = request
        .send()
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let got = answer.status();
    let body = answer
        .bytes()
        .await
        .map_err(|e| format!("body unreadable: {e}"))?;
    if got == status {
        Ok(body)
    } else {
        Err(format!(
            "expected {status}, got {got}: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        ))
    }
}

/// Like [`expect`], parsing the body as JSON.
pub async fn expect_json(request: RequestBuilder, status: StatusCode) -> Result<Value, String> {
    let body = expect(request, status).await?;
    serde_json::from_slice(&body).map_err(|e| format!("answer is not JSON: {e}"))
}

/// An HTTP client for load: keep-alive connections, no proxy, no redirects.
pub fn client() -> Result<Client, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(4096)
        // Under the servers' 5 s keep-alive, so a connection is never reused as it closes.
        .pool_idle_timeout(Duration::from_secs(4))
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// Creates `count` integration keys at a gateway, each in its own organisation (so the
/// organisation limit of one does not cap the run), with the highest per-key limits.
pub async fn create_keys(
    http: &Client,
    gateway: &str,
    count: usize,
) -> Result<Vec<String>, String> {
    let mut keys = Vec::with_capacity(count);
    for n in 0..count {
        let key = expect_json(
            http.post(format!("{gateway}/admin/keys"))
                .bearer_auth(ADMIN_TOKEN)
                .json(&json!({
                    "name": format!("bench agent {n}"),
                    "org": format!("bench-org-{n}"),
                    "scopes": ["catalog:read", "search:read", "checkout:read", "checkout:write"],
                    "requests_per_minute": 1_000_000,
                    "daily_quota": 100_000_000,
                })),
            StatusCode::CREATED,
        )
        .await?;
        let secret = key["key"]
            .as_str()
            .ok_or_else(|| format!("no secret in {key}"))?;
        keys.push(secret.to_owned());
    }
    Ok(keys)
}

/// The header integration keys are sent in.
const API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// An agent at one gateway, spreading its workers over several keys.
#[derive(Debug, Clone)]
pub struct Agent {
    http: Client,
    gateway: String,
    keys: Vec<HeaderValue>,
}

/// A unique idempotency key per call.
fn idempotency_key() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "bench-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

impl Agent {
    /// An agent at `gateway` using `keys` round-robin by worker.
    pub fn new(http: Client, gateway: &str, keys: &[String]) -> Result<Agent, String> {
        let keys = keys
            .iter()
            .map(|k| HeaderValue::from_str(k).map_err(|e| format!("bad key: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err("an agent needs at least one key".into());
        }
        Ok(Agent {
            http,
            gateway: gateway.to_owned(),
            keys,
        })
    }

    fn headers(&self, worker: usize) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(API_KEY, self.key(worker));
        headers
    }

    /// The worker's key.
    fn key(&self, worker: usize) -> HeaderValue {
        self.keys[worker % self.keys.len()].clone()
    }

    fn get(&self, worker: usize, path: &str) -> RequestBuilder {
        self.http
            .get(format!("{}{path}", self.gateway))
            .headers(self.headers(worker))
    }

    fn post(&self, worker: usize, path: &str) -> RequestBuilder {
        self.http
            .post(format!("{}{path}", self.gateway))
            .headers(self.headers(worker))
    }

    /// `GET path` with the worker's key, expecting 200.
    pub async fn read(&self, worker: usize, path: &str) -> Result<(), String> {
        expect(self.get(worker, path), StatusCode::OK)
            .await
            .map(drop)
    }

    /// `GET url` (the gateway's whole URL, made once by the caller) with the worker's key,
    /// expecting 200: the request is built as lean as an unkeyed one (no URL formatted, no
    /// header map merged), so that comparing the two measures the answers, not the load
    /// generator's bookkeeping.
    pub async fn read_url(&self, worker: usize, url: &str) -> Result<(), String> {
        expect(
            self.http.get(url).header(API_KEY, self.key(worker)),
            StatusCode::OK,
        )
        .await
        .map(drop)
    }

    /// `GET path` with the worker's key and `If-None-Match: etag`, expecting 304.
    pub async fn revalidate(&self, worker: usize, path: &str, etag: &str) -> Result<(), String> {
        expect(
            self.get(worker, path).header("if-none-match", etag),
            StatusCode::NOT_MODIFIED,
        )
        .await
        .map(drop)
    }

    /// The `ETag` the gateway gives `path`.
    pub async fn etag(&self, path: &str) -> Result<String, String> {
        let answer = self
            .get(0, path)
            .send()
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        answer
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| format!("no ETag on {path}"))
    }

    /// `POST /checkout` with one coffee; with an `Idempotency-Key` when `idempotent`.
    /// Returns the checkout id.
    pub async fn create_checkout(&self, worker: usize, idempotent: bool) -> Result<String, String> {
        let mut request = self
            .post(worker, "/checkout")
            .json(&json!({"items": [{"product_id": PRODUCT_ID, "quantity": 1}]}));
        if idempotent {
            request = request.header("idempotency-key", idempotency_key());
        }
        let checkout = expect_json(request, StatusCode::CREATED).await?;
        checkout["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("no id in {checkout}"))
    }

    /// Creates a checkout and adds buyer and address: ready for payment. Returns its id.
    pub async fn ready_checkout(&self, worker: usize, idempotent: bool) -> Result<String, String> {
        let id = self.create_checkout(worker, idempotent).await?;
        let updated = expect_json(
            self.http
                .patch(format!("{}/checkout/{id}", self.gateway))
                .headers(self.headers(worker))
                .json(&json!({
                    "buyer": {"name": "Bench Buyer", "email": "bench@example.com"},
                    "fulfillment": {"type": "shipping", "address": {
                        "street": "123 Main St", "city": "Toronto", "state": "ON",
                        "postal_code": "M5V 1A1", "country": "CA"}},
                })),
            StatusCode::OK,
        )
        .await?;
        if updated["status"] != "ready_for_payment" {
            return Err(format!("checkout not ready for payment: {updated}"));
        }
        Ok(id)
    }

    /// `POST /checkout/{id}/complete` as a guest: the device authorization the person is
    /// asked to approve.
    pub async fn start_payment(
        &self,
        worker: usize,
        id: &str,
        idempotent: bool,
    ) -> Result<Payment, String> {
        let mut request = self.post(worker, &format!("/checkout/{id}/complete"));
        if idempotent {
            request = request.header("idempotency-key", idempotency_key());
        }
        let authorization = expect_json(request, StatusCode::ACCEPTED).await?;
        let field = |name: &str| {
            authorization[name]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("no {name} in {authorization}"))
        };
        Ok(Payment {
            user_code: field("user_code")?,
            poll_endpoint: field("poll_endpoint")?,
            interval: authorization["interval"].as_u64().unwrap_or(5),
        })
    }

    /// Create, update, complete, then cancel: a checkout whose payment was asked for and
    /// given up (the authorization ends at once). Without `Idempotency-Key`s, whose answers
    /// are kept 24 h whatever the retention.
    pub async fn give_up(&self, worker: usize) -> Result<(), String> {
        let id = self.ready_checkout(worker, false).await?;
        self.start_payment(worker, &id, false).await?;
        expect(
            self.post(worker, &format!("/checkout/{id}/cancel")),
            StatusCode::OK,
        )
        .await
        .map(drop)
    }

    /// The whole guest checkout: create, add buyer and address, complete, approve at the
    /// wallet as the person would (the page's form), then poll the payment status at the
    /// announced interval until the order is placed.
    pub async fn buy(&self, worker: usize, wallet: &str) -> Result<(), String> {
        let id = self.ready_checkout(worker, true).await?;
        let Payment {
            user_code,
            poll_endpoint,
            interval,
        } = self.start_payment(worker, &id, true).await?;
        expect(
            self.http
                .post(format!("{wallet}/m/device"))
                .form(&[("user_code", user_code.as_str()), ("decision", "approve")]),
            StatusCode::OK,
        )
        .await?;
        for _ in 0..60 {
            tokio::time::sleep(Duration::from_secs(interval)).await;
            let status = expect_json(
                self.http
                    .get(format!("{}{poll_endpoint}", self.gateway))
                    .headers(self.headers(worker)),
                StatusCode::OK,
            )
            .await?;
            match status["status"].as_str() {
                Some("completed") => return Ok(()),
                Some("pending" | "approved") => continue,
                _ => return Err(format!("payment did not complete: {status}")),
            }
        }
        Err(format!("payment of {id} still pending after 60 polls"))
    }
}

/// A payment waiting for the person's approval.
#[derive(Debug, Clone)]
pub struct Payment {
    /// The code the person confirms in the wallet.
    pub user_code: String,
    /// Where the agent polls the payment's status.
    pub poll_endpoint: String,
    /// Seconds between the agent's polls.
    pub interval: u64,
}
