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

/// Builds the MCP service over `gateway`. Links it returns are under `public_url`, and only
/// requests naming its host (`Host`) are served (DNS-rebinding protection).
pub fn service(gateway: Gateway, public_url: &str) -> McpService {
    let server = SacpMcp::new(gateway, Links::new(public_url), public_url);
    let hosts = allowed_hosts(public_url);
    StreamableHttpService::builder()
        .service_factory(Arc::new(move || Ok(server.clone())))
        .session_manager(Arc::new(LocalSessionManager::default()))
        .stateful_mode(false)
        .json_response(true)
        .allowed_hosts(hosts)
        .max_request_body_bytes(sacp_wire::MAX_BODY_BYTES)
        .on_request_fn(|request, extensions| {
            use actix_web::HttpMessage;
            // What the gateway's guard and request-id middleware found, for the tools.
            let found = request.extensions();
            if let Some(caller) = found.get::<Caller>() {
                extensions.insert(caller.clone());
            }
            if let Some(id) = found.get::<RequestId>() {
                extensions.insert(id.clone());
            }
        })
        .build()
}

/// The host names a request may name: the public URL's (a loopback public URL also allows
/// the other loopback names).
fn allowed_hosts(public_url: &str) -> Vec<String> {
    let host = url_host(public_url);
    let loopback = ["localhost", "127.0.0.1", "::1", "[::1]"];
    let mut hosts: Vec<String> = host.iter().cloned().collect();
    if host.as_deref().is_some_and(|h| loopback.contains(&h)) {
        hosts.extend(loopback.iter().map(|h| (*h).to_owned()));
    }
    hosts.sort();
    hosts.dedup();
    hosts
}

/// The host of `url` (without port), lower-cased.
pub(crate) fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit('@').next()?;
    let host = if let Some(bracketed) = authority.strip_prefix('[') {
        bracketed.split(']').next()?.to_owned()
    } else {
        authority.split(':').next()?.to_owned()
    };
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_come_from_the_public_url() {
        assert_eq!(
            allowed_hosts("https://shop.example.com/"),
            ["shop.example.com"]
        );
        assert!(allowed_hosts("http://127.0.0.1:8080").contains(&"localhost".to_owned()));
        assert_eq!(url_host("http://[::1]:8080/x"), Some("::1".into()));
        assert_eq!(
            url_host("https://User@Shop.Example:443"),
            Some("shop.example".into())
        );
    }
}
