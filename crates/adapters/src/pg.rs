//! PostgreSQL repositories (diesel's query builder, diesel-async connections in a deadpool
//! pool: [`crate::pg_pool`]).
//!
//! Every query is awaited on the calling task: no thread hand-off per statement. Every
//! update is a compare-and-swap on `version`; the database's own
//! constraints back the domain invariants (valid states, one order per checkout, at most one
//! live authorization per checkout).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use futures_util::future::{try_join, try_join_all};
use sacp_domain::access::{ApiKey, ApiKeyRecord, KeyLimits, Scope, SecretHash};
use sacp_domain::audit::{AuditEvent, AuditOutcome};
use sacp_domain::authorization::AuthorizationRecord;
use sacp_domain::checkout::CheckoutRecord;
use sacp_domain::idempotency::Answer;
use sacp_domain::{
    ApiKeyId, AuthorizationStatus, Checkout, CheckoutId, Currency, DeviceCode, Money,
    PaymentAuthorization, PaymentAuthorizationId, PaymentHold,
};
use sacp_ports::telemetry;
use sacp_ports::{
    ApiKeyRepository, AuditLog, AuthorizationRepository, CheckoutEdit, CheckoutRepository,
    DueAuthorizations, LiveCounts, RepositoryError,
};

/// The advisory lock key under which migrations run (an arbitrary constant: `sacp` in ASCII,
/// then `mig`).
pub const MIGRATION_LOCK: i64 = 0x0073_6163_706d_6967;

/// The migrations of the top-level `migrations/` folder, embedded in the binary.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations");

pub(crate) mod schema {
    diesel::table! {
        checkouts (id) {
            id -> Text,
            store_session_id -> Text,
            status -> Text,
            record -> Jsonb,
            hold_authorization_id -> Nullable<Text>,
            order_id -> Nullable<Text>,
            version -> Int8,
            expires_at -> Timestamptz,
            created_at -> Timestamptz,
            updated_at -> Timestamptz,
            owner_org -> Text,
        }
    }

    diesel::table! {
        payment_authorizations (id) {
            id -> Text,
            checkout_id -> Text,
            device_code -> Text,
            user_code -> Text,
            verification_uri -> Text,
            verification_uri_complete -> Text,
            amount_minor -> Int8,
            currency -> Bpchar,
            status -> Text,
            interval_secs -> Int4,
            next_poll_at -> Timestamptz,
            notification_sent -> Bool,
            created_at -> Timestamptz,
            expires_at -> Timestamptz,
            updated_at -> Timestamptz,
            version -> Int8,
            approved_at -> Nullable<Timestamptz>,
            charge_deadline -> Nullable<Timestamptz>,
            attempts -> Int4,
            failure -> Nullable<Text>,
        }
    }

    diesel::table! {
        api_keys (id) {
            id -> Text,
            name -> Text,
            org -> Text,
            scopes -> Array<Text>,
            requests_per_minute -> Int4,
            daily_quota -> Int4,
            expires_at -> Nullable<Timestamptz>,
            revoked_at -> Nullable<Timestamptz>,
            disabled -> Bool,
            secret_hash -> Bytea,
            previous_secret_hash -> Nullable<Bytea>,
            previous_valid_until -> Nullable<Timestamptz>,
            created_at -> Timestamptz,
            last_used_at -> Nullable<Timestamptz>,
            version -> Int8,
        }
    }

    diesel::table! {
        audit_events (id) {
            id -> Int8,
            at -> Timestamptz,
            request_id -> Text,
            key_id -> Nullable<Text>,
            org -> Nullable<Text>,
            subject -> Nullable<Text>,
            action -> Text,
            resource -> Nullable<Text>,
            outcome -> Text,
            status -> Int2,
            source -> Nullable<Text>,
            count -> Int8,
        }
    }

    diesel::table! {
        rate_counters (name, window_start) {
            name -> Text,
            window_start -> Timestamptz,
            window_end -> Timestamptz,
            count -> Int8,
        }
    }

    diesel::table! {
        switches (id) {
            id -> Int2,
            read_only -> Bool,
            checkout_creation -> Bool,
            payments -> Bool,
            updated_at -> Timestamptz,
        }
    }

    diesel::table! {
        idempotency_records (caller, method, path, idempotency_key) {
            caller -> Text,
            method -> Text,
            path -> Text,
            idempotency_key -> Text,
            fingerprint -> Text,
            state -> Text,
            locked_at -> Timestamptz,
            status -> Nullable<Int2>,
            content_type -> Nullable<Text>,
            location -> Nullable<Text>,
            body -> Nullable<Bytea>,
            expires_at -> Timestamptz,
        }
    }

    diesel::table! {
        traffic_minutes (minute, key_id, route, status) {
            minute -> Timestamptz,
            key_id -> Text,
            route -> Text,
            status -> Int2,
            count -> Int8,
        }
    }

    diesel::table! {
        step_up_watches (checkout_id) {
            checkout_id -> Text,
            step_up_id -> Text,
            sealed_token -> Bytea,
            key_id -> Text,
            subject -> Nullable<Text>,
            until -> Timestamptz,
            next_at -> Timestamptz,
        }
    }

    diesel::joinable!(payment_authorizations -> checkouts (checkout_id));
    diesel::allow_tables_to_appear_in_same_query!(
        checkouts,
        payment_authorizations,
        api_keys,
        audit_events,
        rate_counters,
        switches,
        idempotency_records,
        traffic_minutes,
        step_up_watches
    );
}

use schema::{api_keys, audit_events, checkouts, payment_authorizations};

use crate::pg_batch::GroupCommit;
use crate::pg_guard_batch::{GuardWrite, GuardWritten};
use crate::pg_prepared::PreparedExt;
use crate::pg_reads::{PointAnswer, PointRead};

pub(crate) use crate::pg_pool::{Held, Pools};

/// Pool settings.
#[derive(Debug, Clone, Copy)]
pub struct PgConfig {
    /// Largest number of connections, split evenly between the querying threads.
    pub max_connections: u32,
    /// Threads that query: the HTTP workers and the thread of the background work (the
    /// payment driver, the batch writers). Each gets its own pool of
    /// `max_connections / threads` connections (at least one).
    pub threads: usize,
    /// How long a request waits for a connection before the storage counts as unavailable.
    pub acquire_timeout: Duration,
}

impl Default for PgConfig {
    fn default() -> Self {
        PgConfig {
            max_connections: 32,
            threads: 1,
            acquire_timeout: Duration::from_secs(2),
        }
    }
}

/// PostgreSQL storage: implements both repository ports over one pool per querying thread.
#[derive(Clone)]
pub struct PgStorage {
    pools: Arc<Pools>,
    /// How long a query waits for a connection before the storage counts as unavailable.
    acquire_timeout: Duration,
    /// Rate-counter hits, fresh idempotency claims and audit rows, one transaction per
    /// batch (see [`crate::pg_guard_batch`]).
    pub(crate) guard_writes: Arc<GroupCommit<GuardWrite, GuardWritten>>,
    /// Reads of one checkout or one payment by id, one statement per kind per batch (see
    /// [`crate::pg_reads`]).
    point_reads: Arc<GroupCommit<PointRead, PointAnswer>>,
}

impl std::fmt::Debug for PgStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (open, idle, _) = self.pools.status();
        f.debug_struct("PgStorage")
            .field("connections", &open)
            .field("idle", &idle)
            .finish()
    }
}

fn unavailable(error: impl std::fmt::Display) -> RepositoryError {
    RepositoryError::Unavailable(error.to_string())
}

/// Maps a diesel error: unique violations of the primary key are `AlreadyExists`, other
/// constraint violations `Constraint` (named), lost connections `Unavailable`.
pub(crate) fn database_error(error: DieselError) -> RepositoryError {
    match error {
        DieselError::NotFound => RepositoryError::NotFound,
        DieselError::DatabaseError(kind, info) => {
            let constraint = info.constraint_name().unwrap_or("").to_owned();
            match kind {
                DatabaseErrorKind::UniqueViolation if constraint.ends_with("_pkey") => {
                    RepositoryError::AlreadyExists
                }
                DatabaseErrorKind::UniqueViolation
                | DatabaseErrorKind::CheckViolation
                | DatabaseErrorKind::ForeignKeyViolation
                | DatabaseErrorKind::NotNullViolation => {
                    RepositoryError::Constraint(if constraint.is_empty() {
                        info.message().to_owned()
                    } else {
                        constraint
                    })
                }
                DatabaseErrorKind::ClosedConnection => unavailable("connection closed"),
                _ => unavailable(info.message()),
            }
        }
        other => unavailable(other),
    }
}

/// Why a write in a transaction failed: the database, or a refusal (conflict, not found)
/// that rolls the transaction back.
pub(crate) enum Failed {
    Database(DieselError),
    Refused(RepositoryError),
}

impl From<Failed> for RepositoryError {
    fn from(failed: Failed) -> RepositoryError {
        match failed {
            Failed::Refused(refused) => refused,
            Failed::Database(error) => database_error(error),
        }
    }
}

impl From<DieselError> for Failed {
    fn from(error: DieselError) -> Self {
        Failed::Database(error)
    }
}

/// Why a compare-and-swap update matched no row: `NotFound` if the row is absent (`count`
/// of its id is 0), else `Conflict` (its version moved on).
fn refused_by(count: i64) -> RepositoryError {
    if count == 0 {
        RepositoryError::NotFound
    } else {
        RepositoryError::Conflict
    }
}

/// The compare-and-swap write of a checkout row expected at version `expected`: the query's
/// own failure outside, the swap's outcome (refused: `Conflict` or `NotFound`) inside.
async fn swap_checkout(
    conn: &mut AsyncPgConnection,
    row: &CheckoutRow,
    expected: i64,
) -> QueryResult<Result<(), RepositoryError>> {
    let changed = diesel::update(
        checkouts::table
            .find(&row.id)
            .filter(checkouts::version.eq(expected)),
    )
    .set(row)
    .prepared()
    .execute(conn)
    .await?;
    if changed == 1 {
        return Ok(Ok(()));
    }
    let count = checkouts::table
        .find(&row.id)
        .count()
        .get_result(conn)
        .await?;
    Ok(Err(refused_by(count)))
}

/// [`swap_checkout`] for an authorization row.
async fn swap_authorization(
    conn: &mut AsyncPgConnection,
    row: &AuthorizationRow,
    expected: i64,
) -> QueryResult<Result<(), RepositoryError>> {
    let changed = diesel::update(
        payment_authorizations::table
            .find(&row.id)
            .filter(payment_authorizations::version.eq(expected)),
    )
    .set(row)
    .prepared()
    .execute(conn)
    .await?;
    if changed == 1 {
        return Ok(Ok(()));
    }
    let count = payment_authorizations::table
        .find(&row.id)
        .count()
        .get_result(conn)
        .await?;
    Ok(Err(refused_by(count)))
}

fn version_of(version: u64) -> Result<i64, RepositoryError> {
    i64::try_from(version).map_err(|_| RepositoryError::Corrupt("version out of range".into()))
}

fn version_from(version: i64) -> Result<u64, RepositoryError> {
    u64::try_from(version).map_err(|_| RepositoryError::Corrupt("negative version".into()))
}

/// Runs the insert statement `$insert` on a connection of `$storage` and, with `$answer`
/// (an `Option<&Answer>`), finishes the request's idempotency record in the same
/// transaction. A macro: the statement's type differs per table, and the bounds that would
/// name it generically are diesel-async's internals.
macro_rules! insert_answering {
    ($storage:expr, $insert:expr, $answer:expr) => {{
        let mut conn = $storage.connection().await?;
        let insert = $insert;
        match $answer {
            None => insert.execute(&mut *conn).await.map(drop),
            Some(answer) => {
                conn.transaction(async |conn| {
                    insert.execute(conn).await?;
                    crate::pg_guard::finish_in(conn, answer).await
                })
                .await
            }
        }
        .map_err(database_error)
    }};
}

impl PgStorage {
    /// A pool for `database_url`. Connections are opened lazily, so this succeeds while the
    /// database is down; calls then answer [`RepositoryError::Unavailable`] until it returns.
    /// Must be called within a tokio runtime: the batch queues' tasks are started on it.
    pub fn connect(database_url: &str, config: PgConfig) -> Result<PgStorage, String> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err("the PostgreSQL storage must be opened within a tokio runtime".into());
        }
        // The alert on pool timeouts compares over time: the series exists from the start.
        metrics::counter!(telemetry::DB_POOL_TIMEOUTS).increment(0);
        let pools = Arc::new(Pools::new(
            database_url,
            config.max_connections.max(1) as usize,
            config.threads,
        ));
        let timeout = config.acquire_timeout;
        Ok(PgStorage {
            guard_writes: Arc::new(GroupCommit::start(
                "sacp-guard-writes",
                pools.clone(),
                timeout,
                crate::pg_guard_batch::write_batch,
            )),
            point_reads: Arc::new(GroupCommit::start(
                "sacp-point-reads",
                pools.clone(),
                timeout,
                crate::pg_reads::read_batch,
            )),
            pools,
            acquire_timeout: timeout,
        })
    }

    /// Sets the pool gauges (connections in use and idle, and the limit) from the pool's
    /// state now; called when metrics are scraped.
    pub fn record_pool_gauges(&self) {
        let (open, idle, max) = self.pools.status();
        let in_use = open.saturating_sub(idle) as f64;
        metrics::gauge!(telemetry::DB_POOL_CONNECTIONS, "state" => "in_use").set(in_use);
        metrics::gauge!(telemetry::DB_POOL_CONNECTIONS, "state" => "idle").set(idle as f64);
        // The limit of the threads that queried so far (each holds its share).
        metrics::gauge!(telemetry::DB_POOL_MAX).set(max as f64);
    }

    /// A connection of the calling thread's pool for one piece of work (see
    /// [`crate::pg_pool::check_out`]).
    pub(crate) async fn connection(&self) -> Result<Held, RepositoryError> {
        crate::pg_pool::check_out(&self.pools, self.acquire_timeout).await
    }

    /// Applies every pending migration; returns the names applied.
    ///
    /// Replicas starting together on one database take turns: the migrations run under a
    /// session-level advisory lock ([`MIGRATION_LOCK`]), so one applies them and the others
    /// then find nothing pending (PostgreSQL's catalog refuses two concurrent `CREATE TABLE`s
    /// of one name). The lock is released when the migrations end, or with the connection if
    /// the process dies. diesel's migration harness is synchronous: it runs on the blocking
    /// pool, over a connection of its own, once at start.
    pub async fn migrate(&self) -> Result<Vec<String>, RepositoryError> {
        let failed = |e: &dyn std::fmt::Display| {
            RepositoryError::Unavailable(format!("migration failed: {e}"))
        };
        let mut conn = self.connection().await?;
        diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))
            .execute(&mut *conn)
            .await
            .map_err(|e| failed(&e))?;
        let own = self.pools.open().await?;
        let applied = tokio::task::spawn_blocking(move || {
            let mut harness = AsyncConnectionWrapper::<AsyncPgConnection>::from(own);
            harness
                .run_pending_migrations(MIGRATIONS)
                .map(|done| done.iter().map(ToString::to_string).collect::<Vec<_>>())
                .map_err(|e| failed(&e))
        })
        .await
        .map_err(|e| failed(&e))
        .and_then(|applied| applied);
        let unlocked = diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"))
            .execute(&mut *conn)
            .await
            .map_err(|e| failed(&e));
        let applied = applied?;
        unlocked?;
        Ok(applied)
    }

    async fn insert_checkout(
        &self,
        checkout: &mut Checkout,
        answer: Option<&Answer>,
    ) -> Result<(), RepositoryError> {
        if checkout.version() != 0 {
            return Err(RepositoryError::AlreadyExists);
        }
        let row = CheckoutRow::new(checkout, 1)?;
        insert_answering!(
            self,
            diesel::insert_into(checkouts::table)
                .values(&row)
                .prepared(),
            answer
        )?;
        checkout.set_version(1);
        Ok(())
    }

    async fn insert_key(
        &self,
        key: &mut ApiKey,
        answer: Option<&Answer>,
    ) -> Result<(), RepositoryError> {
        if key.version() != 0 {
            return Err(RepositoryError::AlreadyExists);
        }
        let row = ApiKeyRow::new(key, 1)?;
        insert_answering!(
            self,
            diesel::insert_into(api_keys::table).values(&row),
            answer
        )?;
        key.set_version(1);
        Ok(())
    }

    /// The compare-and-swap update of a checkout and, with `answer`, its idempotency record
    /// finished in the same transaction.
    async fn update_checkout(
        &self,
        checkout: &mut Checkout,
        answer: Option<&Answer>,
    ) -> Result<(), RepositoryError> {
        let expected = version_of(checkout.version())?;
        let next = checkout.version() + 1;
        let row = CheckoutRow::new(checkout, next)?;
        let mut conn = self.connection().await?;
        let done = match answer {
            None => swap_checkout(&mut conn, &row, expected)
                .await
                .map_err(Failed::Database)
                .and_then(|swapped| swapped.map_err(Failed::Refused)),
            Some(answer) => {
                conn.transaction(async |conn| -> Result<(), Failed> {
                    swap_checkout(conn, &row, expected)
                        .await?
                        .map_err(Failed::Refused)?;
                    crate::pg_guard::finish_in(conn, answer).await?;
                    Ok(())
                })
                .await
            }
        };
        done.map_err(RepositoryError::from)?;
        checkout.set_version(next);
        Ok(())
    }

    /// Runs one retirement statement: `$1` the cutoff, `$2` the most rows it may delete.
    pub(crate) async fn retire_rows(
        &self,
        statement: &'static str,
        cutoff: DateTime<Utc>,
        limit: usize,
    ) -> Result<u64, RepositoryError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut conn = self.connection().await?;
        let deleted = diesel::sql_query(statement)
            .bind::<diesel::sql_types::Timestamptz, _>(cutoff)
            .bind::<diesel::sql_types::BigInt, _>(limit)
            .execute(&mut *conn)
            .await
            .map_err(database_error)?;
        Ok(deleted as u64)
    }
}

#[derive(Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = checkouts)]
// An update writes every column: a cleared hold or order must become NULL, not be skipped.
#[diesel(treat_none_as_null = true)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub(crate) struct CheckoutRow {
    pub(crate) id: String,
    store_session_id: String,
    status: String,
    record: serde_json::Value,
    hold_authorization_id: Option<String>,
    order_id: Option<String>,
    version: i64,
    expires_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    owner_org: String,
}

impl CheckoutRow {
    fn new(checkout: &Checkout, version: u64) -> Result<CheckoutRow, RepositoryError> {
        let record = checkout.record();
        Ok(CheckoutRow {
            id: record.id.as_str().to_owned(),
            store_session_id: record.store_session_id.0.clone(),
            status: record.status.as_str().to_owned(),
            record: serde_json::to_value(record)
                .map_err(|e| RepositoryError::Corrupt(e.to_string()))?,
            hold_authorization_id: match &record.hold {
                Some(PaymentHold::Device {
                    authorization_id, ..
                }) => Some(authorization_id.as_str().to_owned()),
                _ => None,
            },
            order_id: record.order.as_ref().map(|o| o.order_id.clone()),
            version: version_of(version)?,
            expires_at: record.expires_at,
            created_at: record.created_at,
            updated_at: record.updated_at,
            owner_org: record.owner.clone(),
        })
    }

    pub(crate) fn into_checkout(self) -> Result<Checkout, RepositoryError> {
        let mut record: CheckoutRecord = serde_json::from_value(self.record)
            .map_err(|e| RepositoryError::Corrupt(format!("checkout {}: {e}", self.id)))?;
        record.version = version_from(self.version)?;
        Checkout::restore(record).map_err(|e| RepositoryError::Corrupt(e.to_string()))
    }
}

/// A statement retiring up to `$2` checkouts matching `$filter` (`$1` the cutoff), oldest by
/// `$order` first, each with its ended authorizations. A checkout still holding a live
/// authorization is never taken, whatever its status says, and a live authorization is never
/// deleted: one left behind makes the foreign key refuse the statement rather than vanish.
macro_rules! retire_checkouts {
    ($filter:literal, $order:literal) => {
        concat!(
            "WITH doomed AS (
                 SELECT id FROM checkouts
                  WHERE ",
            $filter,
            "
                    AND NOT EXISTS (
                        SELECT 1 FROM payment_authorizations a
                         WHERE a.checkout_id = checkouts.id
                           AND a.status IN ('pending', 'approved', 'charging'))
                  ORDER BY ",
            $order,
            "
                  LIMIT $2
                  FOR UPDATE SKIP LOCKED),
             authorizations AS (
                 DELETE FROM payment_authorizations
                  WHERE checkout_id IN (SELECT id FROM doomed)
                    AND status NOT IN ('pending', 'approved', 'charging'))
             DELETE FROM checkouts WHERE id IN (SELECT id FROM doomed)"
        )
    };
}

/// Retires checkouts that ended (`checkouts_ended` index).
const CHECKOUTS_ENDED: &str = retire_checkouts!(
    "status IN ('completed', 'cancelled', 'expired', 'failed') AND updated_at < $1",
    "updated_at"
);

/// Retires checkouts left open past their expiry (`checkouts_left_open` index).
const CHECKOUTS_LEFT_OPEN: &str = retire_checkouts!(
    "status IN ('cart', 'ready_for_payment') AND expires_at < $1",
    "expires_at"
);

#[async_trait]
impl CheckoutRepository for PgStorage {
    async fn insert(&self, checkout: &mut Checkout) -> Result<(), RepositoryError> {
        self.insert_checkout(checkout, None).await
    }

    async fn insert_answering(
        &self,
        checkout: &mut Checkout,
        answer: &Answer,
    ) -> Result<(), RepositoryError> {
        self.insert_checkout(checkout, Some(answer)).await
    }

    async fn get(&self, id: &CheckoutId) -> Result<Checkout, RepositoryError> {
        let read = PointRead::Checkout(id.as_str().to_owned());
        match self.point_reads.submit(read).await? {
            PointAnswer::Checkout(checkout) => *checkout,
            PointAnswer::Payment(_) => Err(crate::pg_reads::mismatched()),
        }
    }

    async fn read_and_update(
        &self,
        id: &CheckoutId,
        mut edit: CheckoutEdit,
    ) -> Result<(Checkout, bool), RepositoryError> {
        let id = id.as_str();
        let mut conn = self.connection().await?;
        conn.transaction(async |conn| -> Result<_, Failed> {
            // Locked until the commit: nobody writes between this read and the update.
            let read = checkouts::table
                .find(id)
                .select(CheckoutRow::as_select())
                .for_update()
                .first(conn)
                .await?
                .into_checkout()
                .map_err(Failed::Refused)?;
            let mut edited = read.clone();
            if !edit(&mut edited) {
                return Ok((read, false));
            }
            let expected = version_of(edited.version()).map_err(Failed::Refused)?;
            let next = edited.version() + 1;
            let row = CheckoutRow::new(&edited, next).map_err(Failed::Refused)?;
            swap_checkout(conn, &row, expected)
                .await?
                .map_err(Failed::Refused)?;
            edited.set_version(next);
            Ok((edited, true))
        })
        .await
        .map_err(RepositoryError::from)
    }

    async fn with_order(&self, order_id: &str) -> Result<Checkout, RepositoryError> {
        let mut conn = self.connection().await?;
        let row: CheckoutRow = checkouts::table
            .filter(checkouts::order_id.eq(order_id))
            .select(CheckoutRow::as_select())
            .first(&mut *conn)
            .await
            .map_err(database_error)?;
        row.into_checkout()
    }

    async fn update(&self, checkout: &mut Checkout) -> Result<(), RepositoryError> {
        self.update_checkout(checkout, None).await
    }

    async fn update_answering(
        &self,
        checkout: &mut Checkout,
        answer: &Answer,
    ) -> Result<(), RepositoryError> {
        self.update_checkout(checkout, Some(answer)).await
    }

    async fn retire(&self, cutoff: DateTime<Utc>, limit: usize) -> Result<u64, RepositoryError> {
        // sacp_domain::checkout::retirable in SQL, one statement per partial index.
        let ended = self.retire_rows(CHECKOUTS_ENDED, cutoff, limit).await?;
        let left = limit.saturating_sub(usize::try_from(ended).unwrap_or(usize::MAX));
        if left == 0 {
            return Ok(ended);
        }
        Ok(ended + self.retire_rows(CHECKOUTS_LEFT_OPEN, cutoff, left).await?)
    }

    async fn ping(&self) -> Result<(), RepositoryError> {
        let mut conn = self.connection().await?;
        diesel::sql_query("SELECT 1")
            .execute(&mut *conn)
            .await
            .map_err(database_error)?;
        Ok(())
    }
}

#[derive(Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = payment_authorizations)]
#[diesel(treat_none_as_null = true)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub(crate) struct AuthorizationRow {
    pub(crate) id: String,
    checkout_id: String,
    device_code: String,
    user_code: String,
    verification_uri: String,
    verification_uri_complete: String,
    amount_minor: i64,
    currency: String,
    status: String,
    interval_secs: i32,
    next_poll_at: DateTime<Utc>,
    notification_sent: bool,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    version: i64,
    approved_at: Option<DateTime<Utc>>,
    charge_deadline: Option<DateTime<Utc>>,
    attempts: i32,
    failure: Option<String>,
}

impl AuthorizationRow {
    fn new(
        authorization: &PaymentAuthorization,
        version: u64,
    ) -> Result<AuthorizationRow, RepositoryError> {
        let r = authorization.record();
        Ok(AuthorizationRow {
            id: r.id.as_str().to_owned(),
            checkout_id: r.checkout_id.as_str().to_owned(),
            device_code: r.device_code.expose().to_owned(),
            user_code: r.user_code.clone(),
            verification_uri: r.verification_uri.clone(),
            verification_uri_complete: r.verification_uri_complete.clone(),
            amount_minor: r.amount.minor_units(),
            currency: r.amount.currency().code().to_owned(),
            status: r.status.as_str().to_owned(),
            interval_secs: i32::try_from(r.interval_secs)
                .map_err(|_| RepositoryError::Corrupt("interval".into()))?,
            next_poll_at: r.next_poll_at,
            notification_sent: r.notification_sent,
            created_at: r.created_at,
            expires_at: r.expires_at,
            updated_at: r.updated_at,
            version: version_of(version)?,
            approved_at: r.approved_at,
            charge_deadline: r.charge_deadline,
            attempts: i32::try_from(r.attempts)
                .map_err(|_| RepositoryError::Corrupt("attempts".into()))?,
            failure: r.failure.clone(),
        })
    }

    pub(crate) fn into_authorization(self) -> Result<PaymentAuthorization, RepositoryError> {
        let corrupt =
            |what: &str| RepositoryError::Corrupt(format!("authorization {}: {what}", self.id));
        let record = AuthorizationRecord {
            id: PaymentAuthorizationId::parse(&self.id).map_err(|_| corrupt("id"))?,
            checkout_id: CheckoutId::parse(&self.checkout_id)
                .map_err(|_| corrupt("checkout id"))?,
            device_code: DeviceCode::new(self.device_code.clone()),
            user_code: self.user_code.clone(),
            verification_uri: self.verification_uri.clone(),
            verification_uri_complete: self.verification_uri_complete.clone(),
            amount: Money::from_minor(
                self.amount_minor,
                Currency::parse(&self.currency).map_err(|_| corrupt("currency"))?,
            ),
            status: AuthorizationStatus::parse(&self.status).ok_or_else(|| corrupt("status"))?,
            interval_secs: u32::try_from(self.interval_secs).map_err(|_| corrupt("interval"))?,
            next_poll_at: self.next_poll_at,
            notification_sent: self.notification_sent,
            created_at: self.created_at,
            expires_at: self.expires_at,
            approved_at: self.approved_at,
            charge_deadline: self.charge_deadline,
            attempts: u32::try_from(self.attempts).map_err(|_| corrupt("attempts"))?,
            failure: self.failure.clone(),
            updated_at: self.updated_at,
            version: version_from(self.version)?,
        };
        Ok(PaymentAuthorization::restore(record))
    }
}

/// The statuses of an authorization that is not over (the partial indexes use the same).
const LIVE: [&str; 3] = ["pending", "approved", "charging"];

#[async_trait]
impl AuthorizationRepository for PgStorage {
    async fn insert(
        &self,
        authorization: &mut PaymentAuthorization,
    ) -> Result<(), RepositoryError> {
        if authorization.version() != 0 {
            return Err(RepositoryError::AlreadyExists);
        }
        let row = AuthorizationRow::new(authorization, 1)?;
        let mut conn = self.connection().await?;
        diesel::insert_into(payment_authorizations::table)
            .values(&row)
            .prepared()
            .execute(&mut *conn)
            .await
            .map_err(database_error)?;
        authorization.set_version(1);
        Ok(())
    }

    async fn insert_holding(
        &self,
        authorization: &mut PaymentAuthorization,
        checkout: &mut Checkout,
        answer: Option<&Answer>,
        _checkouts: &dyn CheckoutRepository,
    ) -> Result<(), RepositoryError> {
        if authorization.version() != 0 {
            return Err(RepositoryError::AlreadyExists);
        }
        let inserted = AuthorizationRow::new(authorization, 1)?;
        let expected = version_of(checkout.version())?;
        let next = checkout.version() + 1;
        let held = CheckoutRow::new(checkout, next)?;
        let mut conn = self.connection().await?;
        conn.transaction(async |conn| -> Result<_, Failed> {
            swap_checkout(conn, &held, expected)
                .await?
                .map_err(Failed::Refused)?;
            diesel::insert_into(payment_authorizations::table)
                .values(&inserted)
                .prepared()
                .execute(conn)
                .await
                .map_err(|error| Failed::Refused(database_error(error)))?;
            if let Some(answer) = answer {
                crate::pg_guard::finish_in(conn, answer).await?;
            }
            Ok(())
        })
        .await
        .map_err(RepositoryError::from)?;
        authorization.set_version(1);
        checkout.set_version(next);
        Ok(())
    }

    async fn active_for_checkout(
        &self,
        checkout: &CheckoutId,
    ) -> Result<Option<PaymentAuthorization>, RepositoryError> {
        let mut conn = self.connection().await?;
        let row: Option<AuthorizationRow> = payment_authorizations::table
            .filter(payment_authorizations::checkout_id.eq(checkout.as_str()))
            .filter(payment_authorizations::status.eq_any(LIVE))
            .select(AuthorizationRow::as_select())
            .first(&mut *conn)
            .await
            .optional()
            .map_err(database_error)?;
        row.map(AuthorizationRow::into_authorization).transpose()
    }

    async fn latest_for_checkout(
        &self,
        checkout: &CheckoutId,
    ) -> Result<Option<PaymentAuthorization>, RepositoryError> {
        let mut conn = self.connection().await?;
        let row: Option<AuthorizationRow> = payment_authorizations::table
            .filter(payment_authorizations::checkout_id.eq(checkout.as_str()))
            .order(payment_authorizations::created_at.desc())
            .select(AuthorizationRow::as_select())
            .first(&mut *conn)
            .await
            .optional()
            .map_err(database_error)?;
        row.map(AuthorizationRow::into_authorization).transpose()
    }

    async fn get(
        &self,
        id: &PaymentAuthorizationId,
    ) -> Result<PaymentAuthorization, RepositoryError> {
        let mut conn = self.connection().await?;
        let row: AuthorizationRow = payment_authorizations::table
            .find(id.as_str())
            .select(AuthorizationRow::as_select())
            .first(&mut *conn)
            .await
            .map_err(database_error)?;
        row.into_authorization()
    }

    async fn update(
        &self,
        authorization: &mut PaymentAuthorization,
    ) -> Result<(), RepositoryError> {
        let expected = version_of(authorization.version())?;
        let next = authorization.version() + 1;
        let row = AuthorizationRow::new(authorization, next)?;
        let mut conn = self.connection().await?;
        swap_authorization(&mut conn, &row, expected)
            .await
            .map_err(database_error)??;
        authorization.set_version(next);
        Ok(())
    }

    async fn update_reading_checkout(
        &self,
        authorization: &mut PaymentAuthorization,
        _checkouts: &dyn CheckoutRepository,
    ) -> Result<Result<Checkout, RepositoryError>, RepositoryError> {
        let expected = version_of(authorization.version())?;
        let next = authorization.version() + 1;
        let row = AuthorizationRow::new(authorization, next)?;
        let mut conn = self.connection().await?;
        let read = conn
            .transaction(async |conn| {
                if let Err(refused) = swap_authorization(conn, &row, expected).await? {
                    return QueryResult::Ok(Err(refused));
                }
                let checkout: Option<CheckoutRow> = checkouts::table
                    .find(&row.checkout_id)
                    .select(CheckoutRow::as_select())
                    .first(conn)
                    .await
                    .optional()?;
                Ok(Ok(checkout))
            })
            .await
            .map_err(database_error)??;
        drop(conn);
        authorization.set_version(next);
        Ok(match read {
            Some(row) => row.into_checkout(),
            None => Err(RepositoryError::NotFound),
        })
    }

    async fn update_after_checkout(
        &self,
        checkout: &mut Checkout,
        authorization: &mut PaymentAuthorization,
        _checkouts: &dyn CheckoutRepository,
    ) -> (
        Result<(), RepositoryError>,
        Option<Result<(), RepositoryError>>,
    ) {
        let rows = version_of(checkout.version()).and_then(|checkout_expected| {
            let checkout_row = CheckoutRow::new(checkout, checkout.version() + 1)?;
            let expected = version_of(authorization.version())?;
            let row = AuthorizationRow::new(authorization, authorization.version() + 1)?;
            Ok((checkout_expected, checkout_row, expected, row))
        });
        let (checkout_expected, checkout_row, expected, row) = match rows {
            Ok(rows) => rows,
            Err(error) => return (Err(error), None),
        };
        // One transaction, committed whatever the compare-and-swaps say: a refused checkout
        // has written nothing, and a refused authorization leaves the checkout written, as
        // the two writes in turn would.
        let mut conn = match self.connection().await {
            Ok(conn) => conn,
            Err(error) => return (Err(error), None),
        };
        let written = conn
            .transaction(async |conn| {
                let checkout_written =
                    swap_checkout(conn, &checkout_row, checkout_expected).await?;
                if checkout_written.is_err() {
                    return QueryResult::Ok((checkout_written, None));
                }
                let written = swap_authorization(conn, &row, expected).await?;
                Ok((checkout_written, Some(written)))
            })
            .await
            .map_err(database_error);
        drop(conn);
        match written {
            Ok((checkout_written, authorization_written)) => {
                if checkout_written.is_ok() {
                    checkout.set_version(checkout.version() + 1);
                }
                if let Some(Ok(())) = authorization_written {
                    authorization.set_version(authorization.version() + 1);
                }
                (checkout_written, authorization_written)
            }
            // Nothing committed.
            Err(error) => (Err(error), None),
        }
    }

    async fn retire(&self, cutoff: DateTime<Utc>, limit: usize) -> Result<u64, RepositoryError> {
        self.retire_rows(
            "DELETE FROM payment_authorizations WHERE id IN (
                 SELECT id FROM payment_authorizations
                  WHERE status NOT IN ('pending', 'approved', 'charging')
                    AND updated_at < $1
                  LIMIT $2
                  FOR UPDATE SKIP LOCKED)",
            cutoff,
            limit,
        )
        .await
    }

    async fn update_all(
        &self,
        authorizations: &mut [PaymentAuthorization],
    ) -> Vec<Result<(), RepositoryError>> {
        // Each row's compare-and-swap, all in one transaction: a conflict is a row not
        // matched (no error), so it never rolls back the others.
        let mut rows = Vec::with_capacity(authorizations.len());
        let mut results: Vec<Result<(), RepositoryError>> =
            Vec::with_capacity(authorizations.len());
        for authorization in authorizations.iter() {
            let row = version_of(authorization.version()).and_then(|expected| {
                AuthorizationRow::new(authorization, authorization.version() + 1)
                    .map(|row| (expected, row))
            });
            match row {
                Ok(row) => {
                    rows.push(Some(row));
                    results.push(Ok(()));
                }
                Err(error) => {
                    rows.push(None);
                    results.push(Err(error));
                }
            }
        }
        if rows.iter().all(Option::is_none) {
            // Nothing to write: no transaction either (an idle driver's round).
            return results;
        }
        // Rows are locked in id order, so replicas claiming overlapping sets wait for each
        // other instead of deadlocking.
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_by_key(|&i| rows[i].as_ref().map(|(_, row)| row.id.clone()));
        let written = match self.connection().await {
            Ok(mut conn) => conn
                .transaction(async |conn| {
                    let mut changed = vec![None; rows.len()];
                    for i in order {
                        let Some((expected, row)) = &rows[i] else {
                            continue;
                        };
                        let written = diesel::update(
                            payment_authorizations::table
                                .find(&row.id)
                                .filter(payment_authorizations::version.eq(*expected)),
                        )
                        .set(row)
                        .prepared()
                        .execute(conn)
                        .await?;
                        changed[i] = Some(written == 1);
                    }
                    QueryResult::Ok(changed)
                })
                .await
                .map_err(database_error),
            Err(error) => Err(error),
        };
        match written {
            Ok(written) => {
                for ((authorization, result), changed) in authorizations
                    .iter_mut()
                    .zip(results.iter_mut())
                    .zip(written)
                {
                    match changed {
                        Some(true) => authorization.set_version(authorization.version() + 1),
                        // Changed or removed since it was read: either way not this caller's.
                        Some(false) => *result = Err(RepositoryError::Conflict),
                        None => {}
                    }
                }
                results
            }
            Err(error) => results
                .into_iter()
                .map(|result| result.and(Err(error.clone())))
                .collect(),
        }
    }

    async fn with_checkout(
        &self,
        id: &PaymentAuthorizationId,
        _checkouts: &dyn CheckoutRepository,
    ) -> Result<(PaymentAuthorization, Checkout), RepositoryError> {
        // This storage is wired as the checkout repository too: one joined read (shared
        // with the other polls waiting).
        let read = PointRead::Payment(id.as_str().to_owned());
        match self.point_reads.submit(read).await? {
            PointAnswer::Payment(payment) => *payment,
            PointAnswer::Checkout(_) => Err(crate::pg_reads::mismatched()),
        }
    }

    async fn live_counts(&self) -> Result<LiveCounts, RepositoryError> {
        use payment_authorizations::dsl as pa;
        let mut conn = self.connection().await?;
        let rows: Vec<(String, i64)> = pa::payment_authorizations
            .filter(pa::status.eq_any(LIVE))
            .group_by(pa::status)
            .select((pa::status, diesel::dsl::count_star()))
            .load(&mut *conn)
            .await
            .map_err(database_error)?;
        drop(conn);
        let mut counts = LiveCounts::default();
        for (status, count) in rows {
            let count = u64::try_from(count).unwrap_or(0);
            match status.as_str() {
                "pending" => counts.pending = count,
                "approved" => counts.approved = count,
                "charging" => counts.charging = count,
                _ => {}
            }
        }
        Ok(counts)
    }

    async fn due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<DueAuthorizations, RepositoryError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        use payment_authorizations::dsl as pa;
        let mut conn = self.connection().await?;
        // One read-only transaction: the due rows and when to look again, both answered by
        // partial indexes on the live rows.
        // The two statements are independent: sent together, one round trip (pipelining).
        let (rows, next_at) = conn
            .build_transaction()
            .read_only()
            .run(async |conn| {
                let shared: &AsyncPgConnection = conn;
                let rows = pa::payment_authorizations
                    .filter(pa::status.eq_any(LIVE))
                    .filter(
                        pa::next_poll_at
                            .le(now)
                            .or(pa::status.eq("pending").and(pa::expires_at.le(now))),
                    )
                    .order((pa::next_poll_at.asc(), pa::id.asc()))
                    .limit(limit)
                    .select(AuthorizationRow::as_select())
                    .load::<AuthorizationRow>(&mut { shared });
                let next_at = diesel::sql_query(
                    "SELECT LEAST(\
                       (SELECT min(next_poll_at) FROM payment_authorizations \
                         WHERE status IN ('pending', 'approved', 'charging') \
                           AND next_poll_at > $1), \
                       (SELECT min(expires_at) FROM payment_authorizations \
                         WHERE status = 'pending' AND expires_at > $1)) AS at",
                )
                .bind::<diesel::sql_types::Timestamptz, _>(now)
                .prepared()
                .get_result::<NextDue>(&mut { shared });
                let (rows, next) = try_join(rows, next_at).await?;
                QueryResult::Ok((rows, next.at))
            })
            .await
            .map_err(database_error)?;
        drop(conn);
        let due = rows
            .into_iter()
            .map(AuthorizationRow::into_authorization)
            .collect::<Result<_, _>>()?;
        Ok(DueAuthorizations { due, next_at })
    }
}

/// When the next live authorization falls due ([`DueAuthorizations::next_at`]).
#[derive(QueryableByName)]
struct NextDue {
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>)]
    at: Option<DateTime<Utc>>,
}

#[derive(Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = api_keys)]
#[diesel(treat_none_as_null = true)]
#[diesel(check_for_backend(diesel::pg::Pg))]
struct ApiKeyRow {
    id: String,
    name: String,
    org: String,
    scopes: Vec<String>,
    requests_per_minute: i32,
    daily_quota: i32,
    expires_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
    disabled: bool,
    secret_hash: Vec<u8>,
    previous_secret_hash: Option<Vec<u8>>,
    previous_valid_until: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    // Written apart (record_uses), so that a compare-and-swap update never puts an older
    // time back.
    #[diesel(skip_update)]
    last_used_at: Option<DateTime<Utc>>,
    version: i64,
}

impl ApiKeyRow {
    fn new(key: &ApiKey, version: u64) -> Result<ApiKeyRow, RepositoryError> {
        let r = key.record();
        let count = |n: u32| {
            i32::try_from(n).map_err(|_| RepositoryError::Corrupt("limit out of range".into()))
        };
        Ok(ApiKeyRow {
            id: r.id.as_str().to_owned(),
            name: r.name.clone(),
            org: r.org.clone(),
            scopes: r.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
            requests_per_minute: count(r.limits.requests_per_minute)?,
            daily_quota: count(r.limits.daily_quota)?,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
            disabled: r.disabled,
            secret_hash: r.secret_hash.0.to_vec(),
            previous_secret_hash: r.previous.map(|(hash, _)| hash.0.to_vec()),
            previous_valid_until: r.previous.map(|(_, until)| until),
            created_at: r.created_at,
            last_used_at: r.last_used_at,
            version: version_of(version)?,
        })
    }

    fn into_key(self) -> Result<ApiKey, RepositoryError> {
        let corrupt = |what: &str| RepositoryError::Corrupt(format!("api key {}: {what}", self.id));
        let hash = |bytes: &[u8]| {
            <[u8; 32]>::try_from(bytes)
                .map(SecretHash)
                .map_err(|_| corrupt("hash"))
        };
        let previous = match (&self.previous_secret_hash, self.previous_valid_until) {
            (Some(bytes), Some(until)) => Some((hash(bytes)?, until)),
            _ => None,
        };
        let record = ApiKeyRecord {
            id: ApiKeyId::parse(&self.id).map_err(|_| corrupt("id"))?,
            name: self.name.clone(),
            org: self.org.clone(),
            scopes: self
                .scopes
                .iter()
                .map(|s| Scope::parse(s).ok_or_else(|| corrupt("scope")))
                .collect::<Result<_, _>>()?,
            limits: KeyLimits {
                requests_per_minute: u32::try_from(self.requests_per_minute)
                    .map_err(|_| corrupt("limit"))?,
                daily_quota: u32::try_from(self.daily_quota).map_err(|_| corrupt("quota"))?,
            },
            expires_at: self.expires_at,
            revoked_at: self.revoked_at,
            disabled: self.disabled,
            secret_hash: hash(&self.secret_hash)?,
            previous,
            created_at: self.created_at,
            last_used_at: self.last_used_at,
            version: version_from(self.version)?,
        };
        Ok(ApiKey::restore(record))
    }
}

#[async_trait]
impl ApiKeyRepository for PgStorage {
    async fn insert(&self, key: &mut ApiKey) -> Result<(), RepositoryError> {
        self.insert_key(key, None).await
    }

    async fn insert_answering(
        &self,
        key: &mut ApiKey,
        answer: &Answer,
    ) -> Result<(), RepositoryError> {
        self.insert_key(key, Some(answer)).await
    }

    async fn get(&self, id: &ApiKeyId) -> Result<ApiKey, RepositoryError> {
        let mut conn = self.connection().await?;
        let row: ApiKeyRow = api_keys::table
            .find(id.as_str())
            .select(ApiKeyRow::as_select())
            .first(&mut *conn)
            .await
            .map_err(database_error)?;
        row.into_key()
    }

    async fn list(&self) -> Result<Vec<ApiKey>, RepositoryError> {
        let mut conn = self.connection().await?;
        let rows: Vec<ApiKeyRow> = api_keys::table
            .order((api_keys::created_at.asc(), api_keys::id.asc()))
            .select(ApiKeyRow::as_select())
            .load(&mut *conn)
            .await
            .map_err(database_error)?;
        drop(conn);
        rows.into_iter().map(ApiKeyRow::into_key).collect()
    }

    async fn update(&self, key: &mut ApiKey) -> Result<(), RepositoryError> {
        let expected = version_of(key.version())?;
        let next = key.version() + 1;
        let row = ApiKeyRow::new(key, next)?;
        let mut conn = self.connection().await?;
        let changed = diesel::update(
            api_keys::table
                .find(&row.id)
                .filter(api_keys::version.eq(expected)),
        )
        .set(&row)
        .execute(&mut *conn)
        .await
        .map_err(database_error)?;
        if changed != 1 {
            let count = api_keys::table
                .find(&row.id)
                .count()
                .get_result(&mut *conn)
                .await
                .map_err(database_error)?;
            return Err(refused_by(count));
        }
        key.set_version(next);
        Ok(())
    }

    async fn record_uses(&self, uses: &[(ApiKeyId, DateTime<Utc>)]) -> Result<(), RepositoryError> {
        if uses.is_empty() {
            return Ok(());
        }
        let uses: Vec<(String, DateTime<Utc>)> = uses
            .iter()
            .map(|(id, at)| (id.as_str().to_owned(), *at))
            .collect();
        let mut conn = self.connection().await?;
        // One statement per key, sent together (pipelining), in one transaction.
        conn.transaction(async |conn| {
            let shared: &AsyncPgConnection = conn;
            try_join_all(uses.iter().map(|(id, at)| {
                diesel::update(
                    api_keys::table.find(id).filter(
                        api_keys::last_used_at
                            .is_null()
                            .or(api_keys::last_used_at.lt(at)),
                    ),
                )
                .set(api_keys::last_used_at.eq(at))
                .execute(&mut { shared })
            }))
            .await
            .map(drop)
        })
        .await
        .map_err(database_error)
    }
}

/// Inserts a batch of audit rows in one statement. Should that fail, each row is inserted on
/// its own and answered for itself: a row the database refuses never costs the others of
/// its batch their events. Inside a transaction (`in_transaction`) each attempt runs under
/// a savepoint, so that a refused statement leaves the transaction usable.
pub(crate) async fn insert_audit_batch(
    conn: &mut AsyncPgConnection,
    rows: &[&NewAuditRow],
    in_transaction: bool,
) -> Vec<Result<(), RepositoryError>> {
    match insert_audit_rows(conn, rows, in_transaction).await {
        Ok(()) => rows.iter().map(|_| Ok(())).collect(),
        Err(error) if rows.len() == 1 => vec![Err(error)],
        Err(_) => {
            let mut answers = Vec::with_capacity(rows.len());
            for row in rows {
                answers
                    .push(insert_audit_rows(conn, std::slice::from_ref(row), in_transaction).await);
            }
            answers
        }
    }
}

/// One insert of audit rows, under a savepoint when `in_transaction`.
async fn insert_audit_rows(
    conn: &mut AsyncPgConnection,
    rows: &[&NewAuditRow],
    in_transaction: bool,
) -> Result<(), RepositoryError> {
    let insert = diesel::insert_into(audit_events::table).values(rows.to_vec());
    if in_transaction {
        conn.transaction(async |conn| insert.execute(conn).await.map(drop))
            .await
    } else {
        insert.execute(conn).await.map(drop)
    }
    .map_err(database_error)
}

#[derive(Insertable)]
#[diesel(table_name = audit_events)]
pub(crate) struct NewAuditRow {
    at: DateTime<Utc>,
    request_id: String,
    key_id: Option<String>,
    org: Option<String>,
    subject: Option<String>,
    action: String,
    resource: Option<String>,
    outcome: String,
    status: i16,
    source: Option<String>,
    count: i64,
}

impl NewAuditRow {
    pub(crate) fn of(event: &AuditEvent) -> Result<NewAuditRow, RepositoryError> {
        Ok(NewAuditRow {
            at: event.at,
            request_id: event.request_id.clone(),
            key_id: event.key_id.as_ref().map(|k| k.as_str().to_owned()),
            org: event.org.clone(),
            subject: event.subject.clone(),
            action: event.action.clone(),
            resource: event.resource.clone(),
            outcome: event.outcome.as_str().to_owned(),
            status: i16::try_from(event.status)
                .map_err(|_| RepositoryError::Corrupt("status".into()))?,
            source: event.source.clone(),
            count: i64::try_from(event.count)
                .map_err(|_| RepositoryError::Corrupt("count".into()))?,
        })
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = audit_events)]
#[diesel(check_for_backend(diesel::pg::Pg))]
struct AuditRow {
    at: DateTime<Utc>,
    request_id: String,
    key_id: Option<String>,
    org: Option<String>,
    subject: Option<String>,
    action: String,
    resource: Option<String>,
    outcome: String,
    status: i16,
    source: Option<String>,
    count: i64,
}

impl AuditRow {
    fn into_event(self) -> Result<AuditEvent, RepositoryError> {
        let corrupt = |what: &str| {
            RepositoryError::Corrupt(format!("audit event {}: {what}", self.request_id))
        };
        Ok(AuditEvent {
            at: self.at,
            key_id: self
                .key_id
                .as_deref()
                .map(ApiKeyId::parse)
                .transpose()
                .map_err(|_| corrupt("key id"))?,
            org: self.org,
            subject: self.subject,
            action: self.action,
            resource: self.resource,
            outcome: AuditOutcome::parse(&self.outcome).ok_or_else(|| corrupt("outcome"))?,
            status: u16::try_from(self.status).map_err(|_| corrupt("status"))?,
            source: self.source,
            count: u64::try_from(self.count).map_err(|_| corrupt("count"))?,
            request_id: self.request_id,
        })
    }
}

#[async_trait]
impl AuditLog for PgStorage {
    async fn record(&self, event: &AuditEvent) -> Result<(), RepositoryError> {
        match self
            .guard_writes
            .submit(GuardWrite::Audit(NewAuditRow::of(event)?))
            .await?
        {
            GuardWritten::Audit(written) => written,
            _ => Err(crate::pg_guard_batch::mismatched()),
        }
    }

    async fn retire(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, RepositoryError> {
        self.retire_rows(
            "DELETE FROM audit_events WHERE id IN (
                 SELECT id FROM audit_events WHERE at < $1 ORDER BY at LIMIT $2)",
            before,
            limit,
        )
        .await
    }

    async fn add_refusals(&self, events: &[AuditEvent]) -> Result<(), RepositoryError> {
        use diesel::upsert::{DecoratableTarget, excluded};
        let rows = events
            .iter()
            .map(NewAuditRow::of)
            .collect::<Result<Vec<_>, _>>()?;
        if rows.is_empty() {
            return Ok(());
        }
        let mut conn = self.connection().await?;
        // One row per (minute, source, action, status): the partial unique index
        // `audit_events_counted` makes concurrent replicas add up instead of appending.
        diesel::insert_into(audit_events::table)
            .values(&rows)
            .on_conflict((
                audit_events::at,
                audit_events::source,
                audit_events::action,
                audit_events::status,
            ))
            .filter_target(audit_events::source.is_not_null())
            .do_update()
            .set(audit_events::count.eq(audit_events::count + excluded(audit_events::count)))
            .execute(&mut *conn)
            .await
            .map_err(database_error)?;
        Ok(())
    }

    async fn query(
        &self,
        key: Option<&ApiKeyId>,
        limit: usize,
    ) -> Result<Vec<AuditEvent>, RepositoryError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut query = audit_events::table
            .order(audit_events::id.desc())
            .limit(limit)
            .select(AuditRow::as_select())
            .into_boxed();
        if let Some(key) = key {
            query = query.filter(audit_events::key_id.eq(key.as_str()));
        }
        let mut conn = self.connection().await?;
        let rows: Vec<AuditRow> = query.load(&mut *conn).await.map_err(database_error)?;
        drop(conn);
        rows.into_iter().map(AuditRow::into_event).collect()
    }
}
