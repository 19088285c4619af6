//! Watched step-ups on PostgreSQL: any replica holding the sealing key can finish one.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::upsert::excluded;
use sacp_domain::CheckoutId;
use sacp_ports::RepositoryError;
use sacp_ports::step_up::{StepUpWatch, StepUpWatches};

use crate::pg::schema::step_up_watches;
use crate::pg::{PgStorage, database_error};

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = step_up_watches)]
#[diesel(check_for_backend(diesel::pg::Pg))]
struct WatchRow {
    checkout_id: String,
    step_up_id: String,
    sealed_token: Vec<u8>,
    key_id: String,
    until: DateTime<Utc>,
    next_at: DateTime<Utc>,
}

impl WatchRow {
    fn new(watch: &StepUpWatch) -> WatchRow {
        WatchRow {
            checkout_id: watch.checkout_id.as_str().to_owned(),
            step_up_id: watch.step_up_id.clone(),
            sealed_token: watch.sealed_token.clone(),
            key_id: watch.key_id.clone(),
            until: watch.until,
            next_at: watch.next_at,
        }
    }

    fn into_watch(self) -> Result<StepUpWatch, RepositoryError> {
        Ok(StepUpWatch {
            checkout_id: CheckoutId::parse(&self.checkout_id)
                .map_err(|_| RepositoryError::Corrupt("step-up watch checkout id".into()))?,
            step_up_id: self.step_up_id,
            sealed_token: self.sealed_token,
            key_id: self.key_id,
            until: self.until,
            next_at: self.next_at,
        })
    }
}

#[async_trait]
impl StepUpWatches for PgStorage {
    async fn put(&self, watch: &StepUpWatch) -> Result<(), RepositoryError> {
        let row = WatchRow::new(watch);
        self.run(move |conn| {
            use step_up_watches::dsl as w;
            diesel::insert_into(w::step_up_watches)
                .values(&row)
                .on_conflict(w::checkout_id)
                .do_update()
                .set((
                    w::step_up_id.eq(excluded(w::step_up_id)),
                    w::sealed_token.eq(excluded(w::sealed_token)),
                    w::key_id.eq(excluded(w::key_id)),
                    w::until.eq(excluded(w::until)),
                    w::next_at.eq(excluded(w::next_at)),
                ))
                .execute(conn)
                .map(|_| ())
                .map_err(database_error)
        })
        .await
    }

    async fn claim_due(
        &self,
        key_id: &str,
        now: DateTime<Utc>,
        claimed_until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<StepUpWatch>, RepositoryError> {
        let key_id = key_id.to_owned();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .run(move |conn| {
                use step_up_watches::dsl as w;
                conn.transaction(|conn| {
                    diesel::delete(w::step_up_watches.filter(w::until.le(now))).execute(conn)?;
                    // Rows another replica is claiming right now are skipped, not waited for.
                    let due: Vec<String> = w::step_up_watches
                        .filter(w::key_id.eq(&key_id))
                        .filter(w::next_at.le(now))
                        .order(w::next_at.asc())
                        .limit(limit)
                        .select(w::checkout_id)
                        .for_update()
                        .skip_locked()
                        .load(conn)?;
                    if due.is_empty() {
                        return Ok(Vec::new());
                    }
                    diesel::update(w::step_up_watches.filter(w::checkout_id.eq_any(&due)))
                        .set(w::next_at.eq(claimed_until))
                        .returning(WatchRow::as_returning())
                        .get_results(conn)
                })
                .map_err(database_error)
            })
            .await?;
        let mut watches = rows
            .into_iter()
            .map(WatchRow::into_watch)
            .collect::<Result<Vec<_>, _>>()?;
        watches.sort_by_key(|watch| watch.next_at);
        Ok(watches)
    }

    async fn remove(&self, checkout: &CheckoutId, step_up_id: &str) -> Result<(), RepositoryError> {
        let checkout = checkout.as_str().to_owned();
        let step_up_id = step_up_id.to_owned();
        self.run(move |conn| {
            use step_up_watches::dsl as w;
            diesel::delete(
                w::step_up_watches
                    .filter(w::checkout_id.eq(checkout))
                    .filter(w::step_up_id.eq(step_up_id)),
            )
            .execute(conn)
            .map(|_| ())
            .map_err(database_error)
        })
        .await
    }
}
