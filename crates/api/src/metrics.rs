//! The HTTP metrics of the listener: requests by method, route pattern and status, their
//! durations, and the requests in flight.
//!
//! Recording takes no lock on the request path: the series of every route of the API are
//! resolved once (a handle is an atomic the exporter reads), and the route a request took
//! is labelled by the guard of that route ([`RouteLabel`]). Requests outside the API (the
//! sandbox's simulators, paths no route matches) are labelled by the router's pattern or
//! `(unmatched)` and go through the exporter's registry.

use std::collections::HashMap;
use std::sync::{LazyLock, OnceLock};
use std::time::Duration;

use actix_web::http::Method;
use metrics::{Counter, Gauge, Histogram};
use sacp_ports::telemetry::{self, STATUSES};

/// The route pattern the guard of a route sets on its request, for the metrics.
#[derive(Debug, Clone, Copy)]
pub struct RouteLabel(pub &'static str);

/// The `method` labels of the series held per route; anything else is `OTHER`.
const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "OTHER",
];

fn method_index(method: &Method) -> usize {
    match *method {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::POST => 2,
        Method::PUT => 3,
        Method::PATCH => 4,
        Method::DELETE => 5,
        Method::OPTIONS => 6,
        _ => 7,
    }
}

/// The series of one method on one route, made on first use.
struct MethodSeries {
    duration: OnceLock<Histogram>,
    statuses: [OnceLock<Counter>; STATUSES.len()],
}

impl MethodSeries {
    fn new() -> MethodSeries {
        MethodSeries {
            duration: OnceLock::new(),
            statuses: std::array::from_fn(|_| OnceLock::new()),
        }
    }
}

/// The series of one route.
struct RouteSeries {
    methods: [MethodSeries; METHODS.len()],
}

/// The series of every route of the API and of the MCP endpoint, by pattern.
static ROUTES: LazyLock<HashMap<&'static str, RouteSeries>> = LazyLock::new(|| {
    crate::endpoints::ENDPOINTS
        .iter()
        .map(|e| e.pattern)
        .chain([crate::endpoints::MCP.pattern, crate::UNMATCHED])
        .map(|pattern| {
            let series = RouteSeries {
                methods: std::array::from_fn(|_| MethodSeries::new()),
            };
            (pattern, series)
        })
        .collect()
});

/// `sacp_http_requests_in_flight`.
fn in_flight() -> &'static Gauge {
    static GAUGE: OnceLock<Gauge> = OnceLock::new();
    GAUGE.get_or_init(|| metrics::gauge!(telemetry::HTTP_IN_FLIGHT))
}

/// A request in flight: counted from [`InFlight::enter`] until dropped.
#[derive(Debug)]
pub struct InFlight(());

impl InFlight {
    /// Counts one more request in flight.
    pub fn enter() -> InFlight {
        in_flight().increment(1.0);
        InFlight(())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        in_flight().decrement(1.0);
    }
}

/// Records one answered request.
pub fn record(method: &Method, route: &str, status: u16, elapsed: Duration) {
    let seconds = elapsed.as_secs_f64();
    let method_slot = method_index(method);
    let method_label = METHODS[method_slot];
    if let Some(series) = ROUTES.get(route) {
        let (route, slot) = (route_label(route), &series.methods[method_slot]);
        slot.duration
            .get_or_init(|| duration(method_label, route))
            .record(seconds);
        match telemetry::status_index(status) {
            Some(index) => slot.statuses[index]
                .get_or_init(|| requests(method_label, route, STATUSES[index].1.to_owned()))
                .increment(1),
            None => requests(method_label, route, status.to_string()).increment(1),
        }
        return;
    }
    let route = route.to_owned();
    duration(method_label, route.clone()).record(seconds);
    requests(
        method_label,
        route,
        telemetry::status_label(status).into_owned(),
    )
    .increment(1);
}

/// The `'static` pattern of a known route (the map's own key).
fn route_label(route: &str) -> &'static str {
    ROUTES
        .get_key_value(route)
        .map_or(crate::UNMATCHED, |(pattern, _)| pattern)
}

fn duration(method: &'static str, route: impl Into<metrics::SharedString>) -> Histogram {
    metrics::histogram!(
        telemetry::HTTP_REQUEST_DURATION,
        "method" => method,
        "route" => route.into()
    )
}

fn requests(
    method: &'static str,
    route: impl Into<metrics::SharedString>,
    status: String,
) -> Counter {
    metrics::counter!(
        telemetry::HTTP_REQUESTS,
        "method" => method,
        "route" => route.into(),
        "status" => status
    )
}
