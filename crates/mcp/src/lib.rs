//! The MCP inbound adapter: the gateway's shopping tools over MCP's Streamable HTTP
//! transport at `/mcp`, for Claude, ChatGPT apps and any MCP client.
//!
//! Built on the official Rust SDK (`rmcp`), mounted in actix with `rmcp-actix-web`, served
//! statelessly (no session in any process: any replica answers any request) to both protocol
//! eras — the initialize handshake (2025-06-18, 2025-11-25) and the stateless 2026-07-28
//! revision. JSON answers, no legacy HTTP+SSE transport.
//!
//! Each tool mirrors a REST route and is guarded as that route is (see [`tools`]); the
//! `/mcp` request itself is authenticated by the REST API's guard, which the server wires in
//! front (this crate does not depend on the REST API).

mod calls;
mod origin;
mod schema;
mod server;
pub mod tools;
pub mod widget;

use std::sync::Arc;

use rmcp_actix_web::transport::{LocalSessionManager, StreamableHttpService};
use sacp_app::{Caller, Gateway};
use sacp_wire::RequestId;
use sacp_wire::dto::Links;

pub use origin::{AllowedOrigins, check_origin};
pub use server::SacpMcp;

/// The path the MCP endpoint is served at.
pub const PATH: &str = "/mcp";

/// The MCP service, ready to be mounted under [`PATH`] on every worker (clone it).
pub type McpService = StreamableHttpService<SacpMcp, LocalSessionManager>;

/// Builds the MCP service over `gateway`, with links under `public_url`.
///
/// rmcp's `Host` allow-list is off: it would refuse every request behind a proxy that
/// rewrites `Host`, and what it guards against — a browser page driving the endpoint after a
/// DNS rebinding — is refused by the `Origin` check in front ([`check_origin`]), as such a
/// page's requests carry its own origin.
pub fn service(gateway: Gateway, public_url: &str) -> McpService {
    let server = SacpMcp::new(gateway, Links::new(public_url), public_url);
    StreamableHttpService::builder()
        .service_factory(Arc::new(move || Ok(server.clone())))
        .session_manager(Arc::new(LocalSessionManager::default()))
        .stateful_mode(false)
        .json_response(true)
        .allowed_hosts(Vec::new())
        .max_request_body_bytes(sacp_wire::MAX_BODY_BYTES)
        .on_request_fn(|request, extensions| {
            use actix_web::HttpMessage;
            // What the gateway's guard and request-id middleware found (the caller, the
            // request id, the trace context), for the tools.
            let found = request.extensions();
            if let Some(caller) = found.get::<Caller>() {
                extensions.insert(caller.clone());
            }
            if let Some(id) = found.get::<RequestId>() {
                extensions.insert(id.clone());
            }
            if let Some(trace) = found.get::<opentelemetry::Context>() {
                extensions.insert(trace.clone());
            }
        })
        .build()
}
