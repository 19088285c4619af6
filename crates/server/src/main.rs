//! `sacp-gateway`: the SACP Gateway server.

use clap::{Parser, Subcommand};
use sacp_server::{Settings, banner, migrate, start};
use tracing_subscriber::EnvFilter;

/// The SACP Gateway: AI agents shop for a person; the person approves payment in their wallet.
#[derive(Debug, Parser)]
#[command(name = "sacp-gateway", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    settings: Settings,
}

#[derive(Debug, Clone, Subcommand)]
enum Command {
    /// Serve the gateway (the default).
    Serve,
    /// Apply pending database migrations to DATABASE_URL and exit.
    Migrate,
    /// Manage integration API keys in DATABASE_URL (prints JSON).
    Keys {
        #[command(subcommand)]
        command: sacp_server::keys::KeysCommand,
    },
}

/// The log filter without `RUST_LOG`. actix-http answers malformed requests (400) and
/// oversized heads (431) itself, before any gateway code runs, and logs each as an ERROR
/// "stream error": a client's mistake, not the gateway's, so its dispatcher is silenced.
///
/// rmcp logs each malformed MCP message a client sends as a WARN carrying the message
/// (up to the body limit): also the client's mistake, answered to it, so only its errors
/// are kept.
const DEFAULT_LOG_FILTER: &str = "info,actix_http::h1::dispatcher=off,rmcp=error";

/// Room for log lines written to standard output in one system call.
const LOG_BUFFER_BYTES: usize = 64 * 1024;

/// Lines that may wait for the log thread before logging threads wait in turn (as a
/// blocked standard output made them wait before). The queue's slots are allocated up
/// front: tracing-appender's default of 128,000 cost 4.4 MiB of resident memory at start;
/// 4,096 slots are 160 KiB, and the thread writes them out far faster than requests come.
const LOG_QUEUE_LINES: usize = 4_096;

/// Installs the log subscriber. Lines are formatted on the thread that logs them and
/// written by a thread of their own, which drains every line waiting and writes them with
/// one system call: an access line per request no longer costs each request a `write`.
/// Nothing is dropped (a full queue makes the logging thread wait, as a blocking write
/// did), and a line is written within about [`LOG_GATHER`] of being logged (see
/// [`Gathering`]). The returned guard writes what is queued when the process ends.
fn init_logs(format: &str) -> tracing_appender::non_blocking::WorkerGuard {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .thread_name("sacp-log")
        .finish(stdout_writer());
    // Colours only on a terminal: log files and collectors get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    if format.eq_ignore_ascii_case("json") {
        builder.json().init();
    } else {
        builder.init();
    }
    guard
}

/// Standard output, buffered: the log thread flushes after each batch of lines. Rust's
/// own `Stdout` flushes at every newline, hence a descriptor of our own on the same output.
fn stdout_writer() -> Gathering<Box<dyn std::io::Write + Send>> {
    use std::os::fd::AsFd;
    let output: Box<dyn std::io::Write + Send> =
        match std::io::stdout().as_fd().try_clone_to_owned() {
            Ok(fd) => Box::new(std::io::BufWriter::with_capacity(
                LOG_BUFFER_BYTES,
                std::fs::File::from(fd),
            )),
            Err(_) => Box::new(std::io::stdout()),
        };
    Gathering(output)
}

/// How long the log thread rests after writing a batch, so that the next lines gather.
const LOG_GATHER: std::time::Duration = std::time::Duration::from_millis(1);

/// The log thread's output: after each batch is flushed, the thread rests for
/// [`LOG_GATHER`]. Without the rest it went back to the queue at once, where the next line
/// was always a few microseconds away: the queue's receiver spun and yielded for each line
/// instead of sleeping (a quarter of the gateway's CPU under load, ≈ 1–2 µs per request;
/// `docs/benchmarks.md`). With it, lines wait at most about a millisecond and are written
/// dozens at a time; an idle thread still sleeps on the queue.
struct Gathering<W>(W);

impl<W: std::io::Write> std::io::Write for Gathering<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.0.write_all(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()?;
        std::thread::sleep(LOG_GATHER);
        Ok(())
    }
}

#[actix_web::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let _logs_written_at_exit = init_logs(&cli.settings.log_format);
    if let Some(Command::Keys { command }) = cli.command.clone() {
        return match sacp_server::keys::run(&cli.settings, command).await {
            Ok(output) => {
                #[allow(clippy::print_stdout)] // the command's answer, for the operator or a script
                {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&output).unwrap_or_default()
                    );
                }
                std::process::ExitCode::SUCCESS
            }
            Err(error) => {
                tracing::error!(%error, "keys command failed");
                std::process::ExitCode::FAILURE
            }
        };
    }
    if let Some(Command::Migrate) = cli.command {
        return match migrate(&cli.settings).await {
            Ok((_, applied)) => {
                tracing::info!(count = applied.len(), migrations = ?applied, "migrations applied");
                std::process::ExitCode::SUCCESS
            }
            Err(error) => {
                tracing::error!(%error, "migration failed");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let running = match start(&cli.settings).await {
        Ok(running) => running,
        Err(error) => {
            tracing::error!(%error, "sacp-gateway cannot start");
            return std::process::ExitCode::FAILURE;
        }
    };
    #[allow(clippy::print_stdout)] // the banner is for the person at the terminal
    {
        println!("{}", banner(&running));
    }
    match running.wait().await {
        Ok(()) => {
            tracing::info!("sacp-gateway stopped");
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!(%error, "sacp-gateway failed");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::time::Instant;

    use super::{Gathering, LOG_GATHER};

    /// An output that records what reached it and how often it was flushed.
    #[derive(Default)]
    struct Recorded {
        bytes: Vec<u8>,
        flushes: usize,
    }

    impl Write for Recorded {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.bytes.extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            self.flushes += 1;
            Ok(())
        }
    }

    #[test]
    fn the_log_output_passes_every_line_on_and_rests_after_each_batch() {
        let mut output = Gathering(Recorded::default());
        output.write_all(b"first line\n").unwrap();
        output.write_all(b"second line\n").unwrap();
        let started = Instant::now();
        output.flush().unwrap();
        assert!(
            started.elapsed() >= LOG_GATHER,
            "the log thread rests after a batch"
        );
        assert_eq!(output.0.flushes, 1, "the batch reached the output");
        assert_eq!(output.0.bytes, b"first line\nsecond line\n");
    }
}
