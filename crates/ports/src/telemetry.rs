//! The gateway's metrics: their names, kinds, labels and meaning.
//!
//! Dashboards and alert rules depend on these names, so they are fixed here, once: every
//! crate records under these constants (through the `metrics` facade), the binary describes
//! them to the exporter from [`CATALOGUE`], and a test holds `docs/operations.md` to the
//! same list. Labels are bounded: route patterns, operation names, outcomes — never a raw
//! path, an id, a key or a token.

/// What kind of series a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (`_total`).
    Counter,
    /// A value now.
    Gauge,
    /// A distribution, in seconds (`_seconds`): buckets, `_sum` and `_count`.
    Histogram,
}

/// One metric of [`CATALOGUE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    /// The exposed name.
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: Kind,
    /// Its label names.
    pub labels: &'static [&'static str],
    /// What it measures (the `# HELP` text).
    pub help: &'static str,
}

/// Requests answered, by method, route pattern and status.
pub const HTTP_REQUESTS: &str = "sacp_http_requests_total";
/// Time from a request's arrival to its answer, by method and route pattern.
pub const HTTP_REQUEST_DURATION: &str = "sacp_http_request_duration_seconds";
/// Requests being handled now.
pub const HTTP_IN_FLIGHT: &str = "sacp_http_requests_in_flight";
/// Calls to the store and the wallet, by upstream, operation and outcome.
pub const UPSTREAM_REQUESTS: &str = "sacp_upstream_requests_total";
/// Time of one upstream call, by upstream and operation.
pub const UPSTREAM_REQUEST_DURATION: &str = "sacp_upstream_request_duration_seconds";
/// 1 while an upstream's circuit breaker is open (or trying one request), else 0.
pub const UPSTREAM_BREAKER_OPEN: &str = "sacp_upstream_breaker_open";
/// Payment authorizations that ended, by outcome.
pub const PAYMENTS: &str = "sacp_payments_total";
/// Live payment authorizations, by state, in the storage this replica uses.
pub const PAYMENT_AUTHORIZATIONS: &str = "sacp_payment_authorizations";
/// How far the driver is behind the oldest due poll, as of its last scan.
pub const DRIVER_LAG: &str = "sacp_payment_driver_lag_seconds";
/// Payment tokens minted at the wallet for an approved payment.
pub const WALLET_TOKENS_MINTED: &str = "sacp_wallet_tokens_minted_total";
/// Requests and tool calls refused by a rate limit or quota, by policy.
pub const RATE_LIMIT_REFUSALS: &str = "sacp_rate_limit_refusals_total";
/// Requests and tool calls refused by a kill switch, by switch.
pub const KILL_SWITCH_REFUSALS: &str = "sacp_kill_switch_refusals_total";
/// Requests refused because the replica's or an organisation's in-flight cap was full.
pub const IN_FLIGHT_REFUSALS: &str = "sacp_in_flight_refusals_total";
/// Idempotent writes answered from their stored first answer.
pub const IDEMPOTENT_REPLAYS: &str = "sacp_idempotent_replays_total";
/// Idempotency keys reused for a different request, or while the first is in progress.
pub const IDEMPOTENCY_CONFLICTS: &str = "sacp_idempotency_conflicts_total";
/// Time to write one audit event.
pub const AUDIT_WRITE_DURATION: &str = "sacp_audit_write_duration_seconds";
/// Database connections of this replica's pool, by state (`in_use`, `idle`).
pub const DB_POOL_CONNECTIONS: &str = "sacp_db_pool_connections";
/// The pool's size limit.
pub const DB_POOL_MAX: &str = "sacp_db_pool_max_connections";
/// Time a storage call waited for a pool connection.
pub const DB_POOL_WAIT: &str = "sacp_db_pool_wait_seconds";
/// Storage calls that found no free connection in time (answered as unavailable).
pub const DB_POOL_TIMEOUTS: &str = "sacp_db_pool_timeouts_total";
/// Time of one storage call on its connection (a statement, or a transaction).
pub const DB_STATEMENT_DURATION: &str = "sacp_db_statement_duration_seconds";
/// MCP tool calls, by tool and outcome.
pub const MCP_TOOL_CALLS: &str = "sacp_mcp_tool_calls_total";
/// Always 1; the labels say which build runs.
pub const BUILD_INFO: &str = "sacp_build_info";

/// Every metric the gateway exposes.
pub const CATALOGUE: &[Metric] = &[
    Metric {
        name: HTTP_REQUESTS,
        kind: Kind::Counter,
        labels: &["method", "route", "status"],
        help: "Requests answered, by method, route pattern and status",
    },
    Metric {
        name: HTTP_REQUEST_DURATION,
        kind: Kind::Histogram,
        labels: &["method", "route"],
        help: "Seconds from a request's arrival to its answer",
    },
    Metric {
        name: HTTP_IN_FLIGHT,
        kind: Kind::Gauge,
        labels: &[],
        help: "Requests being handled now",
    },
    Metric {
        name: UPSTREAM_REQUESTS,
        kind: Kind::Counter,
        labels: &["upstream", "operation", "outcome"],
        help: "Calls to the store and the wallet, by outcome",
    },
    Metric {
        name: UPSTREAM_REQUEST_DURATION,
        kind: Kind::Histogram,
        labels: &["upstream", "operation"],
        help: "Seconds of one call to the store or the wallet",
    },
    Metric {
        name: UPSTREAM_BREAKER_OPEN,
        kind: Kind::Gauge,
        labels: &["upstream"],
        help: "1 while the upstream's circuit breaker is open or trying one request",
    },
    Metric {
        name: PAYMENTS,
        kind: Kind::Counter,
        labels: &["outcome"],
        help: "Payments that ended: completed, rejected, expired, failed, cancelled",
    },
    Metric {
        name: PAYMENT_AUTHORIZATIONS,
        kind: Kind::Gauge,
        labels: &["state"],
        help: "Live payment authorizations now: pending (waiting for the person), approved, charging",
    },
    Metric {
        name: DRIVER_LAG,
        kind: Kind::Gauge,
        labels: &[],
        help: "Seconds the payment driver is behind the oldest due poll, as of its last scan",
    },
    Metric {
        name: WALLET_TOKENS_MINTED,
        kind: Kind::Counter,
        labels: &[],
        help: "Payment tokens minted at the wallet for approved payments",
    },
    Metric {
        name: RATE_LIMIT_REFUSALS,
        kind: Kind::Counter,
        labels: &["policy"],
        help: "Requests and tool calls refused by a rate limit or quota, by policy",
    },
    Metric {
        name: KILL_SWITCH_REFUSALS,
        kind: Kind::Counter,
        labels: &["switch"],
        help: "Requests and tool calls refused by a kill switch: read_only, checkout_creation, payments",
    },
    Metric {
        name: IN_FLIGHT_REFUSALS,
        kind: Kind::Counter,
        labels: &["scope"],
        help: "Requests refused because the replica's or an organisation's in-flight cap was full",
    },
    Metric {
        name: IDEMPOTENT_REPLAYS,
        kind: Kind::Counter,
        labels: &[],
        help: "Idempotent writes answered from their stored first answer",
    },
    Metric {
        name: IDEMPOTENCY_CONFLICTS,
        kind: Kind::Counter,
        labels: &["reason"],
        help: "Idempotency keys reused with another request, or while the first was in progress",
    },
    Metric {
        name: AUDIT_WRITE_DURATION,
        kind: Kind::Histogram,
        labels: &[],
        help: "Seconds to write one audit event",
    },
    Metric {
        name: DB_POOL_CONNECTIONS,
        kind: Kind::Gauge,
        labels: &["state"],
        help: "Database connections of this replica's pool: in_use, idle",
    },
    Metric {
        name: DB_POOL_MAX,
        kind: Kind::Gauge,
        labels: &[],
        help: "Largest number of database connections this replica opens",
    },
    Metric {
        name: DB_POOL_WAIT,
        kind: Kind::Histogram,
        labels: &[],
        help: "Seconds a storage call waited for a pool connection",
    },
    Metric {
        name: DB_POOL_TIMEOUTS,
        kind: Kind::Counter,
        labels: &[],
        help: "Storage calls that found no free connection in time",
    },
    Metric {
        name: DB_STATEMENT_DURATION,
        kind: Kind::Histogram,
        labels: &[],
        help: "Seconds of one storage call on its connection (a statement or a transaction)",
    },
    Metric {
        name: MCP_TOOL_CALLS,
        kind: Kind::Counter,
        labels: &["tool", "outcome"],
        help: "MCP tool calls, by tool and outcome (ok, error, refused)",
    },
    Metric {
        name: BUILD_INFO,
        kind: Kind::Gauge,
        labels: &["version"],
        help: "Always 1; the version label says which build runs",
    },
];

/// The statuses the gateway answers, each with its label (sorted by code).
pub const STATUSES: &[(u16, &str)] = &[
    (200, "200"),
    (201, "201"),
    (202, "202"),
    (204, "204"),
    (304, "304"),
    (307, "307"),
    (308, "308"),
    (400, "400"),
    (401, "401"),
    (403, "403"),
    (404, "404"),
    (405, "405"),
    (406, "406"),
    (408, "408"),
    (409, "409"),
    (410, "410"),
    (411, "411"),
    (413, "413"),
    (415, "415"),
    (422, "422"),
    (428, "428"),
    (429, "429"),
    (431, "431"),
    (500, "500"),
    (502, "502"),
    (503, "503"),
    (504, "504"),
];

/// Where `status` is in [`STATUSES`], if it is there.
pub fn status_index(status: u16) -> Option<usize> {
    STATUSES
        .binary_search_by_key(&status, |(code, _)| *code)
        .ok()
}

/// The label value for an HTTP status code, without allocating for those of [`STATUSES`].
pub fn status_label(status: u16) -> std::borrow::Cow<'static, str> {
    match status_index(status) {
        Some(index) => std::borrow::Cow::Borrowed(STATUSES[index].1),
        None => std::borrow::Cow::Owned(status.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_conventions_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for metric in CATALOGUE {
            assert!(seen.insert(metric.name), "{} twice", metric.name);
            assert!(metric.name.starts_with("sacp_"), "{}", metric.name);
            match metric.kind {
                Kind::Counter => assert!(metric.name.ends_with("_total"), "{}", metric.name),
                Kind::Histogram => assert!(metric.name.ends_with("_seconds"), "{}", metric.name),
                Kind::Gauge => assert!(!metric.name.ends_with("_total"), "{}", metric.name),
            }
        }
    }

    #[test]
    fn status_labels_are_the_code() {
        for code in [200, 202, 404, 429, 503, 418, 599] {
            assert_eq!(status_label(code), code.to_string());
        }
    }
}
