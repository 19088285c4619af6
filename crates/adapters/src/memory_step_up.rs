//! Watched step-ups in memory (embedded storage and tests).

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sacp_domain::CheckoutId;
use sacp_ports::RepositoryError;
use sacp_ports::step_up::{StepUpWatch, StepUpWatches};

use crate::memory::lock;

/// Watched step-ups in a map by checkout.
#[derive(Debug, Default)]
pub struct MemoryStepUpWatches {
    map: Mutex<HashMap<CheckoutId, StepUpWatch>>,
}

#[async_trait]
impl StepUpWatches for MemoryStepUpWatches {
    async fn put(&self, watch: &StepUpWatch) -> Result<(), RepositoryError> {
        lock(&self.map).insert(watch.checkout_id.clone(), watch.clone());
        Ok(())
    }

    async fn claim_due(
        &self,
        key_id: &str,
        now: DateTime<Utc>,
        claimed_until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<StepUpWatch>, RepositoryError> {
        let mut map = lock(&self.map);
        map.retain(|_, watch| watch.until > now);
        let mut due: Vec<&mut StepUpWatch> = map
            .values_mut()
            .filter(|watch| watch.key_id == key_id && watch.next_at <= now)
            .collect();
        due.sort_by_key(|watch| watch.next_at);
        Ok(due
            .into_iter()
            .take(limit)
            .map(|watch| {
                watch.next_at = claimed_until;
                watch.clone()
            })
            .collect())
    }

    async fn remove(&self, checkout: &CheckoutId, step_up_id: &str) -> Result<(), RepositoryError> {
        let mut map = lock(&self.map);
        if map
            .get(checkout)
            .is_some_and(|watch| watch.step_up_id == step_up_id)
        {
            map.remove(checkout);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn memory_step_up_watches_pass_the_contract() {
        sacp_ports::contract::step_up::step_up_watches_contract(Arc::new(
            MemoryStepUpWatches::default(),
        ))
        .await;
    }
}
