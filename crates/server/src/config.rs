//! Configuration from the environment, also settable as flags.

use clap::Args;
use secrecy::SecretString;

/// How to run the gateway.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// Address to bind.
    #[arg(long, env = "SACP_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Base URL used in links the gateway returns (QR code, poll endpoint). Default:
    /// `http://` + the bound address.
    #[arg(long, env = "SACP_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// PostgreSQL URL; absent = embedded storage.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<SecretString>,
    /// The store (SSIM) base URL; with WSIM_BASE_URL absent too, the sandbox simulators are
    /// served on the gateway's own listener.
    #[arg(long, env = "SSIM_BASE_URL")]
    pub ssim_base_url: Option<String>,
    /// The wallet (WSIM) base URL.
    #[arg(long, env = "WSIM_BASE_URL")]
    pub wsim_base_url: Option<String>,
    /// The gateway's own client id at the wallet.
    #[arg(long, env = "GATEWAY_CLIENT_ID", default_value = "sacp-gateway")]
    pub gateway_client_id: String,
    /// The gateway's client secret at the wallet.
    #[arg(long, env = "GATEWAY_CLIENT_SECRET", hide_env_values = true)]
    pub gateway_client_secret: Option<SecretString>,
    /// Basic credentials for token introspection at the wallet.
    #[arg(long, env = "WSIM_INTROSPECTION_CLIENT_ID")]
    pub introspection_client_id: Option<String>,
    /// Basic credentials for token introspection at the wallet.
    #[arg(long, env = "WSIM_INTROSPECTION_CLIENT_SECRET", hide_env_values = true)]
    pub introspection_client_secret: Option<SecretString>,
    /// Service token sent to the store on guest calls.
    #[arg(long, env = "GATEWAY_SSIM_TOKEN", hide_env_values = true)]
    pub ssim_token: Option<SecretString>,
    /// A secret (at least 32 characters) for an integration key with every scope but
    /// `admin`, created at start if missing. In sandbox mode without it, a key is generated
    /// and printed.
    #[arg(long, env = "SACP_BOOTSTRAP_API_KEY", hide_env_values = true)]
    pub bootstrap_api_key: Option<SecretString>,
    /// Bearer token for the admin API (`/admin/...`); absent = only keys with the `admin`
    /// scope may use it.
    #[arg(long, env = "SACP_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<SecretString>,
    /// 64 hexadecimal digits (32 bytes, e.g. `openssl rand -hex 32`), the same on every
    /// replica: the key that seals the person's token while the gateway watches a step-up.
    /// Absent = a key drawn at start, so only the replica that started a step-up finishes it
    /// without the agent.
    #[arg(long, env = "SACP_TOKEN_SEALING_KEY", hide_env_values = true)]
    pub token_sealing_key: Option<SecretString>,
    /// Origins (`https://host[:port]`, comma-separated) whose web pages may call `/mcp`
    /// besides the gateway's own (`SACP_PUBLIC_URL`'s); requests without `Origin` (MCP
    /// clients) are always served.
    #[arg(long, env = "SACP_MCP_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub mcp_allowed_origins: Vec<String>,
    /// Upstream request timeout in milliseconds.
    #[arg(long, env = "SACP_UPSTREAM_TIMEOUT_MS", default_value_t = 10_000)]
    pub upstream_timeout_ms: u64,
    /// Consecutive upstream failures (unreachable, timeout, 5xx) that open its circuit.
    #[arg(long, env = "SACP_BREAKER_FAILURES", default_value_t = 5)]
    pub breaker_failures: u32,
    /// How long an open circuit answers at once before one trial request, in milliseconds.
    #[arg(long, env = "SACP_BREAKER_COOL_DOWN_MS", default_value_t = 5_000)]
    pub breaker_cool_down_ms: u64,
    /// How long catalog answers (`GET /products`, `GET /products/{id}`) are kept, in
    /// milliseconds; 0 = no cache (answers still carry an `ETag`).
    #[arg(long, env = "SACP_CATALOG_CACHE_TTL_MS", default_value_t = 5_000)]
    pub catalog_cache_ttl_ms: u64,
    /// Most PostgreSQL connections per replica, split evenly between the querying threads
    /// (the HTTP workers and the background thread; at least one each).
    #[arg(long, env = "SACP_DB_POOL_SIZE", default_value_t = 32)]
    pub db_pool_size: u32,
    /// HTTP worker threads (default: one per core).
    #[arg(long, env = "SACP_WORKERS")]
    pub workers: Option<usize>,
    /// Log format: `text` or `json`.
    #[arg(long, env = "SACP_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
    /// Address of a listener serving only `GET /metrics`, without credentials, for the
    /// Prometheus scraper (e.g. `127.0.0.1:9464`); absent = metrics only on the main
    /// listener, to the operator's token
    #[arg(long, env = "SACP_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// OTLP/HTTP collector base URL (e.g. `http://127.0.0.1:4318`): spans are exported to
    /// its `/v1/traces` as protobuf; absent = trace context is propagated, nothing exported
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// How long checkouts, payment authorizations and traffic counts are kept after they
    /// ended (a checkout left open: after its expiry), in seconds; then they are deleted.
    /// Default 2592000 (30 days).
    #[arg(long, env = "SACP_RETENTION_SECS", default_value_t = 30 * 24 * 3600,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub retention_secs: u64,
    /// How long audit events are kept, in seconds. Default 31536000 (365 days).
    #[arg(long, env = "SACP_AUDIT_RETENTION_SECS", default_value_t = 365 * 24 * 3600,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub audit_retention_secs: u64,
    /// Gateway-wide rate limits and capacity.
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// Gateway-wide limits (per-key limits are set on each key).
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct LimitArgs {
    /// Requests per minute of all keys of one organisation together.
    #[arg(long, env = "SACP_ORG_RATE_LIMIT", default_value_t = 6_000)]
    pub org_per_minute: u32,
    /// Requests per minute acting for one end user (one user token).
    #[arg(long, env = "SACP_USER_RATE_LIMIT", default_value_t = 60)]
    pub user_per_minute: u32,
    /// Writes (POST/PATCH) per minute per key.
    #[arg(long, env = "SACP_WRITE_RATE_LIMIT", default_value_t = 120)]
    pub writes_per_minute: u32,
    /// Payment completions per minute per key.
    #[arg(long, env = "SACP_PAYMENT_RATE_LIMIT", default_value_t = 30)]
    pub completions_per_minute: u32,
    /// Checkouts created per day per key.
    #[arg(long, env = "SACP_DAILY_CHECKOUT_QUOTA", default_value_t = 5_000)]
    pub checkouts_per_day: u32,
    /// Catalog reads per minute per client address without a key; absent = no anonymous tier.
    #[arg(long, env = "SACP_ANONYMOUS_RATE_LIMIT")]
    pub anonymous_per_minute: Option<u32>,
    /// Requests in flight per replica before answering 503.
    #[arg(long, env = "SACP_MAX_IN_FLIGHT", default_value_t = 1_024)]
    pub max_in_flight: usize,
    /// Of those, how many one organisation's keys (or all callers without a key together)
    /// may hold; absent = half of SACP_MAX_IN_FLIGHT.
    #[arg(long, env = "SACP_MAX_IN_FLIGHT_PER_ORG")]
    pub max_in_flight_per_org: Option<usize>,
    /// How long a request body may take to arrive, in milliseconds; slower ones get 408 and
    /// their connection is closed.
    #[arg(long, env = "SACP_BODY_TIMEOUT_MS", default_value_t = 10_000)]
    pub body_timeout_ms: u64,
}

impl Default for LimitArgs {
    fn default() -> Self {
        let defaults = sacp_app::LimitSettings::default();
        LimitArgs {
            org_per_minute: defaults.org_per_minute,
            user_per_minute: defaults.user_per_minute,
            writes_per_minute: defaults.writes_per_minute,
            completions_per_minute: defaults.completions_per_minute,
            checkouts_per_day: defaults.checkouts_per_day,
            anonymous_per_minute: defaults.anonymous_per_minute,
            max_in_flight: sacp_api::DEFAULT_MAX_IN_FLIGHT,
            max_in_flight_per_org: None,
            body_timeout_ms: 10_000,
        }
    }
}

impl LimitArgs {
    /// The share of the in-flight cap one organisation may hold.
    pub fn per_org_in_flight(&self) -> usize {
        self.max_in_flight_per_org
            .unwrap_or(self.max_in_flight / 2)
            .clamp(1, self.max_in_flight.max(1))
    }

    /// The use cases' view of these limits.
    pub fn settings(&self) -> sacp_app::LimitSettings {
        sacp_app::LimitSettings {
            org_per_minute: self.org_per_minute.max(1),
            user_per_minute: self.user_per_minute.max(1),
            writes_per_minute: self.writes_per_minute.max(1),
            completions_per_minute: self.completions_per_minute.max(1),
            checkouts_per_day: self.checkouts_per_day.max(1),
            anonymous_per_minute: self.anonymous_per_minute.filter(|n| *n > 0),
        }
    }
}

/// Where the upstreams are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstreams {
    /// Simulators served on the gateway's own listener.
    Sandbox,
    /// Real services.
    Remote {
        /// Store base URL.
        ssim: String,
        /// Wallet base URL.
        wsim: String,
    },
}

/// A configuration that cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Only one of the two upstream URLs was given.
    #[error("set both SSIM_BASE_URL and WSIM_BASE_URL (production) or neither (sandbox)")]
    HalfUpstreams,
    /// A command needs the database but none is configured.
    #[error("DATABASE_URL is not set")]
    NoDatabase,
    /// The token sealing key is not 64 hexadecimal digits.
    #[error("SACP_TOKEN_SEALING_KEY: {0}")]
    SealingKey(#[from] sacp_adapters::sealing::BadSealingKey),
    /// The system has no randomness to draw a key.
    #[error("no randomness for a sealing key: {0}")]
    Randomness(String),
}

impl Settings {
    /// Which upstreams to use.
    pub fn upstreams(&self) -> Result<Upstreams, ConfigError> {
        let nonempty = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        match (nonempty(&self.ssim_base_url), nonempty(&self.wsim_base_url)) {
            (None, None) => Ok(Upstreams::Sandbox),
            (Some(ssim), Some(wsim)) => Ok(Upstreams::Remote { ssim, wsim }),
            _ => Err(ConfigError::HalfUpstreams),
        }
    }
}
