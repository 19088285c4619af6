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
/// did), and a line is written as soon as the writer is idle, not on a timer. The returned
/// guard writes what is queued when the process ends.
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
fn stdout_writer() -> Box<dyn std::io::Write + Send> {
    use std::os::fd::AsFd;
    match std::io::stdout().as_fd().try_clone_to_owned() {
        Ok(fd) => Box::new(std::io::BufWriter::with_capacity(
            LOG_BUFFER_BYTES,
            std::fs::File::from(fd),
        )),
        Err(_) => Box::new(std::io::stdout()),
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
