//! The processes under test: started from the release binaries next to this one, logging to
//! files, stopped when dropped (so a failed or interrupted run leaves nothing behind).

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free port on loopback (bound and released; the service binds it right after).
pub fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(|e| format!("no free port on loopback: {e}"))
}

/// A binary built beside this one (`target/release`).
pub fn sibling(name: &str) -> Result<PathBuf, String> {
    let me = std::env::current_exe().map_err(|e| format!("cannot locate myself: {e}"))?;
    let path = me.with_file_name(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{} is missing: build it first (scripts/bench does)",
            path.display()
        ))
    }
}

/// A running service.
#[derive(Debug)]
pub struct Service {
    name: String,
    child: Child,
    /// Its base URL.
    pub base: String,
}

impl Service {
    /// Starts `program` with `env`, its output going to `<logs>/<name>.log`.
    pub fn start(
        name: &str,
        program: &Path,
        args: &[&str],
        env: &[(&str, String)],
        logs: &Path,
        base: String,
    ) -> Result<Service, String> {
        let log_path = logs.join(format!("{name}.log"));
        let log = File::create(&log_path)
            .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
        let errors = log
            .try_clone()
            .map_err(|e| format!("cannot share {}: {e}", log_path.display()))?;
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(errors));
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
        Ok(Service {
            name: name.to_owned(),
            child,
            base,
        })
    }

    /// Waits (up to 60 s, for migrations) until `path` answers 200.
    pub async fn wait_ready(&mut self, http: &reqwest::Client, path: &str) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let url = format!("{}{path}", self.base);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "{} exited with {status} before it was ready; see its log",
                    self.name
                ));
            }
            if let Ok(answer) = http.get(&url).send().await
                && answer.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("{} was not ready within 60 s at {url}", self.name));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Resident memory now, in KiB (Linux `/proc`).
    pub fn memory_kib(&self) -> Result<Memory, String> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .map_err(|e| format!("cannot read the memory of {}: {e}", self.name))?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kib| kib.parse::<u64>().ok())
                .ok_or_else(|| format!("{name} missing from /proc status of {}", self.name))
        };
        Ok(Memory {
            rss: field("VmRSS:")?,
            peak: field("VmHWM:")?,
            anonymous: field("RssAnon:")?,
        })
    }

    /// CPU time (user + system) the process used so far.
    pub fn cpu_time(&self) -> Result<Duration, String> {
        process_cpu(&format!("/proc/{}/stat", self.child.id()))
            .ok_or_else(|| format!("cannot read the CPU time of {}", self.name))
    }
}

/// A process's resident memory, in KiB.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    /// Resident set size.
    pub rss: u64,
    /// Peak resident set size.
    pub peak: u64,
    /// The anonymous part of `rss` (heap and stacks, not mapped files such as the binary).
    pub anonymous: u64,
}

/// Linux reports CPU time in USER_HZ, 100 per second on every architecture Rust targets here.
const TICK: Duration = Duration::from_millis(10);

/// User + system CPU time from a `/proc/<pid>/stat` file.
fn process_cpu(path: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks = |index: usize| fields.get(index).and_then(|t| t.parse::<u32>().ok());
    Some(TICK * (ticks(11)? + ticks(12)?))
}

/// CPU time used so far by this process (the load generator).
pub fn own_cpu() -> Duration {
    process_cpu("/proc/self/stat").unwrap_or_default()
}

/// CPU time used so far by every process whose command name is `name` (e.g. `postgres`).
pub fn command_cpu(name: &str) -> Duration {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Duration::ZERO;
    };
    entries
        .flatten()
        .filter(|entry| {
            std::fs::read_to_string(entry.path().join("comm"))
                .is_ok_and(|comm| comm.trim_end() == name)
        })
        .filter_map(|entry| process_cpu(&entry.path().join("stat").to_string_lossy()))
        .sum()
}

/// Busy CPU time of the whole machine so far (every core; idle and I/O wait left out).
pub fn machine_busy() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return Duration::ZERO;
    };
    let Some(line) = stat.lines().next() else {
        return Duration::ZERO;
    };
    let ticks: Vec<u32> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    let total: u32 = ticks.iter().sum();
    let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
    TICK * total.saturating_sub(idle)
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Makes sure PostgreSQL answers on `host:port`, starting the local cluster if it does not.
pub fn ensure_postgres(host: &str, port: u16) -> Result<(), String> {
    let ready = || {
        Command::new("pg_isready")
            .args(["-q", "-h", host, "-p", &port.to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    if ready() {
        return Ok(());
    }
    let versions = std::fs::read_dir("/etc/postgresql").map_err(|_| {
        format!("PostgreSQL is not answering on {host}:{port} and no local cluster exists")
    })?;
    let mut versions: Vec<String> = versions
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    versions.sort_by_key(|v| v.parse::<u32>().unwrap_or(0));
    let version = versions
        .pop()
        .ok_or("no PostgreSQL cluster under /etc/postgresql")?;
    let _ = Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", &version, "main", "start"])
        .status();
    for _ in 0..30 {
        if ready() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    Err(format!("PostgreSQL did not start on {host}:{port}"))
}

/// Drops and creates database `name` (as user `user`), so each run starts empty.
pub fn fresh_database(host: &str, port: u16, user: &str, name: &str) -> Result<(), String> {
    let port = port.to_string();
    let common = ["-h", host, "-p", port.as_str(), "-U", user];
    let run = |program: &str, extra: &[&str]| {
        let status = Command::new(program)
            .args(common)
            .args(extra)
            .status()
            .map_err(|e| format!("cannot run {program}: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("{program} {} failed: {status}", extra.join(" ")))
        }
    };
    run("dropdb", &["--if-exists", "--force", name])?;
    run("createdb", &[name])
}

/// Transactions committed or rolled back in database `name` so far (PostgreSQL's
/// statistics, which backends report about once a second). Every statement outside an
/// explicit transaction counts as one.
pub fn transactions(host: &str, port: u16, user: &str, name: &str) -> Result<u64, String> {
    let query = format!(
        "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = '{name}'"
    );
    let output = Command::new("psql")
        .args(["-h", host, "-p", &port.to_string(), "-U", user, "-d", name])
        .args(["-Atc", &query])
        .output()
        .map_err(|e| format!("cannot run psql: {e}"))?;
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .map_err(|_| {
            format!(
                "cannot read the transaction count of {name}: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            )
        })
}
