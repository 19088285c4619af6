//! Configuration from the environment (DESIGN §8), also settable as flags.

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
    /// Upstream request timeout in milliseconds.
    #[arg(long, env = "SACP_UPSTREAM_TIMEOUT_MS", default_value_t = 10_000)]
    pub upstream_timeout_ms: u64,
    /// HTTP worker threads (default: one per core).
    #[arg(long, env = "SACP_WORKERS")]
    pub workers: Option<usize>,
    /// Log format: `text` or `json`.
    #[arg(long, env = "SACP_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
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
