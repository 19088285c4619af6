//! Integration API keys: authenticate a request, create, revoke and bootstrap keys.

use std::collections::BTreeSet;

use sacp_domain::ApiKeyId;
use sacp_domain::access::{ApiKey, ApiKeySecret, AuthFailure, KeyLimits, NewKey, Scope, key_id_of};
use sacp_ports::RepositoryError;

use super::{AppError, CAS_ATTEMPTS, Gateway};

/// Who is calling: the integration behind an authenticated key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The key.
    pub key_id: ApiKeyId,
    /// Its organisation.
    pub org: String,
    /// What it may do.
    pub scopes: BTreeSet<Scope>,
}

impl Principal {
    /// Checks the principal holds every scope in `needed`.
    pub fn require(&self, needed: &[Scope]) -> Result<(), AppError> {
        match needed.iter().find(|scope| !self.scopes.contains(scope)) {
            Some(missing) => Err(AppError::MissingScope(*missing)),
            None => Ok(()),
        }
    }
}

/// Every scope but `admin`: what the bootstrap key gets.
pub fn integration_scopes() -> BTreeSet<Scope> {
    Scope::ALL
        .into_iter()
        .filter(|s| *s != Scope::Admin)
        .collect()
}

impl Gateway {
    /// Authenticates the secret of an `X-API-Key` header. The key is read from storage on
    /// every call (no cache), so revocation is effective on every replica at once.
    pub async fn authenticate(&self, presented: Option<&str>) -> Result<Principal, AppError> {
        let presented = presented
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .ok_or(AppError::ApiKeyRequired)?;
        let id = key_id_of(presented).ok_or(AppError::ApiKeyRefused(AuthFailure::Invalid))?;
        let key = self.keys.get(&id).await.map_err(|e| match e {
            RepositoryError::NotFound => AppError::ApiKeyRefused(AuthFailure::Invalid),
            other => AppError::Storage(other),
        })?;
        key.authenticate(presented, self.clock.now())
            .map_err(AppError::ApiKeyRefused)?;
        Ok(Principal {
            key_id: key.id().clone(),
            org: key.org().to_owned(),
            scopes: key.scopes().clone(),
        })
    }

    /// Creates a key; the secret is returned once and never stored.
    pub async fn create_key(&self, new: NewKey) -> Result<(ApiKey, ApiKeySecret), AppError> {
        let (mut key, secret) = ApiKey::create(new, self.clock.now(), self.random.as_ref())?;
        self.keys.insert(&mut key).await?;
        Ok((key, secret))
    }

    /// Revokes a key at once (idempotent).
    pub async fn revoke_key(&self, id: &ApiKeyId) -> Result<ApiKey, AppError> {
        for _ in 0..CAS_ATTEMPTS {
            let mut key = self.keys.get(id).await.map_err(|e| match e {
                RepositoryError::NotFound => AppError::NotFound("API key"),
                other => AppError::Storage(other),
            })?;
            key.revoke(self.clock.now());
            match self.keys.update(&mut key).await {
                Ok(()) => return Ok(key),
                Err(RepositoryError::Conflict) => continue,
                Err(other) => return Err(AppError::Storage(other)),
            }
        }
        Err(AppError::Busy)
    }

    /// Makes sure the operator's bootstrap secret works: creates its key (every scope but
    /// `admin`, the read tier's limits) unless it exists. Safe when several replicas start
    /// together.
    pub async fn ensure_bootstrap_key(&self, secret: &str) -> Result<ApiKey, AppError> {
        let new = NewKey {
            name: "bootstrap".into(),
            org: "default".into(),
            scopes: integration_scopes(),
            limits: KeyLimits::READ_TIER,
            expires_at: None,
        };
        let mut key = ApiKey::with_operator_secret(new, secret, self.clock.now())?;
        match self.keys.insert(&mut key).await {
            Ok(()) => Ok(key),
            Err(RepositoryError::AlreadyExists) => Ok(self.keys.get(key.id()).await?),
            Err(other) => Err(AppError::Storage(other)),
        }
    }
}
