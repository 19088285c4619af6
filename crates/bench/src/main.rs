//! `sacp-bench`: the gateway's benchmark harness (run it with `scripts/bench`, which builds
//! everything in release mode first).
//!
//! It starts `sacp-sim` and gateways in the configurations under test on loopback (and a
//! fresh PostgreSQL database for the checkout flow), drives load with its own closed-loop
//! generator, reads criterion's microbenchmark results, and prints one Markdown table.
//! Everything it starts stops with it.

mod agent;
mod criterion;
mod load;
mod procs;
mod report;
mod steady;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use reqwest::{Client, StatusCode};

use crate::agent::{ADMIN_TOKEN, Agent, PRODUCT_ID, expect};
use crate::load::{Outcome, Side, Window, drive, interleave, run_count};
use crate::procs::{Service, free_port, sibling};
use crate::report::{Report, Verdict, ms, rate, thousands};

/// What to run and how hard.
#[derive(Debug, Parser)]
#[command(
    version,
    about = "Benchmarks the SACP gateway on loopback and prints one table"
)]
struct Args {
    /// Seconds each load measure counts.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Seconds of load before counting starts.
    #[arg(long, default_value_t = 3)]
    warm_up: u64,
    /// Concurrent connections for request measures.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Concurrent agents running whole checkout flows. A flow lasts at least the wallet's
    /// 1 s poll interval, so the rate is at most agents ÷ flow time: 1,200 saturate 2 cores
    /// (600 capped it near 400/s once a checkout cost under 4 ms of CPU); far more only
    /// queue requests for database connections.
    #[arg(long, default_value_t = 1200)]
    flows: usize,
    /// Open checkouts held for the memory measure.
    #[arg(long, default_value_t = 100_000)]
    open_checkouts: usize,
    /// PostgreSQL host for the checkout flow (started if it is the local cluster and down):
    /// a name, an address or a Unix-socket directory such as `/var/run/postgresql`.
    #[arg(long, default_value = "/var/run/postgresql")]
    pg_host: String,
    /// PostgreSQL port.
    #[arg(long, default_value_t = 5432)]
    pg_port: u16,
    /// PostgreSQL user (trust authentication).
    #[arg(long, default_value = "postgres")]
    pg_user: String,
    /// Database the run drops and creates.
    #[arg(long, default_value = "sacp_bench")]
    pg_database: String,
    /// The gateway's `sslmode` to PostgreSQL (libpq's meanings; ignored on a Unix socket).
    /// `prefer`, the default of a URL without one, uses TLS over TCP when the server offers
    /// it, as Debian's cluster does.
    #[arg(long, default_value = "disable")]
    pg_sslmode: String,
    /// Criterion's output directory, to include the microbenchmarks in the table.
    #[arg(long)]
    criterion: Option<PathBuf>,
    /// Where the services' logs go.
    #[arg(long, default_value = "target/bench")]
    logs: PathBuf,
    /// Payments left waiting for the wallet's poll count (the run then lasts at least the
    /// codes' 15 minutes).
    #[arg(long, default_value_t = 100)]
    abandoned: usize,
    /// Flows of the long run in embedded mode.
    #[arg(long, default_value_t = 100_000)]
    long_flows: usize,
    /// Only these parts: abandoned, catalog, access, memory, long, checkout, idle, replicas
    /// (default: all).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

impl Args {
    fn window(&self) -> Window {
        Window {
            warm_up: Duration::from_secs(self.warm_up),
            measure: Duration::from_secs(self.seconds),
        }
    }

    fn wants(&self, part: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|p| p == part)
    }
}

/// Secret of the integration key every bench gateway creates at start.
const BOOTSTRAP_KEY: &str = "sacp_bench-bootstrap-secret-of-at-least-32-characters";

/// The simulators, shared by every gateway of the run.
struct Sim {
    service: Service,
}

impl Sim {
    async fn start(http: &Client, logs: &Path) -> Result<Sim, String> {
        let port = free_port()?;
        let mut service = Service::start(
            "sacp-sim",
            &sibling("sacp-sim")?,
            &[],
            &[
                ("SACP_SIM_LISTEN", format!("127.0.0.1:{port}")),
                ("RUST_LOG", "warn".into()),
            ],
            logs,
            format!("http://127.0.0.1:{port}"),
        )?;
        service.wait_ready(http, "/ssim/.well-known/ucp").await?;
        Ok(Sim { service })
    }

    fn store(&self) -> String {
        format!("{}/ssim", self.service.base)
    }

    fn wallet(&self) -> String {
        format!("{}/wsim", self.service.base)
    }
}

/// Starts a gateway in front of `sim` with limits out of the way (the bench measures
/// capacity, not policy) and `extra` settings.
async fn start_gateway(
    http: &Client,
    name: &str,
    sim: &Sim,
    logs: &Path,
    extra: &[(&str, String)],
) -> Result<Service, String> {
    let port = free_port()?;
    let high = || "1000000000".to_owned();
    let mut env = vec![
        ("SACP_LISTEN", format!("127.0.0.1:{port}")),
        ("SSIM_BASE_URL", sim.store()),
        ("WSIM_BASE_URL", sim.wallet()),
        ("GATEWAY_CLIENT_SECRET", "sandbox-secret".into()),
        ("WSIM_INTROSPECTION_CLIENT_ID", "sacp-introspect".into()),
        (
            "WSIM_INTROSPECTION_CLIENT_SECRET",
            "sandbox-introspect-secret".into(),
        ),
        ("SACP_BOOTSTRAP_API_KEY", BOOTSTRAP_KEY.into()),
        ("SACP_ADMIN_TOKEN", ADMIN_TOKEN.into()),
        ("SACP_ORG_RATE_LIMIT", high()),
        ("SACP_USER_RATE_LIMIT", high()),
        ("SACP_WRITE_RATE_LIMIT", high()),
        ("SACP_PAYMENT_RATE_LIMIT", high()),
        ("SACP_DAILY_CHECKOUT_QUOTA", high()),
        ("SACP_MAX_IN_FLIGHT", "8192".into()),
        ("RUST_LOG", "info".into()),
    ];
    env.extend(extra.iter().cloned());
    let mut service = Service::start(
        name,
        &sibling("sacp-gateway")?,
        &[],
        &env,
        logs,
        format!("http://127.0.0.1:{port}"),
    )?;
    service.wait_ready(http, "/readyz").await?;
    Ok(service)
}

/// An agent with eight fresh keys (eight organisations) at `gateway`.
async fn agent_at(http: &Client, gateway: &Service) -> Result<Agent, String> {
    let keys = agent::create_keys(http, &gateway.base, 8).await?;
    Agent::new(http.clone(), &gateway.base, &keys)
}

/// Slices each side of an interleaved ratio is measured in.
const INTERLEAVED_SLICES: u32 = 10;

/// Keyless `GET url` from every connection, expecting 200; fails unless every answer was.
async fn load_get(args: &Args, http: &Client, name: &str, url: String) -> Result<Outcome, String> {
    let http = http.clone();
    let outcome = drive(args.connections, args.window(), move |_| {
        let request = http.get(&url);
        async move { expect(request, StatusCode::OK).await.map(drop) }
    })
    .await;
    clean(name, &outcome)?;
    Ok(outcome)
}

/// The agent's keyed `GET path` from every connection, expecting 200; fails unless every
/// answer was.
async fn load_read(args: &Args, agent: &Agent, name: &str, path: &str) -> Result<Outcome, String> {
    let agent = agent.clone();
    let path = path.to_owned();
    let outcome = drive(args.connections, args.window(), move |worker| {
        let agent = agent.clone();
        let path = path.clone();
        async move { agent.read(worker, &path).await }
    })
    .await;
    clean(name, &outcome)?;
    Ok(outcome)
}

/// Checks a measure produced answers and only good ones.
fn clean(name: &str, outcome: &Outcome) -> Result<(), String> {
    if outcome.ok == 0 || outcome.failed > 0 {
        return Err(format!(
            "{name}: {} ok, {} failed; first failure: {}",
            outcome.ok,
            outcome.failed,
            outcome.first_error.as_deref().unwrap_or("none")
        ));
    }
    Ok(())
}

fn latency(outcome: &Outcome) -> String {
    format!(
        "{} (p50 {}, p99 {})",
        rate(outcome.per_second()),
        ms(outcome.p50()),
        ms(outcome.p99())
    )
}

/// Catalog reads: direct to the store, through the gateway without and with its catalog
/// cache, and conditional (`If-None-Match`) through the cache.
async fn catalog(args: &Args, http: &Client, sim: &Sim, report: &mut Report) -> Result<(), String> {
    eprintln!("catalog reads: direct, through the gateway, through its cache");
    let list = "/products?limit=20";
    let before = Cpu::now(None, sim)?;
    let direct = load_get(
        args,
        http,
        "direct",
        format!("{}/api/agent/v1{list}", sim.store()),
    )
    .await?;
    report.info("`GET /products` direct to sacp-sim", latency(&direct));
    let direct_cpu = Cpu::now(None, sim)?.since(&before);

    let plain = start_gateway(
        http,
        "gateway-no-cache",
        sim,
        &args.logs,
        &[("SACP_CATALOG_CACHE_TTL_MS", "0".into())],
    )
    .await?;
    let agent = agent_at(http, &plain).await?;
    let before = Cpu::now(Some(&plain), sim)?;
    let through = load_read(args, &agent, "through the gateway", list).await?;
    let through_cpu = Cpu::now(Some(&plain), sim)?.since(&before);
    drop(plain);
    let ratio = through.per_second() / direct.per_second();
    report.add(
        "`GET /products` through the gateway, no cache",
        format!("{} = **{ratio:.2}× direct**", latency(&through)),
        "≥ 0.75× direct",
        Verdict::of(ratio >= 0.75),
    );
    // Where the CPU goes per request (warm-up included in both: the ratio is what counts).
    let total = |outcome: &Outcome| {
        outcome.per_second() * (args.window().warm_up + args.window().measure).as_secs_f64()
    };
    let micros = |cpu: Duration, outcome: &Outcome| {
        format!("{:.0}", cpu.as_secs_f64() * 1e6 / total(outcome).max(1.0))
    };
    report.info(
        "CPU per catalog read, µs: direct (sim, load generator) → through the gateway (gateway, sim, load generator)",
        format!(
            "{} ({}, {}) → {} ({}, {}, {})",
            micros(direct_cpu.machine, &direct),
            micros(direct_cpu.sim, &direct),
            micros(direct_cpu.load, &direct),
            micros(through_cpu.machine, &through),
            micros(through_cpu.gateway, &through),
            micros(through_cpu.sim, &through),
            micros(through_cpu.load, &through)
        ),
    );

    let cached = start_gateway(http, "gateway-cache", sim, &args.logs, &[]).await?;
    let agent = agent_at(http, &cached).await?;
    let hits = load_read(args, &agent, "through the cache", list).await?;
    let ratio = hits.per_second() / direct.per_second();
    report.add(
        "`GET /products` through the gateway's catalog cache",
        format!("{} = **{ratio:.2}× direct**", latency(&hits)),
        "> 1× direct",
        Verdict::of(ratio > 1.0),
    );
    let etag = agent.etag(list).await?;
    let revalidated = drive(args.connections, args.window(), move |worker| {
        let agent = agent.clone();
        let etag = etag.clone();
        async move { agent.revalidate(worker, list, &etag).await }
    })
    .await;
    clean("revalidation", &revalidated)?;
    report.info(
        "`GET /products` with `If-None-Match` (304) through the cache",
        format!(
            "{} = {:.2}× direct",
            latency(&revalidated),
            revalidated.per_second() / direct.per_second()
        ),
    );
    Ok(())
}

/// The access-control stack's cost: the same gateway answering a public route that skips it
/// and a keyed, rate-limited, counted route served from memory; then writes with and without
/// an `Idempotency-Key`.
async fn access(args: &Args, http: &Client, sim: &Sim, report: &mut Report) -> Result<(), String> {
    eprintln!(
        "access-control stack: public route vs keyed route; writes with and without idempotency"
    );
    let gateway = start_gateway(http, "gateway-access", sim, &args.logs, &[]).await?;
    // Shared, not copied, by each request of the loads below.
    let agent = Arc::new(agent_at(http, &gateway).await?);
    let product: Arc<str> = format!("{}/products/{PRODUCT_ID}", gateway.base).into();
    let health = format!("{}/healthz", gateway.base);
    let public = {
        let http = http.clone();
        move |_| {
            let request = http.get(&health);
            async move { expect(request, StatusCode::OK).await.map(drop) }
        }
    };
    let reader = agent.clone();
    let keyed = move |worker| {
        let agent = reader.clone();
        let url = product.clone();
        async move { agent.read_url(worker, &url).await }
    };
    let mut samples = Vec::new();
    let (public, keyed) = interleave(
        args.connections,
        args.window(),
        INTERLEAVED_SLICES,
        public,
        keyed,
        |side| samples.push((side, Cpu::now(Some(&gateway), sim))),
    )
    .await;
    clean("public route", &public)?;
    clean("keyed route", &keyed)?;
    report.info(
        "`GET /healthz` (no key, no limit, no idempotency)",
        latency(&public),
    );
    let cost = 1.0 - keyed.per_second() / public.per_second();
    report.add(
        "`GET /products/{id}` from the cache with key check, rate limits, traffic count",
        format!("{} = **{:.1}% cost**", latency(&keyed), cost * 100.0),
        "≤ 10% cost",
        Verdict::of(cost <= 0.10),
    );
    let (public_cpu, keyed_cpu) = cpu_by_side(samples)?;
    report.info(
        "CPU per request, µs: `/healthz` → keyed read (gateway, load generator, machine)",
        cpu_comparison(args, (&public, &public_cpu), (&keyed, &keyed_cpu)),
    );

    let creator = |idempotent: bool| {
        let agent = agent.clone();
        move |worker| {
            let agent = agent.clone();
            async move { agent.create_checkout(worker, idempotent).await.map(drop) }
        }
    };
    let mut samples = Vec::new();
    let (plain, idempotent) = interleave(
        args.connections,
        args.window(),
        INTERLEAVED_SLICES,
        creator(false),
        creator(true),
        |side| samples.push((side, Cpu::now(Some(&gateway), sim))),
    )
    .await;
    clean("checkout creation", &plain)?;
    clean("idempotent checkout creation", &idempotent)?;
    let writes = [plain, idempotent];
    report.info(
        "`POST /checkout` (audited) without `Idempotency-Key`",
        latency(&writes[0]),
    );
    let cost = 1.0 - writes[1].per_second() / writes[0].per_second();
    report.add(
        "`POST /checkout` with `Idempotency-Key`",
        format!("{} = **{:.1}% cost**", latency(&writes[1]), cost * 100.0),
        "≤ 10% cost",
        Verdict::of(cost <= 0.10),
    );
    let (plain_cpu, idempotent_cpu) = cpu_by_side(samples)?;
    report.info(
        "CPU per request, µs: `POST /checkout` without → with `Idempotency-Key` (gateway, load generator, machine)",
        cpu_comparison(args, (&writes[0], &plain_cpu), (&writes[1], &idempotent_cpu)),
    );
    Ok(())
}

/// The CPU each side of an interleaved measure used, from the samples taken at its slices'
/// boundaries (each sample closes the slice before it).
fn cpu_by_side(samples: Vec<(Option<Side>, Result<Cpu, String>)>) -> Result<(Cpu, Cpu), String> {
    let (mut a, mut b) = (Cpu::default(), Cpu::default());
    let mut open: Option<(Side, Cpu)> = None;
    for (side, sample) in samples {
        let sample = sample?;
        if let Some((previous, since)) = open {
            let spent = sample.since(&since);
            let sum = if previous == Side::A { &mut a } else { &mut b };
            *sum = sum.plus(&spent);
        }
        open = side.map(|side| (side, sample));
    }
    Ok((a, b))
}

/// Gateway, load-generator and machine CPU per request of two interleaved loads, and how
/// much more the second costs the gateway.
fn cpu_comparison(args: &Args, first: (&Outcome, &Cpu), second: (&Outcome, &Cpu)) -> String {
    // Warm-up included on both sides (the CPU samples span it): the comparison is what counts.
    let per_request = |outcome: &Outcome, cpu: Duration| {
        let requests =
            outcome.per_second() * (args.window().warm_up + args.window().measure).as_secs_f64();
        cpu.as_secs_f64() * 1e6 / requests.max(1.0)
    };
    let side = |(outcome, cpu): (&Outcome, &Cpu)| {
        (
            per_request(outcome, cpu.gateway),
            per_request(outcome, cpu.load),
            per_request(outcome, cpu.machine),
        )
    };
    let (a, b) = (side(first), side(second));
    format!(
        "({:.1}, {:.1}, {:.1}) → ({:.1}, {:.1}, {:.1}): gateway {:+.1} µs ({:+.0} %)",
        a.0,
        a.1,
        a.2,
        b.0,
        b.1,
        b.2,
        b.0 - a.0,
        (b.0 / a.0.max(f64::MIN_POSITIVE) - 1.0) * 100.0
    )
}

/// Creates `count` checkouts with `connections` concurrent agents; returns the rate.
async fn open_checkouts(
    agent: &Agent,
    connections: usize,
    count: usize,
    idempotent: bool,
) -> Result<f64, String> {
    let started = Instant::now();
    let agent = agent.clone();
    run_count(connections, count, Arc::default(), move |worker| {
        let agent = agent.clone();
        async move { agent.create_checkout(worker, idempotent).await.map(drop) }
    })
    .await?;
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

/// Resident memory of an embedded-mode gateway holding `open_checkouts` open checkouts,
/// then of one that also keeps an idempotent answer for each (24 h retention).
async fn memory(args: &Args, http: &Client, sim: &Sim, report: &mut Report) -> Result<(), String> {
    let mib = |kib: u64| kib as f64 / 1024.0;
    let count = thousands(args.open_checkouts as f64);
    for idempotent in [false, true] {
        eprintln!(
            "memory: {count} open checkouts in embedded mode (idempotency keys: {idempotent})"
        );
        let gateway = start_gateway(http, "gateway-memory", sim, &args.logs, &[]).await?;
        let agent = agent_at(http, &gateway).await?;
        let idle = gateway.memory_kib()?;
        let per_second =
            open_checkouts(&agent, args.connections, args.open_checkouts, idempotent).await?;
        let held = gateway.memory_kib()?;
        let value = format!(
            "**{:.1} MiB** (anonymous {:.1}; at start {:.1}, anonymous {:.1}; peak {:.1}; created at {})",
            mib(held.rss),
            mib(held.anonymous),
            mib(idle.rss),
            mib(idle.anonymous),
            mib(held.peak),
            rate(per_second)
        );
        if idempotent {
            report.info(format!("RSS with {count} open checkouts created with `Idempotency-Key` (answers kept 24 h)"), value);
        } else {
            report.add(
                format!("RSS with {count} open checkouts, embedded mode"),
                value,
                "≤ 64 MiB",
                Verdict::of(held.rss <= 64 * 1024),
            );
        }
    }
    Ok(())
}

/// Whole guest checkouts on PostgreSQL: create, update, complete, approve at the wallet,
/// poll until the order is placed.
async fn checkout(
    args: &Args,
    http: &Client,
    sim: &Sim,
    report: &mut Report,
) -> Result<f64, String> {
    eprintln!(
        "checkout flow on PostgreSQL: {} concurrent agents",
        args.flows
    );
    let database = steady::Database { args };
    database.fresh()?;
    // The wallet asks to be polled every second (5 s by default) so that a flow's length
    // is the gateway's work, not the protocol's waiting.
    expect(
        http.put(format!("{}/sim/faults", sim.wallet()))
            .json(&serde_json::json!({"poll_interval_secs": 1})),
        StatusCode::OK,
    )
    .await?;
    let gateway = start_gateway(
        http,
        "gateway-postgres",
        sim,
        &args.logs,
        &[("DATABASE_URL", database.url())],
    )
    .await?;
    let agent = agent_at(http, &gateway).await?;
    let wallet = sim.wallet();
    let transactions = || database.transactions();
    let cpu_before = Cpu::now(Some(&gateway), sim)?;
    let transactions_before = transactions()?;
    // Flows last seconds each: a longer window than single requests.
    let window = Window {
        warm_up: Duration::from_secs(args.warm_up + 3),
        measure: Duration::from_secs(args.seconds * 2),
    };
    let outcome = drive(args.flows, window, move |worker| {
        let agent = agent.clone();
        let wallet = wallet.clone();
        async move { agent.buy(worker, &wallet).await }
    })
    .await;
    let cpu = Cpu::now(Some(&gateway), sim)?.since(&cpu_before);
    // Backends report their statistics about once a second: wait for the last report.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let transactions_used = transactions()?.saturating_sub(transactions_before);
    clean("checkout flow", &outcome)?;
    report.add(
        "completed guest checkouts on PostgreSQL (create, update, complete, approve, poll)",
        format!(
            "**{}** (flow p50 {}, p99 {}; wallet poll interval 1 s)",
            rate(outcome.per_second()),
            ms(outcome.p50()),
            ms(outcome.p99())
        ),
        "≥ 500/s",
        Verdict::of(outcome.per_second() >= 500.0),
    );
    // CPU over the whole run (warm-up included) shared out over the checkouts completed at
    // the measured rate in that time: an estimate, good to a few percent.
    let checkouts =
        (outcome.per_second() * (window.warm_up + window.measure).as_secs_f64()).max(1.0);
    let per = |d: Duration| format!("{:.2}", d.as_secs_f64() * 1000.0 / checkouts);
    report.info(
        "CPU per completed checkout: machine (gateway, PostgreSQL, sacp-sim, load generator)",
        format!(
            "{} ms ({}, {}, {}, {} ms)",
            per(cpu.machine),
            per(cpu.gateway),
            per(cpu.postgres),
            per(cpu.sim),
            per(cpu.load)
        ),
    );
    report.add(
        "PostgreSQL transactions per completed checkout (each statement outside a transaction counts one)",
        format!("{:.1}", transactions_used as f64 / checkouts),
        "≤ 10",
        Verdict::of(transactions_used as f64 / checkouts <= 10.0),
    );
    Ok(outcome.per_second())
}

/// CPU time used so far, by process and in total (2 cores = 2 s of CPU per second).
#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    machine: Duration,
    gateway: Duration,
    postgres: Duration,
    sim: Duration,
    load: Duration,
}

impl Cpu {
    fn now(gateway: Option<&Service>, sim: &Sim) -> Result<Cpu, String> {
        Ok(Cpu {
            machine: procs::machine_busy(),
            gateway: gateway
                .map(Service::cpu_time)
                .transpose()?
                .unwrap_or_default(),
            postgres: procs::command_cpu("postgres"),
            sim: sim.service.cpu_time()?,
            load: procs::own_cpu(),
        })
    }

    fn plus(&self, other: &Cpu) -> Cpu {
        Cpu {
            machine: self.machine + other.machine,
            gateway: self.gateway + other.gateway,
            postgres: self.postgres + other.postgres,
            sim: self.sim + other.sim,
            load: self.load + other.load,
        }
    }

    fn since(&self, before: &Cpu) -> Cpu {
        Cpu {
            machine: self.machine.saturating_sub(before.machine),
            gateway: self.gateway.saturating_sub(before.gateway),
            postgres: self.postgres.saturating_sub(before.postgres),
            sim: self.sim.saturating_sub(before.sim),
            load: self.load.saturating_sub(before.load),
        }
    }
}

async fn run(args: Args) -> Result<Report, String> {
    std::fs::create_dir_all(&args.logs)
        .map_err(|e| format!("cannot create {}: {e}", args.logs.display()))?;
    let http = agent::client()?;
    let mut report = Report::default();
    // Started first: their codes live 15 minutes, while the other parts run.
    let abandoned = if args.wants("abandoned") {
        Some(steady::abandon_payments(&args, &http).await?)
    } else {
        None
    };
    let sim = Sim::start(&http, &args.logs).await?;
    if args.wants("catalog") {
        catalog(&args, &http, &sim, &mut report).await?;
    }
    if args.wants("access") {
        access(&args, &http, &sim, &mut report).await?;
    }
    if args.wants("memory") {
        memory(&args, &http, &sim, &mut report).await?;
    }
    if args.wants("long") {
        steady::flatness(&args, &http, &sim, &mut report).await?;
    }
    let mut one_replica = None;
    if args.wants("checkout") {
        one_replica = Some(checkout(&args, &http, &sim, &mut report).await?);
    } else if args.wants("idle") {
        steady::Database { args: &args }.fresh()?;
    }
    if args.wants("idle") {
        steady::idle(&args, &http, &sim, &mut report).await?;
    }
    if args.wants("replicas") {
        steady::two_replicas(&args, &http, &sim, one_replica, &mut report).await?;
    }
    if let Some(abandoned) = abandoned {
        abandoned.report(&http, &mut report).await?;
    }
    drop(sim);
    if let Some(dir) = &args.criterion {
        for bench in criterion::results(dir)? {
            report.info(
                format!("criterion `{}`", bench.id),
                format!("{:.1} ns", bench.mean_ns),
            );
        }
    }
    Ok(report)
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let started = Instant::now();
    match run(args).await {
        Ok(report) => {
            #[allow(clippy::print_stdout)]
            {
                println!("{}", report.render());
            }
            eprintln!("bench finished in {:.0} s", started.elapsed().as_secs_f64());
        }
        Err(error) => {
            eprintln!("bench failed: {error}");
            std::process::exit(1);
        }
    }
}
