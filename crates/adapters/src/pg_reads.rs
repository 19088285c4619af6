//! Point reads by id that many requests make at once — a checkout (a PATCH or `complete`
//! reading it), a payment with its checkout (a status poll) — gathered by the group-commit
//! thread of [`crate::pg_batch`] and answered with one statement per kind
//! (`WHERE id = ANY(...)`).
//!
//! Under checkout load these reads were a quarter of PostgreSQL's transactions, each a
//! round trip with its own snapshot. Batched, the requests waiting together share one.
//! Nothing waits for a batch to fill: a lone read is a batch of one, as fast as before.
//! A read is never older than its request: each batch is read after its requests arrived.

use std::collections::HashMap;

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use futures_util::future::try_join;
use sacp_domain::{Checkout, PaymentAuthorization};
use sacp_ports::RepositoryError;

use crate::pg::schema::{checkouts, payment_authorizations};
use crate::pg::{AuthorizationRow, CheckoutRow, Failed};
use crate::pg_batch::Batch;

/// One read waiting for the next batch.
pub(crate) enum PointRead {
    /// The checkout with this id.
    Checkout(String),
    /// The payment authorization with this id, and its checkout.
    Payment(String),
}

/// The answer to a [`PointRead`], of the same kind: `NotFound` for an unknown id. Boxed:
/// answers travel through a channel, and a pointer moves cheaper than a record.
pub(crate) enum PointAnswer {
    /// The checkout read.
    Checkout(Box<Result<Checkout, RepositoryError>>),
    /// The authorization and its checkout read.
    Payment(Box<Result<(PaymentAuthorization, Checkout), RepositoryError>>),
}

/// The error for a read answered in another kind.
pub(crate) fn mismatched() -> RepositoryError {
    crate::pg_batch::mismatched("point read")
}

/// Reads a batch: the checkouts in one statement, the payments (joined with their
/// checkouts) in another, the two in one read-only transaction when both are asked for.
pub(crate) fn read_batch<'c>(
    conn: &'c mut AsyncPgConnection,
    reads: &'c [PointRead],
) -> Batch<'c, PointAnswer> {
    Box::pin(read_all(conn, reads))
}

async fn read_all(
    conn: &mut AsyncPgConnection,
    reads: &[PointRead],
) -> Result<Vec<PointAnswer>, RepositoryError> {
    let mut checkout_ids: Vec<&str> = Vec::new();
    let mut payment_ids: Vec<&str> = Vec::new();
    for read in reads {
        match read {
            PointRead::Checkout(id) => checkout_ids.push(id),
            PointRead::Payment(id) => payment_ids.push(id),
        }
    }
    // The two statements are independent: both are sent before either answer is read
    // (pipelining), one round trip for the pair.
    let read = async |conn: &mut AsyncPgConnection| -> Result<_, Failed> {
        let shared: &AsyncPgConnection = conn;
        let found_checkouts = async {
            if checkout_ids.is_empty() {
                return QueryResult::Ok(HashMap::new());
            }
            let rows = checkouts::table
                .filter(checkouts::id.eq_any(&checkout_ids))
                .select(CheckoutRow::as_select())
                .load::<CheckoutRow>(&mut { shared })
                .await?;
            Ok(rows
                .into_iter()
                .map(|row| (row.id.clone(), row))
                .collect::<HashMap<String, CheckoutRow>>())
        };
        let found_payments = async {
            if payment_ids.is_empty() {
                return QueryResult::Ok(HashMap::new());
            }
            let rows = payment_authorizations::table
                .inner_join(checkouts::table)
                .filter(payment_authorizations::id.eq_any(&payment_ids))
                .select((AuthorizationRow::as_select(), CheckoutRow::as_select()))
                .load::<(AuthorizationRow, CheckoutRow)>(&mut { shared })
                .await?;
            Ok(rows
                .into_iter()
                .map(|(authorization, checkout)| {
                    (authorization.id.clone(), (authorization, checkout))
                })
                .collect::<HashMap<String, (AuthorizationRow, CheckoutRow)>>())
        };
        Ok(try_join(found_checkouts, found_payments).await?)
    };
    let (found_checkouts, found_payments) = if !checkout_ids.is_empty() && !payment_ids.is_empty() {
        conn.build_transaction().read_only().run(read).await
    } else {
        read(conn).await
    }?;
    // Each row is made a domain value once, then handed to every read that asked for it.
    let checkouts: HashMap<String, Result<Checkout, RepositoryError>> = found_checkouts
        .into_iter()
        .map(|(id, row)| (id, row.into_checkout()))
        .collect();
    let payments: HashMap<String, Result<(PaymentAuthorization, Checkout), RepositoryError>> =
        found_payments
            .into_iter()
            .map(|(id, (authorization, checkout))| {
                let payment = authorization
                    .into_authorization()
                    .and_then(|authorization| Ok((authorization, checkout.into_checkout()?)));
                (id, payment)
            })
            .collect();
    Ok(reads
        .iter()
        .map(|read| match read {
            PointRead::Checkout(id) => PointAnswer::Checkout(Box::new(
                checkouts
                    .get(id)
                    .cloned()
                    .unwrap_or(Err(RepositoryError::NotFound)),
            )),
            PointRead::Payment(id) => PointAnswer::Payment(Box::new(
                payments
                    .get(id)
                    .cloned()
                    .unwrap_or(Err(RepositoryError::NotFound)),
            )),
        })
        .collect())
}
