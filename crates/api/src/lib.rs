//! HTTP API of the SACP gateway: routes, middleware, RFC 9457 errors, the OpenAPI document,
//! and the use cases that handlers and background workers share.
//!
//! This crate depends on the ports only; the server binary wires adapters in.
