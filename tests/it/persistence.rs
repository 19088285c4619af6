//! PostgreSQL storage end to end: several gateway processes on one database, a crash
//! (`kill -9`) in the middle of a payment, and a database outage.
//!
//! Gateway processes are this test binary re-run on the ignored `gateway_process` test, which
//! starts a gateway from the `SACP_TEST_GATEWAY` settings and prints `READY <address>`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use sacp_sim::catalog::ETHIOPIAN_YIRGACHEFFE;
use sacp_sim::faults::Faults;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::app::{http_client, seed_details, settings, spawn_app_with};
use crate::database::TestDatabase;
use crate::support::SimServer;

const GATEWAY_ENV: &str = "SACP_TEST_GATEWAY";

/// Runs a gateway in this process when asked to by a parent test; otherwise does nothing.
#[tokio::test]
#[ignore = "helper: a gateway process for the persistence tests"]
async fn gateway_process() {
    let Ok(config) = std::env::var(GATEWAY_ENV) else {
        return;
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    let config: Value = serde_json::from_str(&config).unwrap();
    let mut settings = settings();
    settings.database_url = Some(config["database_url"].as_str().unwrap().to_owned().into());
    settings.ssim_base_url = Some(config["ssim"].as_str().unwrap().to_owned());
    settings.wsim_base_url = Some(config["wsim"].as_str().unwrap().to_owned());
    settings.gateway_client_secret = Some("sandbox-secret".to_owned().into());
    settings.introspection_client_id = Some("sacp-introspect".into());
    settings.introspection_client_secret = Some("sandbox-introspect-secret".to_owned().into());
    let running = sacp_server::start(&settings).await.unwrap();
    #[allow(clippy::print_stdout)] // the parent test reads this line
    {
        println!("READY {}", running.address);
    }
    running.wait().await.unwrap();
}

/// A gateway in its own process.
struct GatewayProcess {
    child: Child,
    url: String,
}

impl GatewayProcess {
    fn start(db: &TestDatabase, sim: &SimServer) -> GatewayProcess {
        GatewayProcess::start_with(&db.url, &sim.store_url(), &sim.wallet_url())
    }

    fn start_with(database_url: &str, store: &str, wallet: &str) -> GatewayProcess {
        let config = json!({"database_url": database_url, "ssim": store, "wsim": wallet});
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "persistence::gateway_process",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(GATEWAY_ENV, config.to_string())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let address = loop {
            let line = lines
                .next()
                .expect("the gateway process said READY")
                .unwrap();
            // libtest may print the test's name on the same line first.
            if let Some((_, address)) = line.split_once("READY ") {
                break address.trim().to_owned();
            }
        };
        // Keep draining its output so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        GatewayProcess {
            child,
            url: format!("http://{address}"),
        }
    }

    /// `kill -9`: no shutdown, no cleanup.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn call(
    http: &reqwest::Client,
    method: Method,
    url: String,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = http.request(method, url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn approve(http: &reqwest::Client, authorization_url: &str, user_code: &str) {
    let target = authorization_url.split('?').next().unwrap();
    let answer = http
        .post(target)
        .form(&[("user_code", user_code), ("decision", "approve")])
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success());
}

async fn shared_upstreams() -> SimServer {
    let sim = SimServer::start().await;
    sim.simulators.wallet.set_faults(Faults {
        poll_interval_secs: Some(1),
        ..Faults::default()
    });
    sim
}

#[tokio::test]
async fn two_replicas_share_checkouts_and_complete_exactly_once() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let sim = shared_upstreams().await;
    let a = GatewayProcess::start(&db, &sim);
    let b = GatewayProcess::start(&db, &sim);
    let http = http_client();

    // Created on one replica, changed and paid on the other.
    let (status, created) = call(
        &http,
        Method::POST,
        format!("{}/checkout", a.url),
        Some(json!({"items": [{"product_id": ETHIOPIAN_YIRGACHEFFE, "quantity": 1}]})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let id = created["id"].as_str().unwrap().to_owned();
    let (status, _) = call(
        &http,
        Method::PATCH,
        format!("{}/checkout/{id}", b.url),
        Some(seed_details()),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, auth) = call(
        &http,
        Method::POST,
        format!("{}/checkout/{id}/complete", b.url),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{auth}");
    let request_id = auth["request_id"].as_str().unwrap();
    approve(
        &http,
        auth["authorization_url"].as_str().unwrap(),
        auth["user_code"].as_str().unwrap(),
    )
    .await;

    // 20 concurrent polls spread over both replicas, until completed.
    let mut orders = std::collections::HashSet::new();
    for _ in 0..50 {
        let polls = (0..20).map(|i| {
            let base = if i % 2 == 0 { &a.url } else { &b.url };
            call(
                &http,
                Method::GET,
                format!("{base}/checkout/{id}/payment-status/{request_id}"),
                None,
            )
        });
        for (status, body) in futures::future::join_all(polls).await {
            assert_eq!(status, StatusCode::OK, "{body}");
            if body["status"] == "completed" {
                orders.insert(body["order_id"].as_str().unwrap().to_owned());
            }
        }
        if !orders.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(orders.len(), 1, "one order, whichever replica answers");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let stats = sim.simulators.store.stats();
    assert_eq!(stats.completions, 1, "exactly one completion at the store");
    assert_eq!(
        stats.completion_attempts, 1,
        "two drivers never both charged"
    );
    assert_eq!(sim.simulators.wallet.stats().payment_tokens_issued, 1);
    for replica in [&a, &b] {
        let (_, checkout) = call(
            &http,
            Method::GET,
            format!("{}/checkout/{id}", replica.url),
            None,
        )
        .await;
        assert_eq!(checkout["status"], "completed");
    }
}

#[tokio::test]
async fn a_gateway_killed_during_a_pending_payment_completes_it_after_restart() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let sim = shared_upstreams().await;
    let http = http_client();
    let first = GatewayProcess::start(&db, &sim);
    let (_, created) = call(
        &http,
        Method::POST,
        format!("{}/checkout", first.url),
        Some(json!({"items": [{"product_id": ETHIOPIAN_YIRGACHEFFE, "quantity": 1}]})),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    call(
        &http,
        Method::PATCH,
        format!("{}/checkout/{id}", first.url),
        Some(seed_details()),
    )
    .await;
    let (status, auth) = call(
        &http,
        Method::POST,
        format!("{}/checkout/{id}/complete", first.url),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    first.kill();

    // The person approves while no gateway runs; a new process picks the payment up.
    approve(
        &http,
        auth["authorization_url"].as_str().unwrap(),
        auth["user_code"].as_str().unwrap(),
    )
    .await;
    let second = GatewayProcess::start(&db, &sim);
    let request_id = auth["request_id"].as_str().unwrap();
    let mut last = Value::Null;
    for _ in 0..100 {
        let (status, body) = call(
            &http,
            Method::GET,
            format!("{}/checkout/{id}/payment-status/{request_id}", second.url),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        last = body;
        if !matches!(last["status"].as_str(), Some("pending" | "approved")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(last["status"], "completed", "{last}");
    assert_eq!(sim.simulators.store.stats().completions, 1);
    assert_eq!(sim.simulators.store.orders()[0].total.minor_units(), 2146);
}

/// A TCP proxy in front of PostgreSQL that can cut every connection and refuse new ones.
struct Proxy {
    port: u16,
    task: Option<JoinHandle<()>>,
    connections: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(port: u16) -> Proxy {
        let mut proxy = Proxy {
            port,
            task: None,
            connections: Arc::default(),
        };
        proxy.open().await;
        proxy
    }

    async fn open(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        self.port = listener.local_addr().unwrap().port();
        let connections = self.connections.clone();
        self.task = Some(tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let connection = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect("127.0.0.1:5432").await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                connections.lock().unwrap().push(connection);
            }
        }));
    }

    /// The database "goes away": the port refuses connections and open ones are cut.
    fn cut(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }
}

#[tokio::test]
async fn a_database_outage_answers_503_and_the_gateway_recovers_by_itself() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let mut proxy = Proxy::start(0).await;
    let mut settings = settings();
    settings.database_url = Some(
        db.url
            .replace("127.0.0.1:5432", &format!("127.0.0.1:{}", proxy.port))
            .into(),
    );
    let app = spawn_app_with(
        settings,
        Faults {
            poll_interval_secs: Some(1),
            ..Faults::default()
        },
    )
    .await;
    let id = app.create_checkout(1).await;
    assert_eq!(app.get("/readyz").await.status, StatusCode::OK);

    proxy.cut();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ready = app.get("/readyz").await;
    ready.assert_problem(503, "storage_unavailable");
    assert!(ready.headers.contains_key("retry-after"));
    app.get(&format!("/checkout/{id}"))
        .await
        .assert_problem(503, "storage_unavailable");

    proxy.open().await;
    let mut recovered = false;
    for _ in 0..50 {
        if app.get("/readyz").await.status == StatusCode::OK {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        recovered,
        "ready again once the database is back, without a restart"
    );
    let checkout = app.get(&format!("/checkout/{id}")).await;
    assert_eq!(checkout.status, StatusCode::OK);
    assert_eq!(checkout.body["total"]["amount"], 2146, "nothing was lost");
    app.stop().await;
}

/// Checkouts stored before organisations owned them get the organisation the audit log
/// credits with their creation; any other is owned by nobody (no key can read it).
#[tokio::test]
async fn the_ownership_migration_gives_existing_checkouts_their_creators_organisation() {
    use diesel::{Connection, RunQueryDsl};
    use diesel_migrations::MigrationHarness;
    use sacp_ports::CheckoutRepository;

    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let url = db.url.clone();
    let random = sacp_ports::contract::CountingRandom::default();
    let credited = sacp_ports::contract::repository::sample_checkout(&random);
    let orphan = sacp_ports::contract::repository::sample_checkout(&random);
    let rows = [(credited.clone(), true), (orphan.clone(), false)];
    tokio::task::spawn_blocking(move || {
        let mut conn = diesel::PgConnection::establish(&url).unwrap();
        // The schema as it was before ownership: the first four migrations.
        for _ in 0..4 {
            conn.run_next_migration(sacp_adapters::pg::MIGRATIONS)
                .unwrap();
        }
        for (checkout, audited) in &rows {
            let mut record = serde_json::to_value(checkout.record()).unwrap();
            let object = record.as_object_mut().unwrap();
            object.remove("owner");
            object.remove("payer");
            diesel::sql_query(format!(
                "INSERT INTO checkouts (id, store_session_id, status, record, version, expires_at, created_at, updated_at) \
                 VALUES ('{id}', '{session}', '{status}', '{record}'::jsonb, 1, now() + interval '30 minutes', now(), now())",
                id = checkout.id().as_str(),
                session = checkout.store_session_id().0,
                status = checkout.status().as_str(),
                record = record.to_string().replace('\'', "''"),
            ))
            .execute(&mut conn)
            .unwrap();
            if *audited {
                diesel::sql_query(format!(
                    "INSERT INTO audit_events (at, request_id, key_id, org, action, resource, outcome, status) \
                     VALUES (now(), 'req_1', NULL, 'acme', 'POST /checkout', '{}', 'success', 201)",
                    checkout.id().as_str()
                ))
                .execute(&mut conn)
                .unwrap();
            }
        }
    })
    .await
    .unwrap();

    let storage =
        sacp_adapters::pg::PgStorage::connect(&db.url, sacp_adapters::pg::PgConfig::default())
            .unwrap();
    let applied = storage.migrate().await.unwrap();
    assert!(!applied.is_empty(), "the later migrations ran");
    let read = storage.get(credited.id()).await.unwrap();
    assert_eq!(read.owner(), "acme");
    assert!(read.is_owned_by("acme") && !read.is_owned_by("other"));
    let unowned = storage.get(orphan.id()).await.unwrap();
    assert_eq!(unowned.owner(), "");
    assert!(
        !unowned.is_owned_by(""),
        "nobody owns it, not even an empty name"
    );
}

/// Replicas starting together on an empty database all come up: the migrations are applied
/// once, under a lock, and the others wait for them.
#[tokio::test]
async fn several_replicas_start_together_on_an_empty_database() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let sim = shared_upstreams().await;
    let started: Vec<std::thread::JoinHandle<GatewayProcess>> = (0..4)
        .map(|_| {
            let (db_url, store, wallet) = (db.url.clone(), sim.store_url(), sim.wallet_url());
            std::thread::spawn(move || GatewayProcess::start_with(&db_url, &store, &wallet))
        })
        .collect();
    let replicas: Vec<GatewayProcess> = started
        .into_iter()
        .map(|t| t.join().expect("every replica starts"))
        .collect();
    let http = http_client();
    for replica in &replicas {
        let (status, _) = call(&http, Method::GET, format!("{}/readyz", replica.url), None).await;
        assert_eq!(status, StatusCode::OK);
    }
}

#[tokio::test]
async fn a_sealing_key_that_is_not_64_hex_digits_stops_the_start_without_echoing_it() {
    let mut bad = crate::app::settings();
    let secret = "not-a-key-but-a-secret-all-the-same";
    bad.token_sealing_key = Some(secret.to_owned().into());
    let error = sacp_server::start(&bad)
        .await
        .expect_err("a bad sealing key is refused at start");
    let message = error.to_string();
    assert!(message.contains("SACP_TOKEN_SEALING_KEY"), "{message}");
    assert!(message.contains("64 hexadecimal digits"), "{message}");
    assert!(!message.contains(secret), "{message}");
}
