//! `sacp-gateway`: the SACP Gateway server.

use clap::{Parser, Subcommand};
use sacp_server::{Settings, banner, migrate, start};

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

#[actix_web::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let _logs_written_at_exit = sacp_server::logs::init(&cli.settings.log_format);
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
