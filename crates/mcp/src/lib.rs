//! MCP inbound adapter (work in progress).
