//! What the gateway's inbound adapters say, shared by the REST API and MCP so that both
//! answer alike: the JSON shapes of answers ([`dto`], with their schemas) and RFC 9457
//! problems ([`problem`]).

pub mod catalog;
pub mod dto;
pub mod messages;
mod payment;
pub mod problem;
pub mod qr;

/// The id of the request being answered (`X-Request-Id`), kept in the request's extensions
/// for what runs outside its task (MCP tool calls).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// Largest request body accepted (REST bodies and MCP messages alike).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
