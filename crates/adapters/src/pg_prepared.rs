//! Writes prepared once per connection.
//!
//! diesel marks every `UPDATE`, every upsert and every insert with a defaultable column as
//! unsafe to cache, because for those statements a type does not fix the SQL text (a
//! changeset may leave a `None` column out). diesel-async then prepares such a statement
//! for each execution and closes it after: a round trip for the `Parse` before the one that
//! runs it, and PostgreSQL parses, analyses and plans the text every time. On the checkout
//! flow that was most of the statements (a statement log: 45,214 prepared statement names
//! for 52,887 executions), and the parser and planner took about a quarter of PostgreSQL's
//! CPU.
//!
//! [`Prepared`] says a statement may be cached: the cache is then keyed by its SQL text and
//! bind types (its query id is dynamic), so a statement whose text varies gets one entry per
//! text, never another's plan. Wrap only statements whose text takes a few shapes (a
//! single-row write, a changeset whose columns are all always written), so that the cache of
//! each connection stays small.

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::result::QueryResult;

/// A statement to be prepared once per connection and cached by its SQL text (see the
/// module documentation).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Prepared<Q>(pub(crate) Q);

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for Prepared<Q> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    fn is_safe_to_cache_prepared(&self, _backend: &Pg) -> QueryResult<bool> {
        // Safe because the query id below is dynamic: the cache key is the SQL text itself.
        Ok(true)
    }
}

impl<Q> QueryId for Prepared<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: Query> Query for Prepared<Q> {
    type SqlType = Q::SqlType;
}

/// Extension: `.prepared()` on any statement.
pub(crate) trait PreparedExt: Sized {
    /// This statement, prepared once per connection (see [`Prepared`]).
    fn prepared(self) -> Prepared<Self> {
        Prepared(self)
    }
}

impl<Q: QueryFragment<Pg>> PreparedExt for Q {}

#[cfg(test)]
mod tests {
    use diesel::prelude::*;
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};

    use super::PreparedExt;

    diesel::table! {
        prepared_probe (id) {
            id -> Int8,
            note -> Text,
        }
    }

    /// A connection to the test server (`TEST_DATABASE_URL`, else `DATABASE_URL`, else the
    /// local cluster); `None` (skip) when none is reachable, except under `CI=true`.
    async fn connection() -> Option<AsyncPgConnection> {
        let url = std::env::var("TEST_DATABASE_URL")
            .or_else(|_| std::env::var("DATABASE_URL"))
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        match AsyncPgConnection::establish(&url).await {
            Ok(conn) => Some(conn),
            Err(error) => {
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "CI must run the PostgreSQL tests, but {url} is unusable: {error}"
                );
                eprintln!("skipping: PostgreSQL at {url} is unusable: {error}");
                None
            }
        }
    }

    /// Statements this session holds prepared that update the probe table.
    async fn prepared_updates(conn: &mut AsyncPgConnection) -> i64 {
        diesel::dsl::sql::<diesel::sql_types::BigInt>(
            "SELECT count(*) FROM pg_prepared_statements \
             WHERE statement LIKE 'UPDATE \"prepared_probe\"%'",
        )
        .get_result(conn)
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn a_prepared_update_is_parsed_once_per_connection_and_still_writes() {
        let Some(mut conn) = connection().await else {
            return;
        };
        // A temporary table: this session's own, so tests on one database do not meet.
        conn.batch_execute(
            "CREATE TEMP TABLE prepared_probe (id int8 PRIMARY KEY, note text NOT NULL); \
             INSERT INTO prepared_probe VALUES (1, 'first'), (2, 'second')",
        )
        .await
        .unwrap();
        let update = |id: i64, note: &'static str| {
            diesel::update(prepared_probe::table.find(id)).set(prepared_probe::note.eq(note))
        };
        for note in ["a", "b", "c"] {
            update(1, note).execute(&mut conn).await.unwrap();
        }
        assert_eq!(
            prepared_updates(&mut conn).await,
            0,
            "diesel prepares an UPDATE for each execution and closes it"
        );
        for (id, note) in [(1, "d"), (2, "e"), (1, "f")] {
            let changed = update(id, note)
                .prepared()
                .execute(&mut conn)
                .await
                .unwrap();
            assert_eq!(changed, 1);
        }
        assert_eq!(
            prepared_updates(&mut conn).await,
            1,
            "one statement, prepared once, serves every execution"
        );
        let notes: Vec<String> = prepared_probe::table
            .order(prepared_probe::id)
            .select(prepared_probe::note)
            .load(&mut conn)
            .await
            .unwrap();
        assert_eq!(notes, ["f", "e"], "each execution wrote its own values");
    }
}
