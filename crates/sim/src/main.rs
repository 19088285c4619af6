//! `sacp-sim`: the simulated store and wallet as one standalone HTTP server.
//!
//! Serves the store at `/ssim` and the wallet at `/wsim` on `SACP_SIM_LISTEN`
//! (default `127.0.0.1:8090`), so gateway replicas can share one pair of upstreams:
//! `SSIM_BASE_URL=http://127.0.0.1:8090/ssim WSIM_BASE_URL=http://127.0.0.1:8090/wsim`.
//! `SACP_SIM_PUBLIC_URL` sets the base URL used in links (default `http://` + listen address).

use std::sync::Arc;

use actix_web::{App, HttpServer};
use sacp_ports::clock::SystemClock;
use sacp_sim::Simulators;
use tracing_subscriber::EnvFilter;

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let listen = std::env::var("SACP_SIM_LISTEN").unwrap_or_else(|_| "127.0.0.1:8090".to_owned());
    let public =
        std::env::var("SACP_SIM_PUBLIC_URL").unwrap_or_else(|_| format!("http://{listen}"));
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
