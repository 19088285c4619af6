//! `sacp-sim`: the simulated store and wallet as one standalone HTTP server.
//!
//! Serves the store at `/ssim` and the wallet at `/wsim` on `SACP_SIM_LISTEN`
//! (default `127.0.0.1:8090`), so gateway replicas can share one pair of upstreams:
//! `SSIM_BASE_URL=http://127.0.0.1:8090/ssim WSIM_BASE_URL=http://127.0.0.1:8090/wsim`.
//! `SACP_SIM_PUBLIC_URL` sets the base URL used in links (default `http://` + listen address).

use std::sync::Arc;

use actix_web::{App, HttpServer};
use clap::Parser;
use sacp_ports::clock::SystemClock;
use sacp_sim::Simulators;
use tracing_subscriber::EnvFilter;

/// The simulated SACP store (SSIM, at /ssim) and wallet (WSIM, at /wsim), speaking their real
/// HTTP contracts, with fault knobs at /ssim/sim/faults and /wsim/sim/faults.
#[derive(Debug, Parser)]
#[command(name = "sacp-sim", version)]
struct Cli {
    /// Address to bind.
    #[arg(long, env = "SACP_SIM_LISTEN", default_value = "127.0.0.1:8090")]
    listen: String,
    /// Base URL used in the links the simulators return. Default: `http://` + the listen
    /// address.
    #[arg(long, env = "SACP_SIM_PUBLIC_URL")]
    public_url: Option<String>,
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let listen = cli.listen;
    let public = cli.public_url.unwrap_or_else(|| format!("http://{listen}"));
    let public = public.trim_end_matches('/');
    let simulators = Simulators::sandbox(
        &format!("{public}/ssim"),
        &format!("{public}/wsim"),
        Arc::new(SystemClock),
    );
    let server = HttpServer::new({
        let simulators = simulators.clone();
        move || {
            App::new().configure(sacp_sim::http::configure(
                &simulators,
                "",
                sacp_sim::http::Exposure::Open,
            ))
        }
    })
    .bind(&listen)?;
    tracing::info!(
        store = %format!("{public}/ssim"),
        wallet = %format!("{public}/wsim"),
        "sacp-sim listening on {listen}"
    );
    server.run().await
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::Cli;

    #[test]
    fn help_and_version_print_instead_of_serving() {
        for flag in ["--help", "--version"] {
            let answer = Cli::try_parse_from(["sacp-sim", flag]);
            assert!(
                matches!(answer, Err(ref e) if e.exit_code() == 0),
                "{flag}: {answer:?}"
            );
        }
        assert!(Cli::try_parse_from(["sacp-sim", "--bogus"]).is_err());
        let cli = Cli::try_parse_from(["sacp-sim", "--listen", "127.0.0.1:9"]).unwrap();
        assert_eq!(cli.listen, "127.0.0.1:9");
    }
}
