//! `sacp-gateway keys ...`: the operator's key management from the command line, on the same
//! database and through the same use cases as the admin API.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use clap::Subcommand;
use sacp_adapters::random::OsRandom;
use sacp_api::KeyDto;
use sacp_api::usecases::{KeyChanges, Keys};
use sacp_domain::access::{ApiKey, ApiKeySecret, KeyLimits, NewKey, Scope};
use sacp_ports::clock::SystemClock;

use crate::{Settings, migrate};

/// A key management command.
#[derive(Debug, Clone, Subcommand)]
pub enum KeysCommand {
    /// Create a key; prints it with its secret (shown this once).
    Create {
        /// Integration name.
        #[arg(long)]
        name: String,
        /// Organisation.
        #[arg(long)]
        org: String,
        /// Scopes, comma-separated (e.g. catalog:read,search:read).
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<String>,
        /// Requests per minute (default 600).
        #[arg(long)]
        requests_per_minute: Option<u32>,
        /// Requests per day (default 100000).
        #[arg(long)]
        daily_quota: Option<u32>,
        /// Expiry, RFC 3339 (e.g. 2027-01-01T00:00:00Z).
        #[arg(long)]
        expires_at: Option<DateTime<Utc>>,
    },
    /// List every key.
    List,
    /// Show one key.
    Show {
        /// Key id (`key_...`).
        id: String,
    },
    /// Change scopes, limits or the disable switch.
    Update {
        /// Key id.
        id: String,
        /// New scopes, comma-separated.
        #[arg(long, value_delimiter = ',')]
        scopes: Option<Vec<String>>,
        /// New requests per minute.
        #[arg(long)]
        requests_per_minute: Option<u32>,
        /// New daily quota.
        #[arg(long)]
        daily_quota: Option<u32>,
        /// Switch the key off (true) or on (false).
        #[arg(long)]
        disabled: Option<bool>,
    },
    /// Issue a new secret; prints it (shown this once).
    Rotate {
        /// Key id.
        id: String,
        /// Seconds the old secret keeps working (0 = ends now).
        #[arg(long, default_value_t = 0)]
        grace_seconds: i64,
    },
    /// Revoke a key, at once on every replica.
    Revoke {
        /// Key id.
        id: String,
    },
}

fn scopes(names: &[String]) -> Result<BTreeSet<Scope>, String> {
    names
        .iter()
        .map(|name| {
            Scope::parse(name.trim()).ok_or_else(|| {
                format!("unknown scope {name:?}: use catalog:read, search:read, checkout:read, checkout:write, orders:read or admin")
            })
        })
        .collect()
}

fn view(keys: &Keys, key: &ApiKey, secret: Option<&ApiKeySecret>) -> serde_json::Value {
    serde_json::to_value(KeyDto::new(key, secret, keys.now())).unwrap_or_default()
}

/// Runs a command against the database of `settings`; returns the JSON to print.
pub async fn run(settings: &Settings, command: KeysCommand) -> Result<serde_json::Value, String> {
    let (storage, _) = migrate(settings).await.map_err(|e| e.to_string())?;
    let keys = Keys::new(Arc::new(storage), Arc::new(SystemClock), Arc::new(OsRandom));
    let failed = |e: sacp_api::usecases::AppError| e.to_string();
    Ok(match command {
        KeysCommand::Create {
            name,
            org,
            scopes: names,
            requests_per_minute,
            daily_quota,
            expires_at,
        } => {
            let new = NewKey {
                name,
                org,
                scopes: scopes(&names)?,
                limits: KeyLimits {
                    requests_per_minute: requests_per_minute
                        .unwrap_or(KeyLimits::READ_TIER.requests_per_minute),
                    daily_quota: daily_quota.unwrap_or(KeyLimits::READ_TIER.daily_quota),
                },
                expires_at,
            };
            let (key, secret) = keys.create(new, None).await.map_err(failed)?;
            view(&keys, &key, Some(&secret))
        }
        KeysCommand::List => {
            let all = keys.list().await.map_err(failed)?;
            serde_json::json!({"keys": all.iter().map(|k| view(&keys, k, None)).collect::<Vec<_>>()})
        }
        KeysCommand::Show { id } => view(&keys, &keys.get(&id).await.map_err(failed)?, None),
        KeysCommand::Update {
            id,
            scopes: names,
            requests_per_minute,
            daily_quota,
            disabled,
        } => {
            let changes = KeyChanges {
                scopes: names.as_deref().map(scopes).transpose()?,
                requests_per_minute,
                daily_quota,
                disabled,
            };
            view(
                &keys,
                &keys.update(&id, &changes).await.map_err(failed)?,
                None,
            )
        }
        KeysCommand::Rotate { id, grace_seconds } => {
            let (key, secret) = keys.rotate(&id, grace_seconds).await.map_err(failed)?;
            view(&keys, &key, Some(&secret))
        }
        KeysCommand::Revoke { id } => view(&keys, &keys.revoke(&id).await.map_err(failed)?, None),
    })
}
