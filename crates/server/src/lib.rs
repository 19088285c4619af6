//! Wiring of the `sacp-gateway` binary: picks adapters from the configuration, mounts the
//! sandbox simulators when no upstream is configured, starts the HTTP server and the
//! background driver. The binary and the integration tests both start the gateway here.

pub mod config;
pub mod keys;
pub mod logs;
pub mod telemetry;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer};
use sacp_adapters::http_store::HttpStore;
use sacp_adapters::http_wallet::{HttpWallet, WalletCredentials};
use sacp_adapters::memory::{MemoryApiKeys, MemoryAuditLog, MemoryAuthorizations, MemoryCheckouts};
use sacp_adapters::memory_guard::{
    MemoryIdempotency, MemoryRateCounters, MemorySwitchBoard, MemoryTrafficLog,
};
use sacp_adapters::memory_step_up::MemoryStepUpWatches;
use sacp_adapters::pg::{PgConfig, PgStorage};
use sacp_adapters::random::OsRandom;
use sacp_adapters::sealing::AesGcmSealer;
use sacp_adapters::{BreakerConfig, HttpConfig};
use sacp_api::{ApiState, request_id};
use sacp_app::driver::{self, DriverConfig};
use sacp_app::{
    BOOTSTRAP_KEY_NAME, Gateway, GatewayConfig, GuardPorts, StepUpPorts, integration_scopes,
};
use sacp_domain::access::{KeyLimits, NewKey};
use sacp_ports::clock::SystemClock;
use sacp_ports::{
    ApiKeyRepository, AuthorizationRepository, CheckoutRepository, StepUpWatches, TokenSealer,
};
use sacp_sim::Simulators;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{ConfigError, Settings, Upstreams};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration cannot run.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// An upstream URL is invalid.
    #[error("upstream: {0}")]
    Upstream(String),
    /// The database could not be opened or migrated.
    #[error("storage: {0}")]
    Storage(String),
    /// The bootstrap key could not be set up.
    #[error("bootstrap API key: {0}")]
    Bootstrap(String),
    /// Span export could not be set up.
    #[error("telemetry: {0}")]
    Telemetry(String),
    /// The listener could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// The address.
        address: String,
        /// Why.
        source: std::io::Error,
    },
}

/// A running gateway.
#[derive(Debug)]
pub struct Running {
    /// The bound address.
    pub address: SocketAddr,
    /// The base URL of links it returns.
    pub public_url: String,
    /// The simulators, in sandbox mode.
    pub simulators: Option<Simulators>,
    /// `embedded storage` or `PostgreSQL storage`.
    pub storage: &'static str,
    /// The API key generated in sandbox mode (no `SACP_BOOTSTRAP_API_KEY`), shown once.
    pub demo_key: Option<String>,
    /// The use cases (for operator tooling and tests in the same process).
    pub gateway: Gateway,
    /// Where the scraper's `/metrics` listener is bound (`SACP_METRICS_LISTEN`).
    pub metrics_address: Option<SocketAddr>,
    server: ServerHandle,
    metrics_server: Option<ServerHandle>,
    tracer: opentelemetry_sdk::trace::SdkTracerProvider,
    served: JoinHandle<std::io::Result<()>>,
    driver: JoinHandle<()>,
    housekeeping: JoinHandle<()>,
    step_ups: JoinHandle<()>,
    /// The change listener (PostgreSQL storage); stops when dropped.
    _changes: Option<sacp_adapters::pg_listen::ChangeFeed>,
    shutdown: watch::Sender<bool>,
}

impl Running {
    /// Waits until the server stops (SIGTERM or ctrl-c start a graceful shutdown), then stops
    /// the driver.
    pub async fn wait(self) -> std::io::Result<()> {
        let result = match self.served.await {
            Ok(result) => result,
            Err(join) => Err(std::io::Error::other(join)),
        };
        let _ = self.shutdown.send(true);
        let _ = self.driver.await;
        let _ = self.housekeeping.await;
        let _ = self.step_ups.await;
        if let Some(metrics) = &self.metrics_server {
            metrics.stop(true).await;
        }
        // Sends the spans still batched (a no-op without an exporter).
        let tracer = self.tracer.clone();
        let _ = tokio::task::spawn_blocking(move || tracer.shutdown()).await;
        result
    }

    /// Stops gracefully (for tests and embedding).
    pub async fn stop(self) {
        self.server.stop(true).await;
        let _ = self.wait().await;
    }
}

/// The HTTP worker threads the server runs: `SACP_WORKERS`, else actix's default (one per
/// available core).
fn http_workers(settings: &Settings) -> usize {
    settings.workers.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
    })
}

/// Opens the PostgreSQL storage of `settings` and applies pending migrations.
pub async fn migrate(settings: &Settings) -> Result<(PgStorage, Vec<String>), StartError> {
    let url = settings
        .database_url
        .as_ref()
        .ok_or(ConfigError::NoDatabase)?;
    let storage = PgStorage::connect(
        url.expose_secret(),
        PgConfig {
            max_connections: settings.db_pool_size,
            // The HTTP workers, and the thread of the background work.
            threads: http_workers(settings) + 1,
            ..PgConfig::default()
        },
    )
    .map_err(StartError::Storage)?;
    let applied = storage
        .migrate()
        .await
        .map_err(|e| StartError::Storage(e.to_string()))?;
    Ok((storage, applied))
}

/// The repositories: PostgreSQL when a database is configured (migrated at start), else
/// embedded memory.
struct Storage {
    checkouts: Arc<dyn CheckoutRepository>,
    authorizations: Arc<dyn AuthorizationRepository>,
    keys: Arc<dyn ApiKeyRepository>,
    guard: GuardPorts,
    step_up_watches: Arc<dyn StepUpWatches>,
    /// The PostgreSQL storage, for its pool gauges.
    pool: Option<Arc<PgStorage>>,
    kind: &'static str,
}

async fn storage(settings: &Settings) -> Result<Storage, StartError> {
    if settings.database_url.is_none() {
        // One idempotency store shared with the repositories that store answers with
        // their changes.
        let idempotency = Arc::new(MemoryIdempotency::default());
        return Ok(Storage {
            checkouts: Arc::new(MemoryCheckouts::sharing(idempotency.clone())),
            authorizations: Arc::new(MemoryAuthorizations::default()),
            keys: Arc::new(MemoryApiKeys::sharing(idempotency.clone())),
            guard: GuardPorts {
                counters: Arc::new(MemoryRateCounters::default()),
                switches: Arc::new(MemorySwitchBoard::default()),
                idempotency,
                traffic: Arc::new(MemoryTrafficLog::default()),
                audit: Arc::new(MemoryAuditLog::default()),
            },
            step_up_watches: Arc::new(MemoryStepUpWatches::default()),
            pool: None,
            kind: "embedded storage",
        });
    }
    let (storage, applied) = migrate(settings).await?;
    if !applied.is_empty() {
        tracing::info!(migrations = ?applied, "database migrated");
    }
    let storage = Arc::new(storage);
    Ok(Storage {
        checkouts: storage.clone(),
        authorizations: storage.clone(),
        keys: storage.clone(),
        guard: GuardPorts {
            counters: storage.clone(),
            switches: storage.clone(),
            idempotency: storage.clone(),
            traffic: storage.clone(),
            audit: storage.clone(),
        },
        step_up_watches: storage.clone(),
        pool: Some(storage),
        kind: "PostgreSQL storage",
    })
}

/// The sealer of tokens kept for watched step-ups: under the operator's key, or a key drawn
/// for this process (fine for embedded storage; on a shared database only this replica can
/// then open what it sealed, which the start says).
fn token_sealer(
    settings: &Settings,
    storage: &'static str,
) -> Result<Arc<dyn TokenSealer>, StartError> {
    if let Some(hex) = &settings.token_sealing_key {
        let sealer = AesGcmSealer::from_hex(hex.expose_secret()).map_err(ConfigError::from)?;
        return Ok(Arc::new(sealer));
    }
    if settings.database_url.is_some() {
        tracing::warn!(
            storage,
            "SACP_TOKEN_SEALING_KEY is not set: a step-up is finished without the agent only by the replica that started it; set the same key on every replica"
        );
    }
    let sealer = AesGcmSealer::ephemeral()
        .map_err(|e| StartError::Config(ConfigError::Randomness(e.to_string())))?;
    Ok(Arc::new(sealer))
}

/// Name of the key generated for the sandbox walkthrough.
const DEMO_KEY_NAME: &str = "sandbox demo";
/// Organisation of the sandbox's demo key.
const DEMO_KEY_ORG: &str = "sandbox";
/// How long a sandbox demo key lives.
const DEMO_KEY_LIFETIME: chrono::Duration = chrono::Duration::hours(24);

/// Makes the bootstrap key work: the operator's secret, or in sandbox mode a generated one
/// (returned, to be printed).
///
/// The operator's key is created once and never changed by a start: a key an operator
/// rotated or revoked stays so (the configured secret then no longer authenticates, and a
/// warning says so); a changed secret creates a key of its own beside the old one, which
/// keeps working until an operator revokes it (the start lists it). In sandbox mode every
/// start revokes the previous demo keys and makes one that expires in 24 hours, so a shared
/// database never collects live all-scope keys.
async fn bootstrap_key(
    gateway: &Gateway,
    settings: &Settings,
    sandbox: bool,
) -> Result<Option<String>, StartError> {
    let keys = gateway.keys();
    let failed = |e: sacp_app::AppError| StartError::Bootstrap(e.to_string());
    if let Some(secret) = &settings.bootstrap_api_key {
        let key = keys
            .ensure_bootstrap(secret.expose_secret())
            .await
            .map_err(failed)?;
        let now = keys.now();
        match key.authenticate(secret.expose_secret(), now) {
            Ok(()) => {}
            Err(refused) => tracing::warn!(
                key_id = %key.id(),
                reason = %refused,
                "SACP_BOOTSTRAP_API_KEY no longer authenticates: its key was rotated, revoked or disabled by an operator, and a start never undoes that; remove the variable or set it to a new secret"
            ),
        }
        let others: Vec<String> = keys
            .list()
            .await
            .map_err(failed)?
            .iter()
            .filter(|k| k.record().name == BOOTSTRAP_KEY_NAME && k.id() != key.id())
            .filter(|k| k.status(now) == sacp_domain::access::KeyStatus::Active)
            .map(|k| k.id().as_str().to_owned())
            .collect();
        if !others.is_empty() {
            tracing::warn!(
                keys = ?others,
                "bootstrap keys of earlier SACP_BOOTSTRAP_API_KEY secrets are still active; revoke them once nothing uses the old secret"
            );
        }
        return Ok(None);
    }
    if !sandbox {
        return Ok(None);
    }
    for earlier in keys.list().await.map_err(failed)? {
        let demo = earlier.record().name == DEMO_KEY_NAME && earlier.org() == DEMO_KEY_ORG;
        if demo && earlier.record().revoked_at.is_none() {
            keys.revoke(earlier.id().as_str()).await.map_err(failed)?;
        }
    }
    let (_, secret) = keys
        .create(
            NewKey {
                name: DEMO_KEY_NAME.into(),
                org: DEMO_KEY_ORG.into(),
                scopes: integration_scopes(),
                limits: KeyLimits::READ_TIER,
                expires_at: Some(keys.now() + DEMO_KEY_LIFETIME),
            },
            None,
        )
        .await
        .map_err(failed)?;
    Ok(Some(secret.expose().to_owned()))
}

/// Starts the gateway: binds, wires, serves, and runs the driver in the background.
pub async fn start(settings: &Settings) -> Result<Running, StartError> {
    let upstreams = settings.upstreams()?;
    // Before any adapter exists: they take their metric handles from the recorder.
    telemetry::recorder();
    let tracer = telemetry::install_tracer(settings.otlp_endpoint.as_deref())
        .map_err(StartError::Telemetry)?;
    let metrics_listener = match &settings.metrics_listen {
        Some(address) => Some(
            TcpListener::bind(address).map_err(|source| StartError::Listen {
                address: address.clone(),
                source,
            })?,
        ),
        None => None,
    };
    let storage = storage(settings).await?;
    let listener = TcpListener::bind(&settings.listen).map_err(|source| StartError::Listen {
        address: settings.listen.clone(),
        source,
    })?;
    let address = listener.local_addr().map_err(|source| StartError::Listen {
        address: settings.listen.clone(),
        source,
    })?;
    let public_url = settings
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{address}"))
        .trim_end_matches('/')
        .to_owned();
    let http = HttpConfig {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_millis(settings.upstream_timeout_ms.max(1)),
        breaker: BreakerConfig {
            failure_threshold: settings.breaker_failures.max(1),
            cool_down: Duration::from_millis(settings.breaker_cool_down_ms),
        },
    };
    let clock = Arc::new(SystemClock);

    let (simulators, store, wallet) = match &upstreams {
        Upstreams::Sandbox => {
            let simulators = Simulators::sandbox(
                &format!("{public_url}/sim/ssim"),
                &format!("{public_url}/sim/wsim"),
                clock.clone(),
            );
            // The gateway reaches its own simulators over loopback, through the same HTTP
            // adapters it uses in production.
            let local = format!("http://{address}");
            let wallet_config = simulators.wallet.config().clone();
            let credentials = WalletCredentials {
                client_id: wallet_config.client_id,
                client_secret: Some(SecretString::from(wallet_config.client_secret)),
                introspection_client_id: Some(wallet_config.introspection_client_id),
                introspection_client_secret: Some(SecretString::from(
                    wallet_config.introspection_client_secret,
                )),
            };
            let store = HttpStore::new(
                &format!("{local}/sim/ssim"),
                http,
                settings.ssim_token.clone(),
            )
            .map_err(StartError::Upstream)?;
            let wallet = HttpWallet::new(&format!("{local}/sim/wsim"), http, credentials)
                .map_err(StartError::Upstream)?;
            (Some(simulators), store, wallet)
        }
        Upstreams::Remote { ssim, wsim } => {
            let credentials = WalletCredentials {
                client_id: settings.gateway_client_id.clone(),
                client_secret: settings.gateway_client_secret.clone(),
                introspection_client_id: settings.introspection_client_id.clone(),
                introspection_client_secret: settings.introspection_client_secret.clone(),
            };
            let store = HttpStore::new(ssim, http, settings.ssim_token.clone())
                .map_err(StartError::Upstream)?;
            let wallet = HttpWallet::new(wsim, http, credentials).map_err(StartError::Upstream)?;
            (None, store, wallet)
        }
    };

    let gateway = Gateway::new(
        Arc::new(store),
        Arc::new(wallet),
        storage.checkouts,
        storage.authorizations,
        storage.keys,
        storage.guard,
        clock,
        Arc::new(OsRandom),
        StepUpPorts {
            watches: storage.step_up_watches,
            sealer: token_sealer(settings, storage.kind)?,
        },
        GatewayConfig {
            limits: settings.limits.settings(),
            retention: sacp_app::Retention {
                ended: Duration::from_secs(settings.retention_secs),
                audit: Duration::from_secs(settings.audit_retention_secs),
            },
            ..GatewayConfig::default()
        },
    );
    // Other replicas' changes (keys, due work) reach this one through the database.
    let changes = settings.database_url.as_ref().map(|url| {
        sacp_adapters::pg_listen::listen(url.expose_secret(), gateway.change_listener())
    });
    let exposition = telemetry::Exposition::new(gateway.clone(), storage.pool.clone());
    let demo_key = bootstrap_key(&gateway, settings, simulators.is_some()).await?;
    if simulators.is_some() && !address.ip().is_loopback() {
        tracing::warn!(%address, "sandbox mode on a non-loopback address: the simulated wallet's approval pages are reachable from other hosts");
    }
    let admin_token = settings
        .admin_token
        .as_ref()
        .map(|t| t.expose_secret().to_owned());
    let state = ApiState::new(gateway.clone(), &public_url, admin_token.as_deref())
        .with_max_in_flight(
            settings.limits.max_in_flight,
            settings.limits.per_org_in_flight(),
        )
        .with_body_timeout(Duration::from_millis(
            settings.limits.body_timeout_ms.max(1),
        ))
        .with_catalog_cache(Duration::from_millis(settings.catalog_cache_ttl_ms))
        .with_metrics(Arc::new(exposition.clone()));
    let mcp = sacp_mcp::service(gateway.clone(), &public_url);
    let mcp_origins = sacp_mcp::AllowedOrigins::new(&public_url, &settings.mcp_allowed_origins);
    let served_simulators = simulators.clone();
    let app_public_url = public_url.clone();
    let body_timeout = Duration::from_millis(settings.limits.body_timeout_ms.max(1));
    let server = HttpServer::new(move || {
        // Every body on the listener, the simulators' included, has its deadline.
        let mut app = App::new()
            .wrap(from_fn(move |request, next| {
                sacp_api::body::deadline(body_timeout, request, next)
            }))
            .wrap(from_fn(request_id::middleware));
        if let Some(simulators) = &served_simulators {
            app = app.configure(sacp_sim::http::configure(
                simulators,
                "/sim",
                sacp_sim::http::Exposure::LoopbackApis,
            ));
        }
        let origins = mcp_origins.clone();
        // The MCP endpoint: Origin checked first, then the gateway's guard (the key), then
        // the MCP service, which guards each tool call as the REST route it mirrors.
        app = app.service(
            actix_web::web::scope(sacp_mcp::PATH)
                .wrap(from_fn(sacp_api::endpoints::guard_mcp))
                .wrap(from_fn(sacp_api::headers::security))
                .wrap(from_fn(move |request, next| {
                    sacp_mcp::check_origin(origins.clone(), request, next)
                }))
                .service(mcp.clone().scope()),
        );
        app.configure(sacp_api::configure(state.clone(), &app_public_url))
    })
    .shutdown_timeout(10);
    let server = server
        .workers(http_workers(settings).max(1))
        .listen(listener)
        .map_err(|source| StartError::Listen {
            address: settings.listen.clone(),
            source,
        })?
        .run();
    let handle = server.handle();
    let served = tokio::spawn(server);
    let (metrics_address, metrics_server) = match metrics_listener {
        Some(listener) => {
            let (bound, metrics) =
                telemetry::serve_metrics(listener, exposition).map_err(|source| {
                    StartError::Listen {
                        address: settings.metrics_listen.clone().unwrap_or_default(),
                        source,
                    }
                })?;
            (Some(bound), Some(metrics))
        }
        None => (None, None),
    };
    let (shutdown, shutdown_rx) = watch::channel(false);
    let gateway_handle = gateway.clone();
    let housekeeping = tokio::spawn(driver::housekeeping(gateway.clone(), shutdown_rx.clone()));
    let step_ups = tokio::spawn(driver::watch_step_ups(gateway.clone(), shutdown_rx.clone()));
    let driver = tokio::spawn(driver::run(gateway, DriverConfig::default(), shutdown_rx));
    Ok(Running {
        address,
        public_url,
        simulators,
        storage: storage.kind,
        demo_key,
        gateway: gateway_handle,
        metrics_address,
        server: handle,
        metrics_server,
        tracer,
        served,
        driver,
        housekeeping,
        step_ups,
        _changes: changes,
        shutdown,
    })
}

/// The start-up banner: where everything is and a curl walkthrough of the seed conversation.
pub fn banner(running: &Running) -> String {
    let url = &running.public_url;
    let mode = if running.simulators.is_some() {
        format!(
            "sandbox: simulated store at {url}/sim/ssim, wallet at {url}/sim/wsim; {}",
            running.storage
        )
    } else {
        format!("production upstreams; {}", running.storage)
    };
    let exposed = running.simulators.is_some() && !running.address.ip().is_loopback();
    let warning = if exposed {
        [
            "",
            "  !! SANDBOX ON A NON-LOOPBACK ADDRESS: the simulated wallet's approval pages (which",
            "  !! approve any pending code without a login) are reachable by anyone who reaches",
            "  !! this port. The simulators' APIs (tokens, faults, test users) answer loopback only.",
            "  !! Never run the sandbox where real people or real money are involved.",
        ]
        .join("\n")
    } else {
        String::new()
    };
    let product = sacp_sim::catalog::ETHIOPIAN_YIRGACHEFFE;
    let key = match &running.demo_key {
        Some(key) => {
            format!("  Demo API key (shown once, valid 24 h; the previous one is revoked): {key}")
        }
        None => "  API key: the one given in SACP_BOOTSTRAP_API_KEY, or one an operator created"
            .to_owned(),
    };
    [
        String::new(),
        format!("SACP Gateway {} listening on {}", env!("CARGO_PKG_VERSION"), running.address),
        format!("  {mode}{warning}"),
        format!("  API docs: {url}/docs   OpenAPI: {url}/openapi.json"),
        match running.metrics_address {
            Some(metrics) => format!("  Metrics (Prometheus): http://{metrics}/metrics"),
            None => format!("  Metrics (Prometheus): {url}/metrics with the operator's token"),
        },
        key,
        String::new(),
        "Try the seed conversation (see README.md):".to_owned(),
        format!("  export KEY={}", running.demo_key.as_deref().unwrap_or("<your key>")),
        format!("  curl -s -H \"X-API-Key: $KEY\" '{url}/products?q=coffee'"),
        format!("  curl -s -H \"X-API-Key: $KEY\" -XPOST {url}/checkout -H 'content-type: application/json' \\"),
        format!("    -d '{{\"items\":[{{\"product_id\":\"{product}\",\"quantity\":1}}]}}'"),
        format!("  curl -s -H \"X-API-Key: $KEY\" -XPATCH {url}/checkout/<id> -H 'content-type: application/json' \\"),
        "    -d '{\"buyer\":{\"name\":\"John Doe\",\"email\":\"john@example.com\"},\"fulfillment\":{\"type\":\"shipping\",\"address\":{\"street\":\"123 Main St\",\"city\":\"Toronto\",\"state\":\"ON\",\"postal_code\":\"M5V 1A1\",\"country\":\"CA\"}}}'".to_owned(),
        format!("  curl -s -H \"X-API-Key: $KEY\" -XPOST {url}/checkout/<id>/complete   # open authorization_url, Approve"),
        format!("  curl -s -H \"X-API-Key: $KEY\" {url}/checkout/<id>/payment-status/<request_id>"),
        String::new(),
    ]
    .join("\n")
}
