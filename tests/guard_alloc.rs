//! The guard admits a request that passes without allocating for it: a keyed read whose key
//! is cached costs only what actix makes every stored value or header cost.
//!
//! A binary of its own, because it counts allocations with a global allocator (one per
//! binary). The allocator counts per thread, and an actix test service runs on the test's
//! thread, so only the requests' own allocations are counted.
//!
//! The guard runs as it does in the gateway (the real [`sacp_api::guard::guarded`] with the
//! real endpoint's policy, memory storage as in embedded mode) in front of a handler that
//! answers a fixed `200`, and is compared with the same handler behind a middleware that
//! only passes the request on: what differs is the guard's. For a cached key that is
//! [`KEYED_READ_ALLOCATIONS`]; for a public route (`GET /healthz`'s policy),
//! [`PUBLIC_ALLOCATIONS`]. A `format!`, a copied string or a `Vec` on the guard's path
//! (key check, in-flight shares, limits, headers, traffic count, audit decision) raises the
//! count and fails this test.

// The whole crate is test code: a failed unwrap is a failed test. Its one unsafe part is the
// counting allocator.
#![allow(unsafe_code, clippy::unwrap_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use actix_web::body::BoxBody;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse};
use actix_web::middleware::{Next, from_fn};
use actix_web::{App, HttpResponse, test, web};
use chrono::{DateTime, TimeZone, Utc};
use sacp_adapters::memory::{MemoryApiKeys, MemoryAuditLog, MemoryAuthorizations, MemoryCheckouts};
use sacp_adapters::memory_guard::{
    MemoryIdempotency, MemoryRateCounters, MemorySwitchBoard, MemoryTrafficLog,
};
use sacp_api::endpoints::{self, Endpoint};
use sacp_api::guard::{RATELIMIT, RATELIMIT_POLICY, guarded};
use sacp_app::{Gateway, GatewayConfig, GuardPorts, StepUpPorts};
use sacp_domain::access::{KeyLimits, NewKey, Scope};
use sacp_sim::Simulators;
use sacp_sim::fake::{FakeStore, FakeWallet};

/// What the guard may allocate for a keyed read that passes with its key cached, beyond
/// the bare route: the two values it stores in the request (its route's label for the
/// metrics, the caller for the handler: actix boxes each) and the `RateLimit` header value
/// (a `HeaderValue` owns its bytes; the usage's text is written on the stack). The
/// `RateLimit-Policy` value is shared, made once per worker for the key's plan. Before the
/// guard's path was made allocation-free it added 62; 4 before the policy value was shared.
const KEYED_READ_ALLOCATIONS: u64 = 3;

/// The same for a public route: the route's label and the caller (it was 3).
const PUBLIC_ALLOCATIONS: u64 = 2;

/// Requests measured after the warm-up.
const MEASURED: usize = 50;

/// Counts the allocations of each thread.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn note_allocation() {
    // A thread being torn down no longer counts.
    let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
}

// SAFETY: every call is passed on to the system allocator unchanged; counting touches only
// a thread-local `Cell` with a constant initialiser, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// A clock that stands still: the key stays cached and every request falls in the same
/// rate-limit windows and traffic minute.
#[derive(Debug)]
struct Still(DateTime<Utc>);

impl sacp_ports::Clock for Still {
    fn now(&self) -> DateTime<Utc> {
        self.0
    }
}

/// An embedded-mode gateway (memory storage) at a fixed time.
fn gateway() -> Gateway {
    let now = Utc.timestamp_opt(1_800_000_030, 0).unwrap();
    let clock: Arc<dyn sacp_ports::Clock> = Arc::new(Still(now));
    let sims = Simulators::sandbox(
        "http://127.0.0.1:9/ssim",
        "http://127.0.0.1:9/wsim",
        clock.clone(),
    );
    let idempotency = Arc::new(MemoryIdempotency::default());
    Gateway::new(
        Arc::new(FakeStore::new(sims.store.clone(), Duration::from_secs(5))),
        Arc::new(FakeWallet::new(sims.wallet.clone(), Duration::from_secs(5))),
        Arc::new(MemoryCheckouts::sharing(idempotency.clone())),
        Arc::new(MemoryAuthorizations::default()),
        Arc::new(MemoryApiKeys::sharing(idempotency.clone())),
        GuardPorts {
            counters: Arc::new(MemoryRateCounters::default()),
            switches: Arc::new(MemorySwitchBoard::default()),
            idempotency,
            traffic: Arc::new(MemoryTrafficLog::default()),
            audit: Arc::new(MemoryAuditLog::default()),
        },
        clock,
        Arc::new(sacp_adapters::random::OsRandom),
        StepUpPorts {
            watches: Arc::new(sacp_adapters::memory_step_up::MemoryStepUpWatches::default()),
            sealer: Arc::new(sacp_adapters::sealing::AesGcmSealer::ephemeral().unwrap()),
        },
        GatewayConfig::default(),
    )
}

/// The handler behind every route: a fixed answer.
async fn answer() -> HttpResponse {
    HttpResponse::Ok().body("ok")
}

/// The baseline middleware: passes the request on, as the guard does once it admitted it.
async fn pass(
    request: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    next.call(request).await
}

fn endpoint(pattern: &str) -> &'static Endpoint {
    endpoints::find("GET", pattern).unwrap()
}

/// A `GET path` with `headers`, from a client address.
fn get(path: &str, headers: &[(&str, &str)]) -> test::TestRequest {
    headers
        .iter()
        .fold(test::TestRequest::get().uri(path), |request, header| {
            request.insert_header(*header)
        })
        .peer_addr("203.0.113.9:4000".parse().unwrap())
}

/// The most any of [`MEASURED`] requests made by `request` allocated, after a warm-up (the
/// first requests fill the key cache, the counters, the traffic count).
async fn most_allocated<S, R>(service: &S, request: impl Fn() -> R) -> u64
where
    S: Service<R, Response = ServiceResponse<BoxBody>, Error = actix_web::Error>,
{
    for _ in 0..3 {
        let response = test::call_service(service, request()).await;
        assert_eq!(response.status(), 200);
    }
    let mut most = 0;
    for _ in 0..MEASURED {
        let request = request();
        let before = allocations();
        let response = test::call_service(service, request).await;
        let allocated = allocations() - before;
        assert_eq!(response.status(), 200);
        drop(response);
        most = most.max(allocated);
    }
    most
}

#[actix_web::test]
async fn a_guarded_read_with_a_cached_key_allocates_only_what_actix_makes_it() {
    let gateway = gateway();
    let (_, secret) = gateway
        .keys()
        .create(
            NewKey {
                name: "allocation test".into(),
                org: "acme".into(),
                scopes: BTreeSet::from([Scope::CatalogRead]),
                limits: KeyLimits::READ_TIER,
                expires_at: None,
            },
            None,
        )
        .await
        .unwrap();
    let state = web::Data::new(sacp_api::ApiState::new(
        gateway,
        "http://127.0.0.1:8080",
        None,
    ));
    let (product, health) = (endpoint("/products/{id}"), endpoint("/healthz"));
    // Each route alone in its app, so that the router costs the guarded and the bare one
    // the same (actix tries the routes in order; each pattern tried may allocate).
    macro_rules! one_route {
        ($pattern:literal, $middleware:expr) => {
            test::init_service(
                App::new()
                    .app_data(state.clone())
                    .route($pattern, web::get().to(answer).wrap(from_fn($middleware))),
            )
            .await
        };
    }
    let keyed_service = one_route!("/products/{id}", move |r, n| guarded(product, r, n));
    let bare_keyed_service = one_route!("/products/{id}", pass);
    let public_service = one_route!("/healthz", move |r, n| guarded(health, r, n));
    let bare_public_service = one_route!("/healthz", pass);
    let key = [("x-api-key", secret.expose())];

    // The guard really ran: limits counted, headers set.
    let response = test::call_service(&keyed_service, get("/products/p1", &key).to_request()).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key(RATELIMIT));
    assert!(response.headers().contains_key(RATELIMIT_POLICY));
    drop(response);

    let read = || get("/products/p1", &key).to_request();
    let keyed = most_allocated(&keyed_service, read).await;
    let bare_keyed = most_allocated(&bare_keyed_service, read).await;
    let probe = || get("/healthz", &[]).to_request();
    let public = most_allocated(&public_service, probe).await;
    let bare_public = most_allocated(&bare_public_service, probe).await;
    eprintln!(
        "allocations per request: keyed read {keyed} (bare {bare_keyed}), public {public} \
         (bare {bare_public})"
    );
    assert!(
        keyed <= bare_keyed + KEYED_READ_ALLOCATIONS,
        "a cached keyed read allocates {keyed}, the same route unguarded {bare_keyed}: the \
         guard adds {}, at most {KEYED_READ_ALLOCATIONS} expected",
        keyed.saturating_sub(bare_keyed)
    );
    assert!(
        public <= bare_public + PUBLIC_ALLOCATIONS,
        "a public route allocates {public}, the same route unguarded {bare_public}: the guard \
         adds {}, at most {PUBLIC_ALLOCATIONS} expected",
        public.saturating_sub(bare_public)
    );
}
