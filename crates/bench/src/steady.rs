//! Costs over time rather than at peak: what an abandoned payment costs the wallet, what an
//! idle replica costs the database, two replicas on one database against one, and whether
//! rate and memory stay flat over a long run.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};

use crate::agent::{Agent, expect_json};
use crate::load::{Window, drive, interleave, run_count};
use crate::procs::{self, Service};
use crate::report::{Report, Verdict, ms, rate, thousands};
use crate::{Args, Sim, agent_at, clean, start_gateway};

/// How long the wallet keeps a device code valid (the simulator's default, as WSIM's).
const CODE_LIFETIME: Duration = Duration::from_secs(900);

/// Payments left waiting on their own simulator and embedded gateway, so that the wallet's
/// poll counter counts theirs only. Started first, read last: the codes live 15 minutes.
pub struct AbandonedPayments {
    sim: Sim,
    gateway: Service,
    count: usize,
    started: Instant,
    cpu_at_start: Duration,
}

/// Asks for `args.abandoned` payments nobody approves, at the wallet's usual 5 s interval.
pub async fn abandon_payments(args: &Args, http: &Client) -> Result<AbandonedPayments, String> {
    eprintln!(
        "abandoned payments: {} left waiting (read back after {} s)",
        args.abandoned,
        CODE_LIFETIME.as_secs()
    );
    let sim = Sim::start(http, &args.logs).await?;
    let gateway = start_gateway(http, "gateway-abandoned", &sim, &args.logs, &[]).await?;
    let agent = agent_at(http, &gateway).await?;
    for worker in 0..args.abandoned {
        let id = agent.ready_checkout(worker, true).await?;
        agent.start_payment(worker, &id, true).await?;
    }
    let cpu_at_start = gateway.cpu_time()?;
    Ok(AbandonedPayments {
        sim,
        gateway,
        count: args.abandoned,
        started: Instant::now(),
        cpu_at_start,
    })
}

impl AbandonedPayments {
    /// Waits until every code has expired, then reports the wallet's polls per payment and
    /// the gateway's CPU while it held them.
    pub async fn report(self, http: &Client, report: &mut Report) -> Result<(), String> {
        let done = self.started + CODE_LIFETIME + Duration::from_secs(20);
        if let Some(left) = done.checked_duration_since(Instant::now()) {
            eprintln!(
                "abandoned payments: waiting {:.0} s for their codes to expire",
                left.as_secs_f64()
            );
            tokio::time::sleep(left).await;
        }
        let held = self.started.elapsed();
        let cpu = self.gateway.cpu_time()?.saturating_sub(self.cpu_at_start);
        let stats = expect_json(
            http.get(format!("{}/sim/stats", self.sim.wallet())),
            StatusCode::OK,
        )
        .await?;
        let polls = stats["device_polls"]
            .as_u64()
            .ok_or_else(|| format!("no device_polls in {stats}"))?;
        let per_payment = polls as f64 / self.count.max(1) as f64;
        report.add(
            format!(
                "wallet polls per abandoned checkout ({} payments, code valid {} min, interval 5 s)",
                self.count,
                CODE_LIFETIME.as_secs() / 60
            ),
            format!("**{per_payment:.1}** (every 5 s would be 180)"),
            "≤ 30",
            Verdict::of(per_payment <= 30.0),
        );
        report.info(
            "gateway CPU while holding them (embedded mode, no other traffic)",
            format!(
                "{:.2} % of one core ({} ms over {:.0} s)",
                cpu.as_secs_f64() * 100.0 / held.as_secs_f64(),
                cpu.as_millis(),
                held.as_secs_f64()
            ),
        );
        drop(self.gateway);
        drop(self.sim);
        Ok(())
    }
}

/// The PostgreSQL database a part runs on, and its transaction counter.
#[derive(Clone, Copy)]
pub struct Database<'a> {
    /// The run's options (host, port, user, database name).
    pub args: &'a Args,
}

impl Database<'_> {
    /// Drops and creates the database, starting the local cluster if needed.
    pub fn fresh(&self) -> Result<(), String> {
        let args = self.args;
        procs::ensure_postgres(&args.pg_host, args.pg_port)?;
        procs::fresh_database(
            &args.pg_host,
            args.pg_port,
            &args.pg_user,
            &args.pg_database,
        )
    }

    /// Its URL.
    pub fn url(&self) -> String {
        let args = self.args;
        // A socket directory is a host too, spelled with its slashes encoded.
        let host = args.pg_host.replace('/', "%2F");
        format!(
            "postgres://{}@{host}:{}/{}?sslmode={}",
            args.pg_user, args.pg_port, args.pg_database, args.pg_sslmode
        )
    }

    /// Transactions so far.
    pub fn transactions(&self) -> Result<u64, String> {
        let args = self.args;
        procs::transactions(
            &args.pg_host,
            args.pg_port,
            &args.pg_user,
            &args.pg_database,
        )
    }
}

/// Transactions a second of a replica that serves nothing, on the database the checkout run
/// left behind (its checkouts, keys and ended payments included). PostgreSQL's own
/// housekeeping (autovacuum visits every database each minute) counts transactions too, so
/// the database is first counted without any gateway and the replica's cost is the
/// difference.
pub async fn idle(
    args: &Args,
    http: &Client,
    sim: &Sim,
    report: &mut Report,
) -> Result<(), String> {
    const SETTLE: Duration = Duration::from_secs(5);
    const LISTEN: Duration = Duration::from_secs(120);
    eprintln!(
        "idle replica on PostgreSQL: {} s without a gateway, then {} s with one",
        LISTEN.as_secs(),
        LISTEN.as_secs()
    );
    let database = Database { args };
    // Each count's own query is one transaction.
    let count_for = move |listen: Duration| async move {
        let before = database.transactions()?;
        tokio::time::sleep(listen).await;
        Ok::<u64, String>(database.transactions()?.saturating_sub(before + 1))
    };
    let baseline = count_for(LISTEN).await?;
    let gateway = start_gateway(
        http,
        "gateway-idle",
        sim,
        &args.logs,
        &[("DATABASE_URL", database.url())],
    )
    .await?;
    tokio::time::sleep(SETTLE).await;
    let cpu_before = gateway.cpu_time()?;
    let with_replica = count_for(LISTEN).await?;
    let cpu = gateway.cpu_time()?.saturating_sub(cpu_before);
    let per_second = with_replica.saturating_sub(baseline) as f64 / LISTEN.as_secs_f64();
    report.add(
        "PostgreSQL transactions per second of an idle replica",
        format!(
            "**{per_second:.2}** ({with_replica} in {} s with it, {baseline} without: autovacuum; gateway CPU {} ms)",
            LISTEN.as_secs(),
            cpu.as_millis()
        ),
        "≤ 0.5",
        Verdict::of(per_second <= 0.5),
    );
    Ok(())
}

/// Whole checkouts with the agents split over two replicas on one fresh database; `one` is
/// the single replica's rate from the checkout part, for the ratio.
pub async fn two_replicas(
    args: &Args,
    http: &Client,
    sim: &Sim,
    one: Option<f64>,
    report: &mut Report,
) -> Result<(), String> {
    eprintln!(
        "two replicas on one PostgreSQL database: {} concurrent agents",
        args.flows
    );
    let database = Database { args };
    database.fresh()?;
    let env = [("DATABASE_URL", database.url())];
    let first = start_gateway(http, "gateway-replica-1", sim, &args.logs, &env).await?;
    let second = start_gateway(http, "gateway-replica-2", sim, &args.logs, &env).await?;
    let agents = Arc::new([
        agent_at(http, &first).await?,
        agent_at(http, &second).await?,
    ]);
    let wallet = sim.wallet();
    let window = Window {
        warm_up: Duration::from_secs(args.warm_up + 3),
        measure: Duration::from_secs(args.seconds * 2),
    };
    let outcome = drive(args.flows, window, move |worker| {
        let agents = agents.clone();
        let wallet = wallet.clone();
        async move { agents[worker % 2].buy(worker / 2, &wallet).await }
    })
    .await;
    clean("checkout flow on two replicas", &outcome)?;
    let ratio = one
        .map(|one| format!(" = {:.2}× one replica", outcome.per_second() / one))
        .unwrap_or_default();
    report.info(
        "completed guest checkouts, two replicas on one database (same 2 cores)",
        format!(
            "**{}**{ratio} (flow p50 {}, p99 {})",
            rate(outcome.per_second()),
            ms(outcome.p50()),
            ms(outcome.p99())
        ),
    );
    Ok(())
}

/// Flows run before the long run counts: twice its 5 s retention.
const LONG_RUN_WARM_UP: Duration = Duration::from_secs(10);

/// `args.long_flows` checkouts created, updated, completed and cancelled in embedded mode with
/// a 5 s retention: the rate of each tenth of the run and the memory at its end.
pub async fn flatness(
    args: &Args,
    http: &Client,
    sim: &Sim,
    report: &mut Report,
) -> Result<(), String> {
    const TENTHS: usize = 10;
    let total = args.long_flows;
    eprintln!(
        "long run in embedded mode: {} flows (create, update, complete, cancel)",
        thousands(total as f64)
    );
    let (gateway, agent, at_start) = long_run_gateway(args, http, sim, "gateway-long-run").await?;
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let cpu_at_start = gateway.cpu_time()?;
    let mut flows = tokio::spawn(run_count(
        args.connections,
        total,
        done.clone(),
        give_up_flows(&agent),
    ));
    // Each tenth's end: when, the memory then, and the gateway's CPU time so far.
    let mut marks = Vec::with_capacity(TENTHS);
    let mut cpu_marks = Vec::with_capacity(TENTHS);
    while marks.len() < TENTHS {
        let finished = done.load(Ordering::Relaxed);
        if finished >= total * (marks.len() + 1) / TENTHS {
            marks.push((started.elapsed(), gateway.memory_kib()?));
            cpu_marks.push(gateway.cpu_time()?.saturating_sub(cpu_at_start));
            continue;
        }
        if flows.is_finished() {
            // Every worker stopped before the last tenth: one failed.
            let outcome = (&mut flows)
                .await
                .map_err(|e| format!("long run died: {e}"))?;
            outcome.map_err(|error| format!("long run: {error}"))?;
            return Err("long run: the workers stopped early".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    flows
        .await
        .map_err(|e| format!("long run died: {e}"))?
        .map_err(|error| format!("long run: {error}"))?;
    let tenth = (total / TENTHS) as f64;
    let rates: Vec<f64> = marks
        .iter()
        .enumerate()
        .map(|(i, (at, _))| {
            let from = if i == 0 {
                Duration::ZERO
            } else {
                marks[i - 1].0
            };
            tenth / at.saturating_sub(from).as_secs_f64().max(1e-3)
        })
        .collect();
    let (first, last) = (rates[0], rates[TENTHS - 1]);
    let change = last / first - 1.0;
    let mib = |kib: u64| kib as f64 / 1024.0;
    let rss: Vec<String> = marks
        .iter()
        .map(|(_, memory)| format!("{:.0}", mib(memory.rss)))
        .collect();
    report.add(
        format!(
            "long run, embedded mode: {} flows (create, update, complete, cancel), rate per tenth",
            thousands(total as f64)
        ),
        format!(
            "first {} → last {} = **{:+.1} %** (tenths: {})",
            rate(first),
            rate(last),
            change * 100.0,
            rates
                .iter()
                .map(|r| thousands(r.round()))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        "last tenth within 10 % of the first",
        Verdict::of(change.abs() <= 0.10),
    );
    // The gateway's CPU per flow in each tenth: the cost of a flow over time, which the
    // host's drift moves far less than the rate (the three processes share two cores).
    let cpu_per_flow: Vec<f64> = cpu_marks
        .iter()
        .enumerate()
        .map(|(i, cpu)| {
            let from = if i == 0 {
                Duration::ZERO
            } else {
                cpu_marks[i - 1]
            };
            cpu.saturating_sub(from).as_secs_f64() * 1e6 / tenth
        })
        .collect();
    report.info(
        "long run: gateway CPU per flow in each tenth, µs",
        format!(
            "first {:.0} → last {:.0} = **{:+.1} %** (tenths: {})",
            cpu_per_flow[0],
            cpu_per_flow[TENTHS - 1],
            (cpu_per_flow[TENTHS - 1] / cpu_per_flow[0].max(1e-9) - 1.0) * 100.0,
            cpu_per_flow
                .iter()
                .map(|c| format!("{c:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    let peak = marks.iter().map(|(_, m)| m.rss).max().unwrap_or(0);
    report.add(
        "long run: RSS at the end of each tenth, MiB (retention 5 s)",
        format!(
            "{} (at start {:.0}); **+{:.0} MiB over the last half**",
            rss.join(", "),
            mib(at_start.rss),
            mib(marks[TENTHS - 1]
                .1
                .rss
                .saturating_sub(marks[TENTHS / 2 - 1].1.rss))
        ),
        "bounded",
        Verdict::of(peak <= marks[TENTHS / 2 - 1].1.rss + marks[TENTHS / 2 - 1].1.rss / 10),
    );
    aged_against_fresh(args, http, sim, &agent, report).await
}

/// A gateway of the long run (embedded storage, a 5 s retention) with an agent, after
/// [`LONG_RUN_WARM_UP`] of flows, as every other measure has a warm-up: until the first
/// retirements the store only grows, so a rate counted from a cold start would be compared
/// with a steady state it has not reached. Also returns its memory before the warm-up.
async fn long_run_gateway(
    args: &Args,
    http: &Client,
    sim: &Sim,
    name: &str,
) -> Result<(Service, Agent, procs::Memory), String> {
    let gateway = start_gateway(
        http,
        name,
        sim,
        &args.logs,
        &[("SACP_RETENTION_SECS", "5".into())],
    )
    .await?;
    let agent = agent_at(http, &gateway).await?;
    let at_start = gateway.memory_kib()?;
    let warm_up = drive(
        args.connections,
        Window {
            warm_up: Duration::ZERO,
            measure: LONG_RUN_WARM_UP,
        },
        give_up_flows(&agent),
    )
    .await;
    clean(&format!("{name} warm-up"), &warm_up)?;
    Ok((gateway, agent, at_start))
}

/// One give-up flow, boxed so that a function can hand out the closure that makes them.
type Flow = std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// One flow per call: a checkout created, updated, completed and cancelled.
fn give_up_flows(agent: &Agent) -> impl Fn(usize) -> Flow + Clone + Send + Sync + 'static {
    let agent = agent.clone();
    move |worker| {
        let agent = agent.clone();
        Box::pin(async move { agent.give_up(worker).await })
    }
}

/// Slices in which the aged gateway and a fresh one alternate.
const SIDE_BY_SIDE_SLICES: u32 = 5;

/// The long run's gateway, aged by its flows, against a fresh gateway warmed up as the aged
/// one was before its first tenth, in alternating slices: both sides see the same host
/// speed, which the first and last tenths (a minute or more apart) do not.
async fn aged_against_fresh(
    args: &Args,
    http: &Client,
    sim: &Sim,
    aged: &Agent,
    report: &mut Report,
) -> Result<(), String> {
    let (_gateway, fresh, _) = long_run_gateway(args, http, sim, "gateway-long-run-fresh").await?;
    let (aged_outcome, fresh_outcome) = interleave(
        args.connections,
        args.window(),
        SIDE_BY_SIDE_SLICES,
        give_up_flows(aged),
        give_up_flows(&fresh),
        |_| {},
    )
    .await;
    clean("aged gateway", &aged_outcome)?;
    clean("fresh gateway", &fresh_outcome)?;
    let change = aged_outcome.per_second() / fresh_outcome.per_second() - 1.0;
    report.add(
        "long run: the aged gateway against a fresh one, alternating slices (same host speed)",
        format!(
            "{} against {} = **{:+.1} %**",
            rate(aged_outcome.per_second()),
            rate(fresh_outcome.per_second()),
            change * 100.0
        ),
        "within 10 % of the fresh one",
        Verdict::of(change.abs() <= 0.10),
    );
    Ok(())
}
