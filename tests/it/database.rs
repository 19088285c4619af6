//! A fresh PostgreSQL database per test, dropped afterwards.
//!
//! The server is `TEST_DATABASE_URL`, else `DATABASE_URL`, else
//! `postgres://postgres@127.0.0.1:5432/postgres`. Without a reachable server the tests that
//! need one are skipped — except under `CI=true`, where they fail.

use diesel::pg::PgConnection;
use diesel::{Connection, RunQueryDsl};

pub struct TestDatabase {
    pub url: String,
    name: String,
    admin_url: String,
}

fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn with_database(url: &str, name: &str) -> String {
    match url.rsplit_once('/') {
        Some((server, _)) => format!("{server}/{name}"),
        None => format!("{url}/{name}"),
    }
}

impl TestDatabase {
    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// PostgreSQL storage on this database, migrated.
    pub async fn migrated_storage(&self) -> std::sync::Arc<sacp_adapters::pg::PgStorage> {
        let storage = sacp_adapters::pg::PgStorage::connect(
            &self.url,
            sacp_adapters::pg::PgConfig::default(),
        )
        .unwrap();
        storage.migrate().await.unwrap();
        std::sync::Arc::new(storage)
    }

    /// Creates a database, or returns `None` (skip) when no server is reachable outside CI.
    pub async fn create() -> Option<TestDatabase> {
        let admin_url = admin_url();
        let name = format!(
            "sacp_test_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
                % 1_000_000_000
        );
        let created = {
            let (admin_url, name) = (admin_url.clone(), name.clone());
            tokio::task::spawn_blocking(move || {
                let mut conn = PgConnection::establish(&admin_url)?;
                diesel::sql_query(format!("CREATE DATABASE {name}")).execute(&mut conn)?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            })
            .await
            .unwrap()
        };
        match created {
            Ok(()) => Some(TestDatabase {
                url: with_database(&admin_url, &name),
                name,
                admin_url,
            }),
            Err(error) => {
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "CI must run the PostgreSQL tests, but {admin_url} is unusable: {error}"
                );
                eprintln!("skipping: PostgreSQL at {admin_url} is unusable: {error}");
                None
            }
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop happens inside async tests: use a plain thread for the blocking call.
        let _ = std::thread::spawn(move || {
            if let Ok(mut conn) = PgConnection::establish(&admin_url) {
                let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn);
            }
        })
        .join();
    }
}
