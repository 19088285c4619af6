//! Watched step-ups on PostgreSQL: any replica holding the sealing key can finish one.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::{AsyncConnection, RunQueryDsl};
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
    subject: Option<String>,
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
            subject: watch.subject.clone(),
            until: watch.until,
            next_at: watch.next_at,
        }
    }

    /// The watch, or `None` for a row whose checkout id is not one the gateway issues.
    fn into_watch(self) -> Option<StepUpWatch> {
        Some(StepUpWatch {
            checkout_id: CheckoutId::parse(&self.checkout_id).ok()?,
            step_up_id: self.step_up_id,
            sealed_token: self.sealed_token,
            key_id: self.key_id,
            subject: self.subject,
            until: self.until,
            next_at: self.next_at,
        })
    }
}

#[async_trait]
impl StepUpWatches for PgStorage {
    async fn put(&self, watch: &StepUpWatch) -> Result<(), RepositoryError> {
        use step_up_watches::dsl as w;
        let row = WatchRow::new(watch);
        let mut conn = self.connection().await?;
        diesel::insert_into(w::step_up_watches)
            .values(&row)
            .on_conflict(w::checkout_id)
            .do_update()
            .set((
                w::step_up_id.eq(excluded(w::step_up_id)),
                w::sealed_token.eq(excluded(w::sealed_token)),
                w::key_id.eq(excluded(w::key_id)),
                w::subject.eq(excluded(w::subject)),
                w::until.eq(excluded(w::until)),
                w::next_at.eq(excluded(w::next_at)),
            ))
            .execute(&mut *conn)
            .await
            .map(drop)
            .map_err(database_error)
    }

    async fn claim_due(
        &self,
        key_id: &str,
        now: DateTime<Utc>,
        claimed_until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<StepUpWatch>, RepositoryError> {
        use step_up_watches::dsl as w;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut conn = self.connection().await?;
        // One transaction: ended watches go, token and all, and due ones are claimed. Rows
        // another replica is claiming are skipped (the next round takes them), so replicas
        // never wait on each other.
        let rows = conn
            .transaction(async |conn| {
                let ended: Vec<String> = w::step_up_watches
                    .filter(w::until.le(now))
                    .select(w::checkout_id)
                    .for_update()
                    .skip_locked()
                    .load(conn)
                    .await?;
                if !ended.is_empty() {
                    diesel::delete(w::step_up_watches.filter(w::checkout_id.eq_any(ended)))
                        .execute(conn)
                        .await?;
                }
                let due: Vec<String> = w::step_up_watches
                    .filter(w::key_id.eq(key_id))
                    .filter(w::next_at.le(now))
                    .filter(w::until.gt(now))
                    .order(w::next_at.asc())
                    .limit(limit)
                    .select(w::checkout_id)
                    .for_update()
                    .skip_locked()
                    .load(conn)
                    .await?;
                if due.is_empty() {
                    return QueryResult::Ok(Vec::new());
                }
                diesel::update(w::step_up_watches.filter(w::checkout_id.eq_any(&due)))
                    .set(w::next_at.eq(claimed_until))
                    .returning(WatchRow::as_returning())
                    .get_results::<WatchRow>(conn)
                    .await
            })
            .await
            .map_err(database_error)?;
        let mut watches = Vec::with_capacity(rows.len());
        let mut unreadable = Vec::new();
        for row in rows {
            let id = row.checkout_id.clone();
            match row.into_watch() {
                Some(watch) => watches.push(watch),
                None => unreadable.push(id),
            }
        }
        if !unreadable.is_empty() {
            // One bad row must not stop the others being watched: it is dropped.
            tracing::error!(
                count = unreadable.len(),
                "step-up watches with an unreadable checkout id were dropped"
            );
            diesel::delete(w::step_up_watches.filter(w::checkout_id.eq_any(unreadable)))
                .execute(&mut *conn)
                .await
                .map_err(database_error)?;
        }
        watches.sort_by_key(|watch| watch.next_at);
        Ok(watches)
    }

    async fn remove(&self, checkout: &CheckoutId, step_up_id: &str) -> Result<(), RepositoryError> {
        use step_up_watches::dsl as w;
        let mut conn = self.connection().await?;
        diesel::delete(
            w::step_up_watches
                .filter(w::checkout_id.eq(checkout.as_str()))
                .filter(w::step_up_id.eq(step_up_id)),
        )
        .execute(&mut *conn)
        .await
        .map(drop)
        .map_err(database_error)
    }
}
