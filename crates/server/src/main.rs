//! `sacp-gateway`: the SACP Gateway server.

use clap::Parser;
use sacp_server::{Settings, banner, start};
use tracing_subscriber::EnvFilter;

/// The SACP Gateway: AI agents shop for a person; the person approves payment in their wallet.
#[derive(Debug, Parser)]
#[command(name = "sacp-gateway", version, about)]
struct Cli {
    #[command(flatten)]
    settings: Settings,
}

fn init_logs(format: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if format.eq_ignore_ascii_case("json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[actix_web::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logs(&cli.settings.log_format);
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
