//! Shared test plumbing: simulators served on loopback, harnesses for the contract suites.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpServer};
use async_trait::async_trait;
use sacp_adapters::HttpConfig;
use sacp_adapters::http_store::HttpStore;
use sacp_adapters::http_wallet::{HttpWallet, WalletCredentials};
use sacp_domain::{Money, ProductId};
use sacp_ports::clock::SystemClock;
use sacp_ports::contract::upstream::{CatalogFixture, Fault, Upstream, UpstreamHarness};
use sacp_ports::{BearerToken, Store, Wallet};
use sacp_sim::Simulators;
use sacp_sim::catalog::{ETHIOPIAN_YIRGACHEFFE, SOLD_OUT_GRINDER};
use sacp_sim::fake::{FakeStore, FakeWallet};
use sacp_sim::faults::Faults;

/// A clock the test moves (seconds since the epoch).
#[derive(Debug, Default)]
pub struct ManualClock(pub std::sync::atomic::AtomicI64);

impl ManualClock {
    /// A clock at `epoch_seconds`.
    pub fn at(epoch_seconds: i64) -> ManualClock {
        ManualClock(std::sync::atomic::AtomicI64::new(epoch_seconds))
    }

    /// Moves the clock `seconds` on.
    pub fn advance(&self, seconds: i64) {
        self.0
            .fetch_add(seconds, std::sync::atomic::Ordering::SeqCst);
    }
}

impl sacp_ports::Clock for ManualClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        use chrono::TimeZone;
        chrono::Utc
            .timestamp_opt(self.0.load(std::sync::atomic::Ordering::SeqCst), 0)
            .unwrap()
    }
}

/// How long clients under test wait for an upstream; `Fault::SlowerThanTimeout` exceeds it.
pub const CLIENT_TIMEOUT: Duration = Duration::from_millis(400);

/// The sandbox catalog as the contract suites see it.
pub fn sandbox_catalog() -> CatalogFixture {
    CatalogFixture {
        product_id: ProductId::parse(ETHIOPIAN_YIRGACHEFFE).unwrap(),
        product_price: Money::from_minor(1899, sacp_domain::Currency::CAD),
        unavailable_product_id: ProductId::parse(SOLD_OUT_GRINDER).unwrap(),
        search_term: "coffee".into(),
        search_hits: 3,
        category: "tea".into(),
        category_size: 2,
        catalog_size: sacp_sim::catalog::seed().len(),
    }
}

fn faults_for(fault: Fault) -> Faults {
    match fault {
        Fault::None => Faults::default(),
        Fault::ServerErrors => Faults {
            error_rate: 1.0,
            ..Faults::default()
        },
        Fault::MalformedBodies => Faults {
            malformed_rate: 1.0,
            ..Faults::default()
        },
        Fault::SlowerThanTimeout => Faults {
            latency_ms: u64::try_from(CLIENT_TIMEOUT.as_millis()).unwrap() * 3,
            ..Faults::default()
        },
        Fault::SlowDown => Faults {
            slow_down: true,
            ..Faults::default()
        },
        Fault::ShortExpiry(seconds) => Faults {
            device_code_ttl_secs: Some(seconds),
            ..Faults::default()
        },
        Fault::NoPaymentMethod => Faults {
            no_payment_method: true,
            ..Faults::default()
        },
        Fault::PaymentProviderError => Faults {
            payment_provider_error: true,
            ..Faults::default()
        },
        Fault::SuspendedClient => Faults {
            suspended_client: true,
            ..Faults::default()
        },
    }
}

/// Simulators served over HTTP on a free loopback port, for as long as the test runs.
pub struct SimServer {
    pub base: String,
    pub simulators: Simulators,
}

/// Each request the simulators received: its path and its `traceparent` (empty if none).
pub type Seen = Arc<std::sync::Mutex<Vec<(String, String)>>>;

impl SimServer {
    pub async fn start() -> SimServer {
        SimServer::serve(None).await
    }

    /// Simulators that keep every request's path and `traceparent`.
    pub async fn start_recording() -> (SimServer, Seen) {
        let seen: Seen = Arc::default();
        (SimServer::serve(Some(seen.clone())).await, seen)
    }

    async fn serve(recorder: Option<Seen>) -> SimServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let simulators = Simulators::sandbox(
            &format!("{base}/ssim"),
            &format!("{base}/wsim"),
            Arc::new(SystemClock),
        );
        let served = simulators.clone();
        let server = HttpServer::new(move || {
            let recorder = recorder.clone();
            App::new()
                .wrap(actix_web::middleware::from_fn(
                    move |request: actix_web::dev::ServiceRequest,
                          next: actix_web::middleware::Next<actix_web::body::BoxBody>| {
                        if let Some(seen) = &recorder {
                            let traceparent = request
                                .headers()
                                .get("traceparent")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default()
                                .to_owned();
                            seen.lock()
                                .unwrap()
                                .push((request.path().to_owned(), traceparent));
                        }
                        next.call(request)
                    },
                ))
                .configure(sacp_sim::http::configure(
                    &served,
                    "",
                    sacp_sim::http::Exposure::Open,
                ))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        SimServer { base, simulators }
    }

    pub fn store_url(&self) -> String {
        format!("{}/ssim", self.base)
    }

    pub fn wallet_url(&self) -> String {
        format!("{}/wsim", self.base)
    }
}

/// The ports as in-process fakes over the simulator cores.
pub struct FakeHarness {
    simulators: Simulators,
    store: FakeStore,
    wallet: FakeWallet,
}

impl FakeHarness {
    pub fn new() -> FakeHarness {
        let simulators =
            Simulators::sandbox("http://sim/ssim", "http://sim/wsim", Arc::new(SystemClock));
        FakeHarness {
            store: FakeStore::new(simulators.store.clone(), CLIENT_TIMEOUT),
            wallet: FakeWallet::new(simulators.wallet.clone(), CLIENT_TIMEOUT),
            simulators,
        }
    }
}

#[async_trait]
impl UpstreamHarness for FakeHarness {
    fn store(&self) -> &dyn Store {
        &self.store
    }
    fn wallet(&self) -> &dyn Wallet {
        &self.wallet
    }
    fn catalog(&self) -> CatalogFixture {
        sandbox_catalog()
    }
    async fn user_token(&self, limit: Option<Money>) -> BearerToken {
        BearerToken::new(self.simulators.wallet.issue_user_token(limit).access_token)
    }
    async fn decide_device(&self, user_code: &str, approve: bool) {
        self.simulators
            .wallet
            .decide_device(user_code, approve)
            .unwrap();
    }
    async fn decide_step_up(&self, step_up_id: &str, approve: bool) {
        self.simulators
            .wallet
            .decide_step_up(step_up_id, approve)
            .unwrap();
    }
    async fn set_fault(&self, upstream: Upstream, fault: Fault) {
        match upstream {
            Upstream::Store => self.simulators.store.set_faults(faults_for(fault)),
            Upstream::Wallet => self.simulators.wallet.set_faults(faults_for(fault)),
        }
    }
}

/// The HTTP adapters talking to the simulators over loopback; the harness acts as the person
/// through the wallet's HTML pages and sets faults through the simulators' control API.
pub struct HttpHarness {
    server: SimServer,
    store: HttpStore,
    wallet: HttpWallet,
    browser: reqwest::Client,
}

impl HttpHarness {
    pub async fn start() -> HttpHarness {
        let server = SimServer::start().await;
        let config = HttpConfig {
            connect_timeout: Duration::from_secs(1),
            request_timeout: CLIENT_TIMEOUT,
            // The fault-mapping suites inject long runs of failures on purpose.
            breaker: sacp_adapters::BreakerConfig {
                failure_threshold: u32::MAX,
                ..Default::default()
            },
        };
        let wallet_config = server.simulators.wallet.config().clone();
        let credentials = WalletCredentials {
            client_id: wallet_config.client_id,
            client_secret: Some(wallet_config.client_secret.into()),
            introspection_client_id: Some(wallet_config.introspection_client_id),
            introspection_client_secret: Some(wallet_config.introspection_client_secret.into()),
        };
        HttpHarness {
            store: HttpStore::new(&server.store_url(), config, None).unwrap(),
            wallet: HttpWallet::new(&server.wallet_url(), config, credentials).unwrap(),
            browser: reqwest::Client::new(),
            server,
        }
    }
}

#[async_trait]
impl UpstreamHarness for HttpHarness {
    fn store(&self) -> &dyn Store {
        &self.store
    }
    fn wallet(&self) -> &dyn Wallet {
        &self.wallet
    }
    fn catalog(&self) -> CatalogFixture {
        sandbox_catalog()
    }
    async fn user_token(&self, limit: Option<Money>) -> BearerToken {
        let body = match limit {
            Some(limit) => {
                serde_json::json!({"per_transaction": limit.to_decimal_string(), "currency": limit.currency().code()})
            }
            None => serde_json::json!({}),
        };
        let token: serde_json::Value = self
            .browser
            .post(format!("{}/sim/users/token", self.server.wallet_url()))
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        BearerToken::new(token["access_token"].as_str().unwrap())
    }
    async fn decide_device(&self, user_code: &str, approve: bool) {
        // As a browser would: open the page, then submit its form.
        let page_url = format!("{}/m/device?code={user_code}", self.server.wallet_url());
        let page = self
            .browser
            .get(&page_url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            page.contains("name=\"decision\" value=\"approve\""),
            "{page}"
        );
        let decision = if approve { "approve" } else { "reject" };
        let response = self
            .browser
            .post(format!("{}/m/device", self.server.wallet_url()))
            .form(&[("user_code", user_code), ("decision", decision)])
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
    }
    async fn decide_step_up(&self, step_up_id: &str, approve: bool) {
        let decision = if approve { "approve" } else { "reject" };
        let response = self
            .browser
            .post(format!(
                "{}/m/step-up/{step_up_id}",
                self.server.wallet_url()
            ))
            .form(&[("decision", decision)])
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
    }
    async fn set_fault(&self, upstream: Upstream, fault: Fault) {
        let url = match upstream {
            Upstream::Store => self.server.store_url(),
            Upstream::Wallet => self.server.wallet_url(),
        };
        let response = self
            .browser
            .put(format!("{url}/sim/faults"))
            .json(&faults_for(fault))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
    }
}

/// Step-up ports in memory, with a key drawn for the test.
pub fn memory_step_ups() -> sacp_app::StepUpPorts {
    sacp_app::StepUpPorts {
        watches: Arc::new(sacp_adapters::memory_step_up::MemoryStepUpWatches::default()),
        sealer: Arc::new(sacp_adapters::sealing::AesGcmSealer::ephemeral().unwrap()),
    }
}

/// The sealing key replicas share in tests.
pub const SEALING_KEY: &str = "5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed";

/// A gateway replica on `storage` (every port on PostgreSQL) and the simulators' in-process
/// fakes, on `clock`, sealing step-up tokens with the 64-hex-digit `sealing_key`.
pub fn pg_replica(
    storage: &Arc<sacp_adapters::pg::PgStorage>,
    sims: &Simulators,
    clock: Arc<dyn sacp_ports::Clock>,
    sealing_key: &str,
) -> sacp_app::Gateway {
    sacp_app::Gateway::new(
        Arc::new(FakeStore::new(sims.store.clone(), Duration::from_secs(5))),
        Arc::new(FakeWallet::new(sims.wallet.clone(), Duration::from_secs(5))),
        storage.clone(),
        storage.clone(),
        storage.clone(),
        sacp_app::GuardPorts {
            counters: storage.clone(),
            switches: storage.clone(),
            idempotency: storage.clone(),
            traffic: storage.clone(),
            audit: storage.clone(),
        },
        clock,
        Arc::new(sacp_adapters::random::OsRandom),
        sacp_app::StepUpPorts {
            watches: storage.clone(),
            sealer: Arc::new(sacp_adapters::sealing::AesGcmSealer::from_hex(sealing_key).unwrap()),
        },
        sacp_app::GatewayConfig::default(),
    )
}

/// Waits, if need be, until at least ten seconds remain in the current minute: a test that
/// spends a per-minute limit then does so within one fixed window (a request after the minute
/// turns is counted afresh, and the test would see a refusal it expects not come).
pub async fn within_one_minute_window() {
    while chrono::Timelike::second(&chrono::Utc::now()) >= 50 {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
