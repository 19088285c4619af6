//! PostgreSQL guardrail storage: every replica sharing the database shares the counters,
//! switches, idempotency records and traffic counts.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::result::Error as DieselError;
use diesel::upsert::excluded;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures_util::future::try_join_all;
use sacp_domain::ApiKeyId;
use sacp_domain::audit::TrafficCount;
use sacp_domain::idempotency::{
    Answer, Begin, Claim, IN_FLIGHT_LEASE, IdempotencyScope, RETENTION, StoredResponse, lease_left,
};
use sacp_domain::ratelimit::Counter;
use sacp_domain::switches::Switches;
use sacp_ports::{IdempotencyStore, RateCounters, RepositoryError, SwitchBoard, TrafficLog};

use crate::pg::schema::{idempotency_records, rate_counters, switches, traffic_minutes};
use crate::pg::{PgStorage, database_error};
use crate::pg_guard_batch::{GuardWrite, GuardWritten, mismatched};
use crate::pg_prepared::PreparedExt;

#[derive(Insertable)]
#[diesel(table_name = rate_counters)]
struct NewCounter {
    name: String,
    window_start: DateTime<Utc>,
    window_end: DateTime<Utc>,
    count: i64,
}

/// Counters sorted by name, so that concurrent multi-row upserts lock rows in one order
/// (no deadlocks between replicas).
fn sorted(counters: &[Counter]) -> Vec<Counter> {
    let mut sorted = counters.to_vec();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    sorted
}

/// A counter's identity: its name and window start.
type CounterKey = (String, DateTime<Utc>);

/// Counts the hits of a batch of requests (one list of counters each) with one upsert, and
/// answers each request the count it would have seen had the requests run one after the
/// other in batch order: the i-th of k hits on a counter that ends at n sees n - k + i.
pub(crate) async fn hit_batch(
    conn: &mut AsyncPgConnection,
    requests: &[&[Counter]],
) -> Result<Vec<Vec<u64>>, RepositoryError> {
    // Sorted by name: replicas lock the rows in one order (no deadlocks).
    let mut hits: BTreeMap<CounterKey, (DateTime<Utc>, i64)> = BTreeMap::new();
    for counter in requests.iter().flat_map(|counters| counters.iter()) {
        hits.entry((counter.name.clone(), counter.window_start))
            .or_insert((counter.window_end, 0))
            .1 += 1;
    }
    let rows: Vec<NewCounter> = hits
        .iter()
        .map(|((name, window_start), (window_end, count))| NewCounter {
            name: name.clone(),
            window_start: *window_start,
            window_end: *window_end,
            count: *count,
        })
        .collect();
    let totals: HashMap<CounterKey, i64> = diesel::insert_into(rate_counters::table)
        .values(&rows)
        .on_conflict((rate_counters::name, rate_counters::window_start))
        .do_update()
        .set(rate_counters::count.eq(rate_counters::count + excluded(rate_counters::count)))
        .returning((
            rate_counters::name,
            rate_counters::window_start,
            rate_counters::count,
        ))
        .get_results::<(String, DateTime<Utc>, i64)>(conn)
        .await
        .map_err(database_error)?
        .into_iter()
        .map(|(name, window_start, count)| ((name, window_start), count))
        .collect();
    let mut handed: HashMap<CounterKey, i64> = HashMap::new();
    requests
        .iter()
        .map(|counters| {
            counters
                .iter()
                .map(|c| {
                    let key = (c.name.clone(), c.window_start);
                    let (Some(total), Some((_, batch))) = (totals.get(&key), hits.get(&key)) else {
                        return Err(RepositoryError::Corrupt(format!("counter {} lost", c.name)));
                    };
                    let nth = handed.entry(key).or_insert(0);
                    *nth += 1;
                    Ok(count_of(total - batch + *nth))
                })
                .collect()
        })
        .collect()
}

fn count_of(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

#[async_trait]
impl RateCounters for PgStorage {
    async fn hit(&self, counters: &[Counter]) -> Result<Vec<u64>, RepositoryError> {
        if counters.is_empty() {
            return Ok(Vec::new());
        }
        match self
            .guard_writes
            .submit(GuardWrite::Hit(counters.to_vec()))
            .await?
        {
            GuardWritten::Hit(counts) => Ok(counts),
            _ => Err(mismatched()),
        }
    }

    async fn release(&self, counters: &[Counter]) -> Result<(), RepositoryError> {
        let counters = sorted(counters);
        let mut conn = self.connection().await?;
        conn.transaction(async |conn| {
            for c in &counters {
                diesel::update(
                    rate_counters::table
                        .filter(rate_counters::name.eq(&c.name))
                        .filter(rate_counters::window_start.eq(c.window_start))
                        .filter(rate_counters::count.gt(0)),
                )
                .set(rate_counters::count.eq(rate_counters::count - 1))
                .execute(conn)
                .await?;
            }
            QueryResult::Ok(())
        })
        .await
        .map_err(database_error)
    }

    async fn purge(&self, now: DateTime<Utc>) -> Result<u64, RepositoryError> {
        let mut conn = self.connection().await?;
        diesel::delete(rate_counters::table.filter(rate_counters::window_end.lt(now)))
            .execute(&mut *conn)
            .await
            .map(|n| u64::try_from(n).unwrap_or(0))
            .map_err(database_error)
    }
}

#[derive(Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = switches)]
#[diesel(check_for_backend(diesel::pg::Pg))]
struct SwitchRow {
    id: i16,
    read_only: bool,
    checkout_creation: bool,
    payments: bool,
    updated_at: DateTime<Utc>,
}

#[async_trait]
impl SwitchBoard for PgStorage {
    async fn switches(&self) -> Result<Switches, RepositoryError> {
        let mut conn = self.connection().await?;
        let row: Option<SwitchRow> = switches::table
            .find(1i16)
            .select(SwitchRow::as_select())
            .first(&mut *conn)
            .await
            .optional()
            .map_err(database_error)?;
        drop(conn);
        Ok(row.map_or_else(Switches::default, |r| Switches {
            read_only: r.read_only,
            checkout_creation: r.checkout_creation,
            payments: r.payments,
        }))
    }

    async fn set_switches(&self, value: &Switches) -> Result<(), RepositoryError> {
        let row = SwitchRow {
            id: 1,
            read_only: value.read_only,
            checkout_creation: value.checkout_creation,
            payments: value.payments,
            updated_at: Utc::now(),
        };
        let mut conn = self.connection().await?;
        diesel::insert_into(switches::table)
            .values(&row)
            .on_conflict(switches::id)
            .do_update()
            .set(&row)
            .execute(&mut *conn)
            .await
            .map(drop)
            .map_err(database_error)
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = idempotency_records)]
#[diesel(check_for_backend(diesel::pg::Pg))]
struct RecordRow {
    fingerprint: String,
    state: String,
    locked_at: DateTime<Utc>,
    status: Option<i16>,
    content_type: Option<String>,
    location: Option<String>,
    body: Option<Vec<u8>>,
    expires_at: DateTime<Utc>,
}

#[derive(Insertable, AsChangeset)]
#[diesel(table_name = idempotency_records)]
#[diesel(treat_none_as_null = true)]
pub(crate) struct NewRecord {
    caller: String,
    method: String,
    path: String,
    idempotency_key: String,
    fingerprint: String,
    state: String,
    locked_at: DateTime<Utc>,
    status: Option<i16>,
    content_type: Option<String>,
    location: Option<String>,
    body: Option<Vec<u8>>,
    expires_at: DateTime<Utc>,
}

fn in_flight(claim: &Claim, fingerprint: &str, now: DateTime<Utc>) -> NewRecord {
    let scope = &claim.scope;
    NewRecord {
        caller: scope.caller.clone(),
        method: scope.method.clone(),
        path: scope.path.clone(),
        idempotency_key: scope.key.as_str().to_owned(),
        fingerprint: fingerprint.to_owned(),
        state: "in_flight".into(),
        locked_at: claim.claimed_at,
        status: None,
        content_type: None,
        location: None,
        body: None,
        expires_at: now + RETENTION,
    }
}

/// The row of one scope, as a diesel filter.
macro_rules! scope_filter {
    ($scope:expr) => {
        idempotency_records::table
            .filter(idempotency_records::caller.eq(&$scope.caller))
            .filter(idempotency_records::method.eq(&$scope.method))
            .filter(idempotency_records::path.eq(&$scope.path))
            .filter(idempotency_records::idempotency_key.eq($scope.key.as_str()))
    };
}

/// The row of a claim still held: in flight since the claim was taken.
macro_rules! held_filter {
    ($claim:expr) => {
        scope_filter!($claim.scope)
            .filter(idempotency_records::state.eq("in_flight"))
            .filter(idempotency_records::locked_at.eq($claim.claimed_at))
    };
}

/// Inserts an in-flight record for `claim` unless its scope has one; whether it did.
async fn claim_fresh(
    conn: &mut AsyncPgConnection,
    claim: &Claim,
    fingerprint: &str,
    now: DateTime<Utc>,
) -> Result<bool, DieselError> {
    insert_fresh(conn, &in_flight(claim, fingerprint, now)).await
}

/// Inserts the in-flight `record` unless its scope has a record; whether it did.
async fn insert_fresh(
    conn: &mut AsyncPgConnection,
    record: &NewRecord,
) -> Result<bool, DieselError> {
    let inserted = diesel::insert_into(idempotency_records::table)
        .values(record)
        .on_conflict_do_nothing()
        .prepared()
        .execute(conn)
        .await?;
    Ok(inserted == 1)
}

/// [`insert_fresh`] for each of `records`, the statements sent together (pipelining: one
/// round trip for the lot); whether each inserted its record.
pub(crate) async fn insert_all_fresh(
    conn: &mut AsyncPgConnection,
    records: &[&NewRecord],
) -> Result<Vec<bool>, DieselError> {
    let shared: &AsyncPgConnection = conn;
    try_join_all(records.iter().map(|record| async move {
        diesel::insert_into(idempotency_records::table)
            .values(*record)
            .on_conflict_do_nothing()
            .prepared()
            .execute(&mut { shared })
            .await
            .map(|inserted| inserted == 1)
    }))
    .await
}

/// Decides a claim on a scope that may already have a record (in a transaction: the
/// record's row is locked while deciding).
async fn decide(
    conn: &mut AsyncPgConnection,
    claim: Claim,
    fingerprint: &str,
    now: DateTime<Utc>,
) -> Result<Begin, DieselError> {
    let scope = &claim.scope;
    if claim_fresh(conn, &claim, fingerprint, now).await? {
        return Ok(Begin::Started(claim));
    }
    let fresh = in_flight(&claim, fingerprint, now);
    let row: RecordRow = scope_filter!(scope)
        .select(RecordRow::as_select())
        .for_update()
        .first(conn)
        .await?;
    let stale = row.state == "in_flight" && row.locked_at + IN_FLIGHT_LEASE <= now;
    if row.expires_at < now || stale {
        diesel::update(scope_filter!(scope))
            .set(&fresh)
            .prepared()
            .execute(conn)
            .await?;
        return Ok(Begin::Started(claim));
    }
    if row.fingerprint != fingerprint {
        return Ok(Begin::Mismatch);
    }
    if row.state == "in_flight" {
        return Ok(Begin::InFlight {
            retry_after_secs: lease_left(row.locked_at, now),
        });
    }
    Ok(Begin::Replay(StoredResponse {
        status: row
            .status
            .and_then(|s| u16::try_from(s).ok())
            .unwrap_or(200),
        content_type: row.content_type,
        location: row.location,
        body: row.body.unwrap_or_default(),
    }))
}

/// Finishes a held claim inside the caller's transaction; `NotFound` when it is no longer
/// held (then the caller's transaction rolls back).
pub(crate) async fn finish_in(
    conn: &mut AsyncPgConnection,
    answer: &Answer,
) -> Result<(), DieselError> {
    let response = &answer.response;
    let status = i16::try_from(response.status)
        .map_err(|_| DieselError::QueryBuilderError("status out of range".into()))?;
    let changed = diesel::update(held_filter!(answer.claim))
        .set((
            idempotency_records::state.eq("done"),
            idempotency_records::status.eq(Some(status)),
            idempotency_records::content_type.eq(response.content_type.clone()),
            idempotency_records::location.eq(response.location.clone()),
            idempotency_records::body.eq(Some(response.body.clone())),
            idempotency_records::expires_at.eq(answer.at + RETENTION),
        ))
        .prepared()
        .execute(conn)
        .await?;
    if changed == 1 {
        Ok(())
    } else {
        Err(DieselError::NotFound)
    }
}

#[async_trait]
impl IdempotencyStore for PgStorage {
    async fn begin(
        &self,
        scope: &IdempotencyScope,
        fingerprint: &str,
        now: DateTime<Utc>,
    ) -> Result<Begin, RepositoryError> {
        // The usual case, a key not seen before, is one statement in the next batch of
        // guard writes; only a key already there needs the locked read of `decide`.
        let claim = Claim::new(scope.clone(), now);
        let fresh = in_flight(&claim, fingerprint, now);
        match self.guard_writes.submit(GuardWrite::Claim(fresh)).await? {
            GuardWritten::Claim(true) => return Ok(Begin::Started(claim)),
            GuardWritten::Claim(false) => {}
            _ => return Err(mismatched()),
        }
        let mut conn = self.connection().await?;
        conn.transaction(async |conn| decide(conn, claim, fingerprint, now).await)
            .await
            .map_err(database_error)
    }

    async fn finish(
        &self,
        claim: &Claim,
        response: &StoredResponse,
        now: DateTime<Utc>,
    ) -> Result<(), RepositoryError> {
        let answer = Answer {
            claim: claim.clone(),
            response: response.clone(),
            at: now,
        };
        let mut conn = self.connection().await?;
        finish_in(&mut conn, &answer).await.map_err(database_error)
    }

    async fn abandon(&self, claim: &Claim) -> Result<(), RepositoryError> {
        let mut conn = self.connection().await?;
        diesel::delete(held_filter!(claim))
            .execute(&mut *conn)
            .await
            .map(drop)
            .map_err(database_error)
    }

    async fn purge(&self, now: DateTime<Utc>) -> Result<u64, RepositoryError> {
        let mut conn = self.connection().await?;
        diesel::delete(idempotency_records::table.filter(idempotency_records::expires_at.lt(now)))
            .execute(&mut *conn)
            .await
            .map(|n| u64::try_from(n).unwrap_or(0))
            .map_err(database_error)
    }
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = traffic_minutes)]
#[diesel(check_for_backend(diesel::pg::Pg))]
struct TrafficRow {
    minute: DateTime<Utc>,
    key_id: String,
    route: String,
    status: i16,
    count: i64,
}

#[async_trait]
impl TrafficLog for PgStorage {
    async fn retire(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, RepositoryError> {
        self.retire_rows(
            "DELETE FROM traffic_minutes WHERE ctid IN (
                 SELECT ctid FROM traffic_minutes WHERE minute < $1 LIMIT $2)",
            before,
            limit,
        )
        .await
    }

    async fn add(&self, counts: &[TrafficCount]) -> Result<(), RepositoryError> {
        let mut rows = counts
            .iter()
            .map(|c| {
                Ok(TrafficRow {
                    minute: c.minute,
                    key_id: c
                        .key_id
                        .as_ref()
                        .map(|k| k.as_str().to_owned())
                        .unwrap_or_default(),
                    route: c.route.clone(),
                    status: i16::try_from(c.status)
                        .map_err(|_| RepositoryError::Corrupt("status".into()))?,
                    count: i64::try_from(c.count).unwrap_or(i64::MAX),
                })
            })
            .collect::<Result<Vec<_>, RepositoryError>>()?;
        if rows.is_empty() {
            return Ok(());
        }
        // One lock order for every replica's batch.
        rows.sort_by(|a, b| {
            (a.minute, &a.key_id, &a.route, a.status)
                .cmp(&(b.minute, &b.key_id, &b.route, b.status))
        });
        let mut conn = self.connection().await?;
        diesel::insert_into(traffic_minutes::table)
            .values(&rows)
            .on_conflict((
                traffic_minutes::minute,
                traffic_minutes::key_id,
                traffic_minutes::route,
                traffic_minutes::status,
            ))
            .do_update()
            .set(
                traffic_minutes::count
                    .eq(traffic_minutes::count + excluded(traffic_minutes::count)),
            )
            .execute(&mut *conn)
            .await
            .map(drop)
            .map_err(database_error)
    }

    async fn traffic(
        &self,
        key: Option<&ApiKeyId>,
        limit: usize,
    ) -> Result<Vec<TrafficCount>, RepositoryError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut query = traffic_minutes::table
            .order((
                traffic_minutes::minute.desc(),
                traffic_minutes::route,
                traffic_minutes::status,
            ))
            .limit(limit)
            .select(TrafficRow::as_select())
            .into_boxed();
        if let Some(key) = key {
            query = query.filter(traffic_minutes::key_id.eq(key.as_str()));
        }
        let mut conn = self.connection().await?;
        let rows: Vec<TrafficRow> = query.load(&mut *conn).await.map_err(database_error)?;
        drop(conn);
        rows.into_iter()
            .map(|r| {
                let key_id =
                    if r.key_id.is_empty() {
                        None
                    } else {
                        Some(ApiKeyId::parse(&r.key_id).map_err(|_| {
                            RepositoryError::Corrupt(format!("key id {}", r.key_id))
                        })?)
                    };
                Ok(TrafficCount {
                    minute: r.minute,
                    key_id,
                    route: r.route,
                    status: u16::try_from(r.status)
                        .map_err(|_| RepositoryError::Corrupt("status".into()))?,
                    count: count_of(r.count),
                })
            })
            .collect()
    }
}
