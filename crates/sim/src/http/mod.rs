//! HTTP faces of the simulators.
//!
//! [`configure`] mounts both simulators under one prefix: the standalone `sacp-sim` uses
//! `""` (so `/ssim` and `/wsim`), the sandbox gateway uses `/sim`.

mod pages;
pub mod ssim;
pub mod wsim;

use std::str::FromStr;
use std::sync::Arc;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap};
use actix_web::middleware::{Next, from_fn};
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine as _;
use rand::RngExt;
use sacp_domain::Money;
use serde_json::{Map, Value};

use crate::faults::{Faults, Injected};
use crate::store_core::StoreCore;
use crate::wallet_core::WalletCore;
use crate::{SimError, Simulators};

/// Who may call the simulators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposure {
    /// Anyone who reaches the listener: the standalone `sacp-sim`, a test fixture.
    Open,
    /// The wallet's pages for the person (`/wsim/m/...`) to anyone; every API — tokens,
    /// payments, the store, the fault knobs, test users — only to loopback callers. For the
    /// sandbox gateway, whose listener may be reachable from elsewhere.
    LoopbackApis,
}

/// Mounts the store at `{prefix}/ssim` and the wallet at `{prefix}/wsim`.
pub fn configure(
    simulators: &Simulators,
    prefix: &str,
    exposure: Exposure,
) -> impl FnOnce(&mut web::ServiceConfig) + use<> {
    let store = simulators.store.clone();
    let wallet = simulators.wallet.clone();
    let prefix = prefix.trim_end_matches('/').to_owned();
    move |cfg: &mut web::ServiceConfig| {
        let store = ssim::scope(&format!("{prefix}/ssim"), store);
        let wallet = wsim::scope(&format!("{prefix}/wsim"), wallet);
        match exposure {
            Exposure::Open => cfg.service(store).service(wallet),
            Exposure::LoopbackApis => cfg
                .service(store.wrap(from_fn(loopback_only)))
                .service(wallet.wrap(from_fn(loopback_only_but_pages))),
        };
    }
}

fn is_loopback(request: &ServiceRequest) -> bool {
    request.peer_addr().is_some_and(|a| a.ip().is_loopback())
}

fn refuse_remote(request: ServiceRequest) -> ServiceResponse<BoxBody> {
    let response = HttpResponse::Forbidden().json(serde_json::json!({
        "error": "forbidden",
        "message": "the sandbox simulators answer their APIs on loopback only",
    }));
    request.into_response(response)
}

/// Refuses callers from other hosts.
async fn loopback_only(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    if !is_loopback(&request) {
        return Ok(refuse_remote(request));
    }
    Ok(next.call(request).await?.map_into_boxed_body())
}

/// Refuses callers from other hosts, except on the pages where the person approves (their
/// phone is another host).
async fn loopback_only_but_pages(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let page = request.match_info().unprocessed().starts_with("/m/");
    if !page && !is_loopback(&request) {
        return Ok(refuse_remote(request));
    }
    Ok(next.call(request).await?.map_into_boxed_body())
}

/// Where a simulator's fault knobs are read from, for the fault middleware.
#[derive(Debug, Clone)]
pub(crate) enum FaultSource {
    Store(Arc<StoreCore>),
    Wallet(Arc<WalletCore>),
}

impl FaultSource {
    fn faults(&self) -> Faults {
        match self {
            FaultSource::Store(core) => core.faults(),
            FaultSource::Wallet(core) => core.faults(),
        }
    }
}

/// Applies the fault knobs to every API call: latency, then maybe a 503 or a garbage body.
pub(crate) async fn inject_faults(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let faults = request
        .app_data::<web::Data<FaultSource>>()
        .map(|source| source.faults())
        .unwrap_or_default();
    if faults.latency_ms > 0 {
        tokio::time::sleep(faults.latency()).await;
    }
    let roll: f64 = rand::rng().random();
    match faults.decide(roll) {
        Injected::ServerError => {
            let response = HttpResponse::ServiceUnavailable().json(
                serde_json::json!({"error": "service_unavailable", "message": "Injected fault"}),
            );
            Ok(request.into_response(response))
        }
        Injected::Malformed => {
            let response = HttpResponse::Ok()
                .content_type("application/json")
                .body("{\"products\": [{\"id\": tru");
            Ok(request.into_response(response))
        }
        Injected::None => Ok(next.call(request).await?.map_into_boxed_body()),
    }
}

/// Renders a simulator error.
pub(crate) fn error_response(error: &SimError) -> HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(error.status)
        .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
    HttpResponse::build(status).json(error.body())
}

/// Answers `Ok` values with 200 JSON and errors with their status.
pub(crate) fn respond(result: Result<Value, SimError>) -> HttpResponse {
    match result {
        Ok(body) => HttpResponse::Ok().json(body),
        Err(error) => error_response(&error),
    }
}

/// Decimal dollars as a JSON number (`18.99`), as the store sends them.
pub(crate) fn dollars(money: Money) -> Value {
    serde_json::Number::from_str(&money.to_decimal_string())
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

/// The bearer token of a request, if any.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
        .filter(|t| !t.is_empty())
}

/// HTTP Basic credentials of a request, if any.
pub(crate) fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

/// Reads a JSON or form-encoded body into a JSON object (form values become strings).
pub(crate) fn body_fields(
    request: &HttpRequest,
    body: &[u8],
) -> Result<Map<String, Value>, SimError> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if body.is_empty() {
        return Ok(Map::new());
    }
    if content_type.starts_with("application/x-www-form-urlencoded") {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
            .map_err(|_| SimError::oauth(400, "invalid_request", "malformed form body"))?;
        return Ok(pairs
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(SimError::store(400, "invalid_request", "Invalid JSON body")),
    }
}

/// A field as text, whether sent as a JSON string or number.
pub(crate) fn text_field(fields: &Map<String, Value>, name: &str) -> Option<String> {
    match fields.get(name)? {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Arc;

    use actix_web::http::StatusCode;
    use actix_web::{App, test};
    use sacp_ports::clock::SystemClock;

    use super::*;

    async fn status(exposure: Exposure, peer: &str, method: &str, path: &str) -> StatusCode {
        let simulators = Simulators::sandbox(
            "http://gw/sim/ssim",
            "http://gw/sim/wsim",
            Arc::new(SystemClock),
        );
        let app =
            test::init_service(App::new().configure(configure(&simulators, "/sim", exposure)))
                .await;
        let peer: SocketAddr = peer.parse().unwrap();
        let request = test::TestRequest::default()
            .method(method.parse().unwrap())
            .uri(path)
            .peer_addr(peer)
            .to_request();
        test::call_service(&app, request).await.status()
    }

    #[actix_web::test]
    async fn in_the_sandbox_only_the_persons_pages_answer_other_hosts() {
        let remote = "203.0.113.9:5000";
        let local = "127.0.0.1:5000";
        for (method, path) in [
            ("PUT", "/sim/wsim/sim/faults"),
            ("POST", "/sim/wsim/sim/users/token"),
            ("GET", "/sim/wsim/sim/stats"),
            ("POST", "/sim/wsim/api/agent/v1/oauth/token"),
            ("PUT", "/sim/ssim/sim/faults"),
            ("GET", "/sim/ssim/api/agent/v1/products"),
        ] {
            assert_eq!(
                status(Exposure::LoopbackApis, remote, method, path).await,
                StatusCode::FORBIDDEN,
                "{method} {path} from another host"
            );
            assert_ne!(
                status(Exposure::LoopbackApis, local, method, path).await,
                StatusCode::FORBIDDEN,
                "{method} {path} from loopback"
            );
            assert_ne!(
                status(Exposure::Open, remote, method, path).await,
                StatusCode::FORBIDDEN,
                "{method} {path} on an open simulator"
            );
        }
        // The person approves from their phone: the pages answer everyone.
        assert_ne!(
            status(Exposure::LoopbackApis, remote, "GET", "/sim/wsim/m/device").await,
            StatusCode::FORBIDDEN
        );
    }
}
