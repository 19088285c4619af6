//! The PostgreSQL connection pool: diesel-async connections (tokio-postgres underneath) in a
//! deadpool pool, opened over TLS when the server offers it.
//!
//! A query is an async call on the request's own task: no thread hand-off per statement,
//! and statements that do not depend on each other can share one round trip (pipelining).
//! TLS follows the URL's `sslmode` as libpq reads it, so a URL that worked before works now.

use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use deadpool::managed::{self, Metrics, RecycleResult};
use diesel::ConnectionError;
use diesel_async::AsyncPgConnection;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, PoolError, PoolableConnection,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sacp_ports::{RepositoryError, telemetry};
use tokio_postgres::NoTls;
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// How recently a connection must have been used for check-out to skip its ping.
const FRESH: Duration = Duration::from_secs(1);

/// A future of a connection being opened.
type Opening<'a> =
    Pin<Box<dyn Future<Output = diesel::ConnectionResult<AsyncPgConnection>> + Send + 'a>>;

/// A pool of connections (one per querying thread: [`Pools`]).
pub(crate) type PgPool = managed::Pool<Manager>;

/// One pool per thread that queries, each holding its share of the connections.
///
/// A connection's driver task (tokio-postgres's) runs on the runtime of the thread that
/// opened it. With one pool shared by every actix worker, a worker's query often went out
/// on a connection another worker opened: each statement then woke that thread to write
/// it and woke the asking one with the answer, two cross-thread hand-offs per statement.
/// A thread's own pool keeps the whole round trip on the thread (the same remedy as the
/// per-thread HTTP clients of [`crate::http`]).
pub(crate) struct Pools {
    url: String,
    per_thread: usize,
    pools: thread_local::ThreadLocal<PgPool>,
}

impl Pools {
    /// Pools of at most `max_connections` together, split between `threads` querying
    /// threads (at least one connection each).
    pub(crate) fn new(url: &str, max_connections: usize, threads: usize) -> Pools {
        Pools {
            url: url.to_owned(),
            per_thread: (max_connections / threads.max(1)).max(1),
            pools: thread_local::ThreadLocal::new(),
        }
    }

    /// The calling thread's pool (made on first use; connections open lazily).
    pub(crate) fn local(&self) -> Result<&PgPool, RepositoryError> {
        self.pools.get_or_try(|| {
            // Last in, first out: under moderate load the same few connections (and their
            // server processes, warm in cache) do the work, and the rest idle.
            PgPool::builder(Manager::new(&self.url))
                .max_size(self.per_thread)
                .queue_mode(managed::QueueMode::Lifo)
                .build()
                .map_err(|e| RepositoryError::Unavailable(format!("database pool: {e}")))
        })
    }

    /// Connections of every thread's pool: (open, idle, limit).
    pub(crate) fn status(&self) -> (usize, usize, usize) {
        self.pools
            .iter()
            .fold((0, 0, 0), |(size, idle, max), pool| {
                let status = pool.status();
                (
                    size + status.size,
                    idle + status.available,
                    max + status.max_size,
                )
            })
    }

    /// Opens a connection outside the pools (for the migrations, say).
    pub(crate) async fn open(&self) -> Result<AsyncPgConnection, RepositoryError> {
        Manager::new(&self.url).open().await
    }
}

/// diesel-async's connection manager, with the check-out ping (`SELECT 1`) skipped for
/// connections used within [`FRESH`]: a busy pool pays no extra round trip per query, while
/// a connection left idle (across a database restart, say) is still checked before use.
pub(crate) struct Manager {
    inner: AsyncDieselConnectionManager<AsyncPgConnection>,
    url: String,
}

impl Manager {
    /// The manager of connections to `database_url`.
    pub(crate) fn new(database_url: &str) -> Manager {
        let mut config = ManagerConfig::default();
        config.custom_setup = Box::new(establish);
        Manager {
            inner: AsyncDieselConnectionManager::new_with_config(database_url, config),
            url: database_url.to_owned(),
        }
    }

    /// Opens a connection outside the pool (for the migrations, say).
    pub(crate) async fn open(&self) -> Result<AsyncPgConnection, RepositoryError> {
        establish(&self.url)
            .await
            .map_err(|e| RepositoryError::Unavailable(format!("cannot connect: {e}")))
    }
}

impl managed::Manager for Manager {
    type Type = AsyncPgConnection;
    type Error = PoolError;

    async fn create(&self) -> Result<AsyncPgConnection, PoolError> {
        self.inner.create().await
    }

    async fn recycle(
        &self,
        conn: &mut AsyncPgConnection,
        metrics: &Metrics,
    ) -> RecycleResult<PoolError> {
        // `last_used` is the time since the previous check-out (or the opening).
        if metrics.last_used() < FRESH {
            if conn.is_broken() {
                return Err(managed::RecycleError::message("broken connection"));
            }
            return Ok(());
        }
        self.inner.recycle(conn, metrics).await
    }
}

/// Opens a connection with the TLS that libpq would use for the same URL (see
/// [`TlsMode`]).
pub(crate) fn establish(url: &str) -> Opening<'_> {
    Box::pin(async move {
        let bad = |e: &dyn std::fmt::Display| ConnectionError::BadConnection(e.to_string());
        let (url, mode) = TlsMode::split(url).map_err(|e| bad(&e))?;
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| bad(&e))?;
        // libpq ignores `sslmode` on Unix-domain sockets (there is no TLS over them): a
        // socket URL without `sslmode=disable` must still connect, not fail in the TLS
        // connector, which has no server name to give a socket path.
        let mode = if on_unix_sockets_only(&config) {
            TlsMode::Disable
        } else {
            mode
        };
        let (client, connection) = match mode {
            TlsMode::Disable => {
                config.ssl_mode(SslMode::Disable);
                let (client, connection) = config.connect(NoTls).await.map_err(|e| bad(&e))?;
                return AsyncPgConnection::try_from_client_and_connection(client, connection).await;
            }
            TlsMode::Prefer | TlsMode::Require => {
                config.ssl_mode(if mode == TlsMode::Prefer {
                    SslMode::Prefer
                } else {
                    SslMode::Require
                });
                let tls = MakeRustlsConnect::new(tls_config(false).map_err(|e| bad(&e))?);
                config.connect(tls).await.map_err(|e| bad(&e))?
            }
            TlsMode::Verify => {
                config.ssl_mode(SslMode::Require);
                let tls = MakeRustlsConnect::new(tls_config(true).map_err(|e| bad(&e))?);
                config.connect(tls).await.map_err(|e| bad(&e))?
            }
        };
        AsyncPgConnection::try_from_client_and_connection(client, connection).await
    })
}

/// Whether every host `config` names is a Unix-domain socket (a path, e.g.
/// `postgres://u@%2Fvar%2Frun%2Fpostgresql/db` or `?host=/var/run/postgresql`).
fn on_unix_sockets_only(config: &tokio_postgres::Config) -> bool {
    let hosts = config.get_hosts();
    !hosts.is_empty()
        && hosts
            .iter()
            .all(|host| matches!(host, tokio_postgres::config::Host::Unix(_)))
}

/// TLS to the database, as the URL's `sslmode` asks, with libpq's meanings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TlsMode {
    /// `disable`: never.
    Disable,
    /// `allow`, `prefer` (the default): when the server offers it; its certificate is not
    /// checked.
    Prefer,
    /// `require`: always; the certificate is not checked.
    Require,
    /// `verify-ca`, `verify-full`: always, with the certificate checked against the
    /// platform's roots for the host's name.
    Verify,
}

impl TlsMode {
    /// The URL without its `sslmode` (the driver knows fewer modes than libpq), and the mode.
    fn split(database_url: &str) -> Result<(String, TlsMode), String> {
        let mut url = url::Url::parse(database_url).map_err(|e| format!("database URL: {e}"))?;
        let mut mode = TlsMode::Prefer;
        let mut kept = Vec::new();
        for (name, value) in url.query_pairs() {
            if name == "sslmode" {
                mode = match value.as_ref() {
                    "disable" => TlsMode::Disable,
                    "allow" | "prefer" => TlsMode::Prefer,
                    "require" => TlsMode::Require,
                    "verify-ca" | "verify-full" => TlsMode::Verify,
                    other => return Err(format!("database URL: unknown sslmode {other:?}")),
                };
            } else {
                kept.push((name.into_owned(), value.into_owned()));
            }
        }
        if kept.is_empty() {
            url.set_query(None);
        } else {
            url.query_pairs_mut().clear().extend_pairs(kept);
        }
        Ok((url.into(), mode))
    }
}

/// The TLS settings of database connections (made once each): with the platform's
/// verifier, or — for the modes where libpq checks nothing — accepting any certificate.
fn tls_config(verify: bool) -> Result<rustls::ClientConfig, String> {
    static VERIFYING: OnceLock<Result<rustls::ClientConfig, String>> = OnceLock::new();
    static ENCRYPTING: OnceLock<Result<rustls::ClientConfig, String>> = OnceLock::new();
    let made = if verify { &VERIFYING } else { &ENCRYPTING };
    made.get_or_init(|| {
        use rustls_platform_verifier::BuilderVerifierExt;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let builder = if verify {
            builder
                .with_platform_verifier()
                .map_err(|e| e.to_string())?
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Unchecked(provider)))
        };
        Ok(builder.with_no_client_auth())
    })
    .clone()
}

/// The certificate check of `sslmode=prefer` and `require`, which is none (as libpq's):
/// the connection is encrypted, its peer not authenticated. Signatures are still verified,
/// so the handshake itself is sound.
#[derive(Debug)]
struct Unchecked(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A pooled connection checked out for one piece of work; the time it was held is recorded
/// when it goes back.
pub(crate) struct Held {
    conn: managed::Object<Manager>,
    since: Instant,
}

impl Deref for Held {
    type Target = AsyncPgConnection;

    fn deref(&self) -> &AsyncPgConnection {
        &self.conn
    }
}

impl DerefMut for Held {
    fn deref_mut(&mut self) -> &mut AsyncPgConnection {
        &mut self.conn
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        static STATEMENT: OnceLock<metrics::Histogram> = OnceLock::new();
        STATEMENT
            .get_or_init(|| metrics::histogram!(telemetry::DB_STATEMENT_DURATION))
            .record(self.since.elapsed().as_secs_f64());
    }
}

/// Checks a connection out of the calling thread's pool, waiting at most `timeout`:
/// `Unavailable` (and the timeout counter bumped) when none comes — the pool is exhausted
/// or the database down.
pub(crate) async fn check_out(pools: &Pools, timeout: Duration) -> Result<Held, RepositoryError> {
    let pool = pools.local()?;
    static WAIT: OnceLock<metrics::Histogram> = OnceLock::new();
    static TIMEOUTS: OnceLock<metrics::Counter> = OnceLock::new();
    let asked = Instant::now();
    let failed = |why: String| {
        TIMEOUTS
            .get_or_init(|| metrics::counter!(telemetry::DB_POOL_TIMEOUTS))
            .increment(1);
        RepositoryError::Unavailable(why)
    };
    let conn = match tokio::time::timeout(timeout, pool.get()).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(error)) => return Err(failed(format!("no database connection: {error}"))),
        Err(_elapsed) => {
            return Err(failed(format!(
                "no database connection within {} ms",
                timeout.as_millis()
            )));
        }
    };
    let since = Instant::now();
    WAIT.get_or_init(|| metrics::histogram!(telemetry::DB_POOL_WAIT))
        .record((since - asked).as_secs_f64());
    Ok(Held { conn, since })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_is_read_as_libpq_reads_it_and_taken_out_of_the_url() {
        let split = |url: &str| TlsMode::split(url).unwrap();
        assert_eq!(
            split("postgres://u@h:5432/db"),
            ("postgres://u@h:5432/db".to_owned(), TlsMode::Prefer)
        );
        assert_eq!(
            split("postgres://u@h/db?sslmode=verify-full&application_name=gw"),
            (
                "postgres://u@h/db?application_name=gw".to_owned(),
                TlsMode::Verify
            )
        );
        assert_eq!(split("postgres://h/db?sslmode=disable").1, TlsMode::Disable);
        assert_eq!(split("postgres://h/db?sslmode=require").1, TlsMode::Require);
        assert_eq!(split("postgres://h/db?sslmode=allow").1, TlsMode::Prefer);
        assert_eq!(
            split("postgres://h/db?sslmode=verify-ca").1,
            TlsMode::Verify
        );
        assert!(TlsMode::split("postgres://h/db?sslmode=sometimes").is_err());
        assert!(TlsMode::split("not a url").is_err());
    }

    #[test]
    fn unix_socket_hosts_are_told_from_network_hosts() {
        let config = |url: &str| {
            let (url, _) = TlsMode::split(url).unwrap();
            url.parse::<tokio_postgres::Config>().unwrap()
        };
        assert!(on_unix_sockets_only(&config(
            "postgres://u@%2Fvar%2Frun%2Fpostgresql/db?sslmode=require"
        )));
        assert!(on_unix_sockets_only(&config(
            "postgres:///db?host=/var/run/postgresql&user=u"
        )));
        assert!(!on_unix_sockets_only(&config(
            "postgres://u@127.0.0.1:5432/db"
        )));
        assert!(!on_unix_sockets_only(&config(
            "postgres://u@db.internal/db"
        )));
    }

    #[test]
    fn the_connections_are_split_between_the_querying_threads() {
        let url = "postgres://u@127.0.0.1:1/db";
        assert_eq!(Pools::new(url, 32, 3).per_thread, 10);
        assert_eq!(Pools::new(url, 32, 1).per_thread, 32);
        assert_eq!(Pools::new(url, 2, 5).per_thread, 1, "at least one each");
        assert_eq!(Pools::new(url, 8, 0).per_thread, 8);
        // Each thread that queries gets a pool of its own, counted in the status.
        let pools = Arc::new(Pools::new(url, 32, 2));
        assert_eq!(pools.status(), (0, 0, 0));
        pools.local().unwrap();
        let other = pools.clone();
        std::thread::spawn(move || {
            other.local().unwrap();
        })
        .join()
        .unwrap();
        assert_eq!(pools.status(), (0, 0, 32));
    }

    #[test]
    fn both_tls_settings_can_be_made() {
        assert!(tls_config(true).is_ok());
        assert!(tls_config(false).is_ok());
    }
}
