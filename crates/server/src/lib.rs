//! Wiring of the `sacp-gateway` binary: configuration, adapters, workers.
