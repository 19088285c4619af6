//! `sacp-gateway keys ...`: the operator's key management from the command line, on the same
//! database and through the same use cases as the admin API.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use clap::Subcommand;
use sacp_adapters::random::OsRandom;
use sacp_api::KeyDto;
use sacp_api::problem::Problem;
use sacp_app::{AppError, KeyChanges, Keys};
use sacp_domain::access::{ApiKey, ApiKeySecret, KeyLimits, NewKey, Scope};
use sacp_domain::audit::{AuditEvent, AuditOutcome};
use sacp_ports::AuditLog;
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

/// The admin API's action for a key change, so that the audit log reads the same whichever
/// way the operator made it.
fn action_of(command: &KeysCommand) -> Option<&'static str> {
    match command {
        KeysCommand::Create { .. } => Some("POST /admin/keys"),
        KeysCommand::Update { .. } => Some("PATCH /admin/keys/{id}"),
        KeysCommand::Rotate { .. } => Some("POST /admin/keys/{id}/rotate"),
        KeysCommand::Revoke { .. } => Some("POST /admin/keys/{id}/revoke"),
        KeysCommand::List | KeysCommand::Show { .. } => None,
    }
}

/// Writes the audit event of a key change made from the command line: the admin API's
/// action and status, a request id starting `cli_`, the key as resource.
async fn audit(
    log: &dyn AuditLog,
    action: &'static str,
    resource: Option<String>,
    status: u16,
) -> Result<(), String> {
    let mut random = [0u8; 10];
    sacp_domain::RandomSource::fill_bytes(&OsRandom, &mut random);
    let event = AuditEvent {
        at: Utc::now(),
        request_id: format!("cli_{}", sacp_domain::ids::base32(&random)),
        key_id: None,
        org: None,
        subject: None,
        action: action.to_owned(),
        resource,
        outcome: AuditOutcome::of_status(status),
        status,
        source: None,
        count: 1,
    };
    log.record(&event)
        .await
        .map_err(|e| format!("the change was made, but its audit event was not written: {e}"))
}

/// Runs a command against the database of `settings`; returns the JSON to print. Changes
/// are audited as the admin API audits them, refusals included.
pub async fn run(settings: &Settings, command: KeysCommand) -> Result<serde_json::Value, String> {
    let (storage, _) = migrate(settings).await.map_err(|e| e.to_string())?;
    let storage = Arc::new(storage);
    let keys = Keys::new(
        storage.clone(),
        Arc::new(SystemClock),
        Arc::new(OsRandom),
        settings.limits.settings(),
    );
    let action = action_of(&command);
    let named = match &command {
        KeysCommand::Update { id, .. }
        | KeysCommand::Rotate { id, .. }
        | KeysCommand::Revoke { id } => Some(id.clone()),
        _ => None,
    };
    let outcome = execute(&keys, command).await;
    if let Some(action) = action {
        let (status, resource) = match &outcome {
            Ok((status, output)) => (*status, output["id"].as_str().map(str::to_owned).or(named)),
            Err(Refusal::UseCase(error)) => (Problem::from(error).status(), named),
            Err(Refusal::Input(_)) => (400, named),
        };
        audit(storage.as_ref(), action, resource, status).await?;
    }
    outcome.map(|(_, output)| output).map_err(|e| e.to_string())
}

/// Why a command changed nothing.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    /// The command's arguments are not valid.
    #[error("{0}")]
    Input(String),
    /// The use case refused.
    #[error(transparent)]
    UseCase(#[from] AppError),
}

/// Runs a command; returns the status the admin API would have answered and the JSON.
async fn execute(keys: &Keys, command: KeysCommand) -> Result<(u16, serde_json::Value), Refusal> {
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
                scopes: scopes(&names).map_err(Refusal::Input)?,
                limits: KeyLimits {
                    requests_per_minute: requests_per_minute
                        .unwrap_or(KeyLimits::READ_TIER.requests_per_minute),
                    daily_quota: daily_quota.unwrap_or(KeyLimits::READ_TIER.daily_quota),
                },
                expires_at,
            };
            let (key, secret) = keys.create(new, None).await?;
            (201, view(keys, &key, Some(&secret)))
        }
        KeysCommand::List => {
            let all = keys.list().await?;
            let listed: Vec<_> = all.iter().map(|k| view(keys, k, None)).collect();
            (200, serde_json::json!({ "keys": listed }))
        }
        KeysCommand::Show { id } => (200, view(keys, &keys.get(&id).await?, None)),
        KeysCommand::Update {
            id,
            scopes: names,
            requests_per_minute,
            daily_quota,
            disabled,
        } => {
            let changes = KeyChanges {
                scopes: names
                    .as_deref()
                    .map(scopes)
                    .transpose()
                    .map_err(Refusal::Input)?,
                requests_per_minute,
                daily_quota,
                disabled,
            };
            (200, view(keys, &keys.update(&id, &changes).await?, None))
        }
        KeysCommand::Rotate { id, grace_seconds } => {
            let (key, secret) = keys.rotate(&id, grace_seconds).await?;
            (200, view(keys, &key, Some(&secret)))
        }
        KeysCommand::Revoke { id } => (200, view(keys, &keys.revoke(&id).await?, None)),
    })
}
