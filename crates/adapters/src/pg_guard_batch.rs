//! The guardrail writes of requests — rate-counter hits, claims of idempotency keys not
//! seen before, audit rows — share one group commit ([`crate::pg_batch`]): whatever
//! requests are waiting to write is written in one transaction.
//!
//! A request makes two or three of these writes (its hits, perhaps a claim, its audit row)
//! one after the other, and each used to be its own transaction or its own batch queue.
//! Under load the three queues committed in turn, so a checkout paid about four
//! transactions for them; one queue pays one per batch, whatever mix it holds. The rows
//! every replica contends for (the rate counters) are written last, so their locks are
//! held only for the commit.

use diesel_async::{AsyncConnection, AsyncPgConnection};
use sacp_domain::ratelimit::Counter;
use sacp_ports::RepositoryError;

use crate::pg::{Failed, NewAuditRow, insert_audit_batch};
use crate::pg_batch::Batch;
use crate::pg_guard::{NewRecord, hit_batch, insert_all_fresh};

/// One guardrail write waiting for the next batch.
pub(crate) enum GuardWrite {
    /// Add one to each counter; answered with the counts.
    Hit(Vec<Counter>),
    /// Claim a scope with this in-flight record unless it has one; answered with whether
    /// it was claimed (if not, the caller decides on the existing record).
    Claim(NewRecord),
    /// Append an audit row.
    Audit(NewAuditRow),
}

/// The answer to a [`GuardWrite`], of the same kind.
pub(crate) enum GuardWritten {
    /// The counts of a [`GuardWrite::Hit`], in its order.
    Hit(Vec<u64>),
    /// Whether a [`GuardWrite::Claim`] inserted its record.
    Claim(bool),
    /// Whether an audit row was written (a row the database refuses fails alone).
    Audit(Result<(), RepositoryError>),
}

/// The error for a write answered in another kind.
pub(crate) fn mismatched() -> RepositoryError {
    crate::pg_batch::mismatched("guard write")
}

/// Writes a batch: claims, then audit rows, then hits, in one transaction when the batch
/// needs more than one statement. A failed claim or hit fails the whole batch (its callers
/// all get the error, as a lost connection would give them); a refused audit row fails only
/// itself.
pub(crate) fn write_batch<'c>(
    conn: &'c mut AsyncPgConnection,
    jobs: &'c [GuardWrite],
) -> Batch<'c, GuardWritten> {
    Box::pin(write(conn, jobs))
}

async fn write(
    conn: &mut AsyncPgConnection,
    jobs: &[GuardWrite],
) -> Result<Vec<GuardWritten>, RepositoryError> {
    let mut hits: Vec<&[Counter]> = Vec::new();
    let mut claims: Vec<&NewRecord> = Vec::new();
    let mut audits: Vec<&NewAuditRow> = Vec::new();
    for job in jobs {
        match job {
            GuardWrite::Hit(counters) => hits.push(counters),
            GuardWrite::Claim(record) => claims.push(record),
            GuardWrite::Audit(row) => audits.push(row),
        }
    }
    let statements = claims.len() + usize::from(!audits.is_empty()) + usize::from(!hits.is_empty());
    let in_transaction = statements > 1;
    let write = async |conn: &mut AsyncPgConnection| -> Result<_, Failed> {
        let claimed = insert_all_fresh(conn, &claims).await?;
        let audited = if audits.is_empty() {
            Vec::new()
        } else {
            insert_audit_batch(conn, &audits, in_transaction).await
        };
        let counted = if hits.is_empty() {
            Vec::new()
        } else {
            hit_batch(conn, &hits).await.map_err(Failed::Refused)?
        };
        Ok((claimed, audited, counted))
    };
    let (claimed, audited, counted) = if in_transaction {
        conn.transaction(write).await
    } else {
        write(conn).await
    }?;
    // Answers in the jobs' order, each kind's taken in turn.
    let (mut claimed, mut audited, mut counted) = (
        claimed.into_iter(),
        audited.into_iter(),
        counted.into_iter(),
    );
    jobs.iter()
        .map(|job| {
            let answer = match job {
                GuardWrite::Hit(_) => counted.next().map(GuardWritten::Hit),
                GuardWrite::Claim(_) => claimed.next().map(GuardWritten::Claim),
                GuardWrite::Audit(_) => audited.next().map(GuardWritten::Audit),
            };
            answer.ok_or_else(mismatched)
        })
        .collect()
}
