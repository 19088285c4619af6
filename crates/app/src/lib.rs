//! The gateway's use cases: the one place the inbound adapters (the REST API, MCP) and the
//! background workers ([`driver`]) call.
//!
//! Each use case takes ports (store, wallet, repositories, clock, randomness) and returns
//! domain values or an [`AppError`]. Nothing here knows about HTTP or any protocol.

mod access;
mod catalog;
mod charge;
mod checkout;
pub mod driver;
mod ended;
mod error;
mod guard;
mod limits;
mod orders;
mod payment;
mod refresh;
mod retention;
mod step_up;
mod telemetry;
mod wake;

use std::sync::Arc;

use sacp_domain::idempotency::Answer;
use sacp_domain::{Checkout, CheckoutId, RandomSource};
use sacp_ports::{
    ApiKeyRepository, AuthorizationRepository, CheckoutRepository, Clock, RepositoryError,
    StepUpWatches, Store, TokenSealer, Wallet,
};

pub use access::{
    BOOTSTRAP_KEY_NAME, Caller, KeyChanges, Keys, MAX_GRACE_SECS, Principal, integration_scopes,
};
pub use catalog::{CatalogQuery, ProductList};
pub use charge::{ClaimedWork, DueWork};
pub use checkout::CheckoutChanges;
pub use error::{AppError, Upstream};
pub use guard::{Answered, Answering, GuardPorts, Guardrails, LimitSettings, Refused};
pub use limits::{LimitPlan, user_subject};
pub use payment::{CompleteOutcome, PaymentStatusView};
pub use retention::{Retention, Retired};
pub use step_up::StepUpView;
pub use wake::{Alarm, Alarms};

/// What the gateway needs to finish step-ups without the agent: where watched step-ups are
/// kept, and the sealer that protects their tokens at rest.
#[derive(Clone)]
pub struct StepUpPorts {
    /// The watched step-ups, shared by the replicas.
    pub watches: Arc<dyn StepUpWatches>,
    /// Seals the person's token before it is stored.
    pub sealer: Arc<dyn TokenSealer>,
}

impl std::fmt::Debug for StepUpPorts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepUpPorts")
            .field("key_id", &self.sealer.key_id())
            .finish_non_exhaustive()
    }
}

/// Settings the use cases need.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Who asks the person for approval, as the wallet shows it (e.g. `SACP Gateway`).
    pub agent_name: String,
    /// Gateway-wide rate limits and the anonymous tier.
    pub limits: LimitSettings,
    /// How long what ended is kept before it is retired.
    pub retention: Retention,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            agent_name: "SACP Gateway".into(),
            limits: LimitSettings::default(),
            retention: Retention::default(),
        }
    }
}

/// The ports the use cases run on.
#[derive(Clone)]
pub struct Gateway {
    store: Arc<dyn Store>,
    wallet: Arc<dyn Wallet>,
    checkouts: Arc<dyn CheckoutRepository>,
    authorizations: Arc<dyn AuthorizationRepository>,
    keys: Keys,
    guard: Guardrails,
    clock: Arc<dyn Clock>,
    random: Arc<dyn RandomSource>,
    config: GatewayConfig,
    /// Access tokens collected from approvals, in this replica's memory only.
    collected: charge::CollectedTokens,
    /// Payments this replica just completed, for the agent's next poll.
    ended: Arc<ended::EndedPayments>,
    /// Step-ups watched on the person's behalf, their tokens sealed.
    step_ups: StepUpPorts,
    /// When the background workers are next due, brought forward as work is added.
    alarms: Arc<Alarms>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The error when an idempotent answer could not be stored with its change because the
/// claim was lost (its lease ran out and a retry took it over): nothing was stored, and the
/// retry gets the answer.
pub(crate) fn lost_claim(error: RepositoryError) -> AppError {
    match error {
        RepositoryError::NotFound => AppError::IdempotencyKeyInFlight { retry_after: 1 },
        other => AppError::Storage(other),
    }
}

/// How many times a compare-and-swap update is retried against concurrent writers.
const CAS_ATTEMPTS: usize = 5;

impl Gateway {
    /// Use cases over the given ports.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<dyn Store>,
        wallet: Arc<dyn Wallet>,
        checkouts: Arc<dyn CheckoutRepository>,
        authorizations: Arc<dyn AuthorizationRepository>,
        keys: Arc<dyn ApiKeyRepository>,
        guard: GuardPorts,
        clock: Arc<dyn Clock>,
        random: Arc<dyn RandomSource>,
        step_ups: StepUpPorts,
        config: GatewayConfig,
    ) -> Gateway {
        let ended_kept = config.retention.ended;
        Gateway {
            keys: Keys::new(keys, clock.clone(), random.clone(), config.limits),
            guard: Guardrails::new(guard, clock.clone(), config.limits),
            store,
            wallet,
            checkouts,
            authorizations,
            clock,
            random,
            config,
            collected: charge::CollectedTokens::default(),
            ended: Arc::new(ended::EndedPayments::new(ended_kept)),
            step_ups,
            alarms: Arc::default(),
        }
    }

    /// The background workers' alarms.
    pub fn alarms(&self) -> &Alarms {
        &self.alarms
    }

    /// What the storage's change notifications are given to: a changed key is dropped from
    /// the key cache, work due sooner wakes the worker that does it.
    pub fn change_listener(&self) -> Arc<dyn sacp_ports::ChangeListener> {
        Arc::new(wake::Changes {
            keys: self.keys.clone(),
            alarms: self.alarms.clone(),
            clock: self.clock.clone(),
        })
    }

    /// The key use cases.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// How long what ended is kept.
    pub fn retention(&self) -> crate::Retention {
        self.config.retention
    }

    /// The guardrail use cases (limits, switches, idempotency, audit, traffic).
    pub fn guard(&self) -> &Guardrails {
        &self.guard
    }

    /// Whether the gateway can serve: its storage answers.
    pub async fn ready(&self) -> Result<(), AppError> {
        self.checkouts.ping().await.map_err(AppError::Storage)
    }

    /// Sets the gauges read from storage (live payment authorizations by state), before
    /// metrics are rendered. A storage failure leaves the last values and is logged.
    pub async fn refresh_gauges(&self) {
        match self.authorizations.live_counts().await {
            Ok(counts) => {
                let name = sacp_ports::telemetry::PAYMENT_AUTHORIZATIONS;
                #[allow(clippy::cast_precision_loss)] // counts far below 2^52
                let states = [
                    ("pending", counts.pending as f64),
                    ("approved", counts.approved as f64),
                    ("charging", counts.charging as f64),
                ];
                for (state, count) in states {
                    metrics::gauge!(name, "state" => state).set(count);
                }
            }
            Err(error) => tracing::warn!(%error, "live payment authorizations not counted"),
        }
    }

    /// The current time.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }

    /// The checkout `id` if the organisation `owner` owns it; any other is not found (the
    /// answer does not tell whether the id exists).
    async fn load_owned(&self, owner: &str, id: &str) -> Result<Checkout, AppError> {
        let id = CheckoutId::parse(id).map_err(|_| AppError::NotFound("checkout"))?;
        let checkout = self.load_checkout(&id).await?;
        if !checkout.is_owned_by(owner) {
            return Err(AppError::NotFound("checkout"));
        }
        Ok(checkout)
    }

    async fn load_checkout(&self, id: &CheckoutId) -> Result<Checkout, AppError> {
        self.checkouts.get(id).await.map_err(|e| match e {
            RepositoryError::NotFound => AppError::NotFound("checkout"),
            other => AppError::Storage(other),
        })
    }

    /// Loads a checkout, applies `change` and saves it with compare-and-swap, reloading and
    /// re-applying on conflict. Returns the saved checkout and what `change` returned.
    async fn update_checkout<T>(
        &self,
        id: &CheckoutId,
        change: impl FnMut(&mut Checkout) -> Result<T, AppError>,
    ) -> Result<(Checkout, T), AppError> {
        let loaded = self.load_checkout(id).await?;
        self.update_loaded_checkout(loaded, change).await
    }

    /// [`Gateway::update_checkout`] starting from `loaded`, a checkout the caller already
    /// read: it is saved without being read again unless it changed meanwhile (then the
    /// version check fails and the change is re-applied to a fresh read). A refusal from
    /// `change` is only ever reported against a fresh read.
    async fn update_loaded_checkout<T>(
        &self,
        loaded: Checkout,
        change: impl FnMut(&mut Checkout) -> Result<T, AppError>,
    ) -> Result<(Checkout, T), AppError> {
        self.update_loaded_checkout_answering(loaded, change, None)
            .await
    }

    /// [`Gateway::update_loaded_checkout`] that, with `answer_of`, stores the request's
    /// idempotent answer (rendered from the checkout as saved) in the same transaction.
    async fn update_loaded_checkout_answering<T>(
        &self,
        loaded: Checkout,
        mut change: impl FnMut(&mut Checkout) -> Result<T, AppError>,
        mut answer_of: Option<&(dyn Fn(&Checkout) -> Answer + Send + Sync)>,
    ) -> Result<(Checkout, T), AppError> {
        let id = loaded.id().clone();
        let mut current = Some(loaded);
        for _ in 0..CAS_ATTEMPTS {
            let (mut checkout, fresh) = match current.take() {
                Some(loaded) => (loaded, false),
                None => (self.load_checkout(&id).await?, true),
            };
            let value = match change(&mut checkout) {
                Ok(value) => value,
                Err(error) if fresh => return Err(error),
                Err(_) => continue,
            };
            let saved = match answer_of {
                Some(answer_of) => {
                    let answer = answer_of(&checkout);
                    self.checkouts
                        .update_answering(&mut checkout, &answer)
                        .await
                }
                None => self.checkouts.update(&mut checkout).await,
            };
            match saved {
                Ok(()) => return Ok((checkout, value)),
                Err(RepositoryError::Conflict) => continue,
                // The checkout is there (it was just read): the claim was lost to a retry
                // that will get its own answer. The change itself stands (the store may
                // already hold it, and an edit lease would otherwise block that retry), so
                // it is saved without the answer.
                Err(RepositoryError::NotFound) if answer_of.is_some() => {
                    answer_of = None;
                    match self.checkouts.update(&mut checkout).await {
                        Ok(()) => return Ok((checkout, value)),
                        Err(RepositoryError::Conflict) => continue,
                        Err(other) => return Err(AppError::Storage(other)),
                    }
                }
                Err(other) => return Err(AppError::Storage(other)),
            }
        }
        Err(AppError::Busy)
    }
}
