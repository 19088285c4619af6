//! One tool call: guarded as the REST route it mirrors (scopes, kill switches, the
//! operation's rate limits, idempotency, audit, traffic), run through the same use cases, and
//! answered as a tool result whose structured content has the REST answer's shape.
//!
//! Failures a caller can act on (bad arguments, a missing scope, a checkout that cannot be
//! changed, a refused payment, an upstream that is down) are error results whose text says
//! what to do; protocol errors are for protocol faults only.

use std::collections::BTreeMap;

use base64::Engine as _;
use rmcp::model::{CallToolResult, ContentBlock, JsonObject};
use sacp_app::{Answering, AppError, Caller, CompleteOutcome, Gateway};
use sacp_domain::Checkout;
use sacp_domain::access::Scope;
use sacp_domain::idempotency::{
    Begin, IdempotencyKey, IdempotencyScope, StoredResponse, fingerprint,
};
use sacp_wire::dto::{
    AuthorizationRequiredDto, CheckoutDto, CheckoutRequestDto, Links, PaymentStatusDto, ProductDto,
    ProductListDto,
};
use sacp_wire::problem::Problem;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::tools::{
    CheckoutArgs, CreateCheckoutArgs, GetProductArgs, SearchProductsArgs, ToolName, ToolSpec,
    UpdateCheckoutArgs,
};

/// Searching with words also needs `search:read`, as `GET /products?q=` does.
const CATALOG_AND_SEARCH: &[Scope] = &[Scope::CatalogRead, Scope::SearchRead];

/// The idempotency namespace of `create_checkout` (apart from REST's `POST /checkout`, whose
/// bodies have another shape).
const CREATE_CHECKOUT_SCOPE: &str = "mcp:create_checkout";

/// A tool's arguments, read into the tool's own type.
enum Arguments {
    Search(SearchProductsArgs),
    Product(GetProductArgs),
    Create(CreateCheckoutArgs, JsonObject),
    Update(UpdateCheckoutArgs),
    Checkout(CheckoutArgs),
}

/// What a tool answered.
struct Answer {
    /// The REST route's status for the same answer (audit, traffic).
    status: u16,
    /// The structured content: the REST answer's body.
    body: Value,
    /// A sentence an LLM can relay.
    summary: String,
    /// The resource acted on (audit).
    resource: Option<String>,
    /// A link to show as a QR code too.
    qr_of: Option<String>,
    /// `_meta` of the result (what the approval widget shows).
    meta: Option<JsonObject>,
    /// A failure replayed from an idempotency record: `body` is its problem.
    failed: bool,
}

/// Who calls, on whose request.
pub struct CallContext {
    /// As the `/mcp` guard admitted it.
    pub caller: Caller,
    /// The HTTP request's id.
    pub request_id: String,
    /// The HTTP request's trace context (W3C), which the call's upstream requests carry on.
    pub trace: opentelemetry::Context,
}

/// Runs one call of `spec` with `arguments`.
///
/// The call is admitted (scopes, switches, the operation's limits) before its arguments are
/// read, as REST refuses a request before its handler reads the body: a caller without the
/// scope learns nothing of the tool's arguments, and its refusals are counted, not audited
/// one by one.
pub async fn run(
    gateway: &Gateway,
    links: &Links,
    spec: &'static ToolSpec,
    arguments: JsonObject,
    context: &CallContext,
) -> CallToolResult {
    if let Err(error) = admit(gateway, spec, &arguments, context).await {
        refused(gateway, spec, context, &error);
        count_call(spec, "refused");
        return error_result(&error);
    }
    let target = target_of(&arguments);
    let outcome = match parse(spec, arguments) {
        Err(error) => Err(error),
        Ok(arguments) => execute(gateway, links, spec.name, &arguments, context).await,
    };
    let status = match &outcome {
        Ok(answer) => answer.status,
        Err(error) => Problem::from(error).status(),
    };
    let resource = outcome
        .as_ref()
        .ok()
        .and_then(|a| a.resource.clone())
        .or(target);
    record(gateway, spec, context, status, resource).await;
    match outcome {
        Ok(answer) if !answer.failed && status < 400 => {
            count_call(spec, "ok");
            success_result(answer)
        }
        Ok(answer) => {
            count_call(spec, "error");
            success_result(answer)
        }
        Err(error) => {
            count_call(spec, "error");
            error_result(&error)
        }
    }
}

/// Counts a call in `sacp_mcp_tool_calls_total`.
fn count_call(spec: &ToolSpec, outcome: &'static str) {
    metrics::counter!(
        sacp_ports::telemetry::MCP_TOOL_CALLS,
        "tool" => spec.wire_name,
        "outcome" => outcome
    )
    .increment(1);
}

/// The id a call names (its checkout, else its product), for the audit log — also when
/// the call fails (as REST audits the path's id).
fn target_of(arguments: &JsonObject) -> Option<String> {
    ["checkout_id", "product_id"]
        .iter()
        .find_map(|name| arguments.get(*name).and_then(Value::as_str))
        .map(|id| id.chars().take(128).collect())
}

fn read<T: DeserializeOwned>(arguments: JsonObject) -> Result<T, AppError> {
    serde_json::from_value(Value::Object(arguments)).map_err(|e| {
        AppError::BadRequest(format!("the arguments are not valid for this tool: {e}"))
    })
}

fn parse(spec: &ToolSpec, arguments: JsonObject) -> Result<Arguments, AppError> {
    Ok(match spec.name {
        ToolName::SearchProducts => Arguments::Search(read(arguments)?),
        ToolName::GetProduct => Arguments::Product(read(arguments)?),
        ToolName::CreateCheckout => Arguments::Create(read(arguments.clone())?, arguments),
        ToolName::UpdateCheckout => Arguments::Update(read(arguments)?),
        ToolName::GetCheckout
        | ToolName::CancelCheckout
        | ToolName::RequestPayment
        | ToolName::GetPaymentStatus => Arguments::Checkout(read(arguments)?),
    })
}

/// The scopes this call needs: searching with words also needs `search:read` (read from
/// the raw arguments: the call is admitted before they are parsed).
fn needed_scopes(spec: &ToolSpec, arguments: &JsonObject) -> &'static [Scope] {
    let searching = spec.name == ToolName::SearchProducts
        && arguments
            .get("query")
            .and_then(Value::as_str)
            .is_some_and(|q| !q.trim().is_empty());
    if searching {
        CATALOG_AND_SEARCH
    } else {
        spec.scopes
    }
}

/// The guard of one call, as the REST route's: scopes, switches, the operation's limits.
/// (What every request counts against was counted for the HTTP request carrying the call.)
async fn admit(
    gateway: &Gateway,
    spec: &ToolSpec,
    arguments: &JsonObject,
    context: &CallContext,
) -> Result<(), AppError> {
    let needed = needed_scopes(spec, arguments);
    match &context.caller {
        Caller::Key(principal) => principal.require(needed)?,
        Caller::Anonymous(_) if needed.iter().all(|s| *s == Scope::CatalogRead) => {}
        _ => return Err(AppError::ApiKeyRequired),
    }
    let guard = gateway.guard();
    guard.ensure_allowed(spec.operation).await?;
    let limits = guard.operation_limits(&context.caller, spec.operation);
    let decision = guard.admit(&limits).await?;
    match guard.refusal(&decision) {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

/// The organisation the call acts for (checkout tools need a key: see [`admit`]).
fn owner(context: &CallContext) -> Result<&str, AppError> {
    context
        .caller
        .principal()
        .map(|p| p.org.as_str())
        .ok_or(AppError::ApiKeyRequired)
}

async fn execute(
    gateway: &Gateway,
    links: &Links,
    tool: ToolName,
    arguments: &Arguments,
    context: &CallContext,
) -> Result<Answer, AppError> {
    match arguments {
        Arguments::Search(search) => {
            let query = sacp_wire::catalog::catalog_query(
                search.query.clone(),
                search.category.clone(),
                search.limit,
                search.cursor.as_deref(),
            )?;
            let page = ProductListDto::from(gateway.list_products(&query).await?);
            Ok(answer(200, &page, products_summary(&page), None))
        }
        Arguments::Product(product) => {
            let product = ProductDto::from(gateway.get_product(&product.product_id).await?);
            let summary = format!(
                "{} ({}): {}{}.",
                product.name,
                product.id,
                product.price.formatted,
                if product.available {
                    ""
                } else {
                    ", not available now"
                }
            );
            Ok(answer(200, &product, summary, Some(product.id.clone())))
        }
        Arguments::Create(create, raw) => {
            create_checkout(gateway, links, create, raw, context).await
        }
        Arguments::Update(update) => {
            let changes = CheckoutRequestDto {
                items: update.items.clone(),
                buyer: update.buyer.clone(),
                fulfillment: update.fulfillment.clone(),
            };
            let checkout = gateway
                .update_checkout_details(owner(context)?, &update.checkout_id, &changes.into())
                .await?;
            Ok(checkout_answer(200, &checkout, links))
        }
        Arguments::Checkout(CheckoutArgs { checkout_id }) => {
            let owner = owner(context)?;
            match tool {
                ToolName::CancelCheckout => {
                    let checkout = gateway.cancel_checkout(owner, checkout_id).await?;
                    Ok(checkout_answer(200, &checkout, links))
                }
                ToolName::RequestPayment => {
                    request_payment(gateway, links, owner, checkout_id).await
                }
                ToolName::GetPaymentStatus => {
                    let view = gateway
                        .latest_payment_status(owner, checkout_id)
                        .await?
                        .ok_or(AppError::NotFound(
                            "payment request for this checkout: call request_payment first",
                        ))?;
                    let status = PaymentStatusDto::new(&view);
                    let summary = status.message.clone();
                    Ok(answer(200, &status, summary, Some(checkout_id.clone())))
                }
                _ => {
                    let checkout = gateway.get_checkout(owner, checkout_id).await?;
                    Ok(checkout_answer(200, &checkout, links))
                }
            }
        }
    }
}

async fn create_checkout(
    gateway: &Gateway,
    links: &Links,
    create: &CreateCheckoutArgs,
    raw: &JsonObject,
    context: &CallContext,
) -> Result<Answer, AppError> {
    let owner = owner(context)?;
    let changes = CheckoutRequestDto {
        items: Some(create.items.clone()),
        buyer: create.buyer.clone(),
        fulfillment: create.fulfillment.clone(),
    }
    .into();
    let render = |checkout: &Checkout| StoredResponse {
        status: 201,
        content_type: Some("application/json".into()),
        location: Some(links.checkout(checkout.id().as_str())),
        body: serde_json::to_vec(&CheckoutDto::new(checkout, links)).unwrap_or_default(),
    };
    let (Some(key), Some(principal)) = (&create.idempotency_key, context.caller.principal()) else {
        let checkout = gateway.create_checkout(owner, &changes, None).await?;
        return Ok(checkout_answer(201, &checkout, links));
    };
    let scope = IdempotencyScope {
        caller: principal.key_id.as_str().to_owned(),
        method: "POST".into(),
        path: CREATE_CHECKOUT_SCOPE.into(),
        key: IdempotencyKey::parse(key).map_err(AppError::from)?,
    };
    let guard = gateway.guard();
    let claim = match guard
        .begin_idempotent(&scope, &fingerprint(&canonical(raw)))
        .await?
    {
        Begin::Started(claim) => claim,
        Begin::Replay(stored) => return replayed(stored),
        Begin::Mismatch => return Err(AppError::IdempotencyKeyReused),
        Begin::InFlight { retry_after_secs } => {
            return Err(AppError::IdempotencyKeyInFlight {
                retry_after: retry_after_secs,
            });
        }
    };
    let answering = Answering {
        claim: claim.clone(),
        render: &render,
    };
    match gateway
        .create_checkout(owner, &changes, Some(answering))
        .await
    {
        Ok(checkout) => Ok(checkout_answer(201, &checkout, links)),
        Err(error) => {
            let problem = Problem::from(&error);
            // As over REST: a failure that may pass is not kept (a retry runs again); one
            // that will not is, so that a retry gets the same answer.
            let kept = if problem.status() >= 500 {
                guard.abandon_idempotent(&claim).await
            } else {
                let stored = StoredResponse {
                    status: problem.status(),
                    content_type: Some("application/problem+json".into()),
                    location: None,
                    body: problem.body(None, None).to_string().into_bytes(),
                };
                guard.finish_idempotent(&claim, &stored).await
            };
            if let Err(e) = kept {
                tracing::warn!(error = %e, "idempotency record of a failed create_checkout not kept");
            }
            Err(error)
        }
    }
}

/// The first call's answer, for a retry with the same idempotency key.
fn replayed(stored: StoredResponse) -> Result<Answer, AppError> {
    let body: Value = serde_json::from_slice(&stored.body)
        .map_err(|_| AppError::BadRequest("the stored answer cannot be read".into()))?;
    if stored.status >= 400 {
        // The first call's failure, as it was answered (its code, status and detail).
        return Ok(Answer {
            status: stored.status,
            summary: format!(
                "{} ({}): {} (the first call with this idempotency_key; use a new key to try again)",
                body["title"].as_str().unwrap_or("Error"),
                body["code"].as_str().unwrap_or("error"),
                body["detail"].as_str().unwrap_or_default()
            ),
            resource: None,
            body,
            qr_of: None,
            meta: None,
            failed: true,
        });
    }
    let checkout: CheckoutSummary = serde_json::from_value(body.clone()).unwrap_or_default();
    Ok(Answer {
        status: stored.status,
        summary: format!("(The checkout this key opened.) {}", checkout.describe()),
        resource: Some(checkout.id.clone()),
        body,
        qr_of: None,
        meta: None,
        failed: false,
    })
}

async fn request_payment(
    gateway: &Gateway,
    links: &Links,
    owner: &str,
    checkout_id: &str,
) -> Result<Answer, AppError> {
    // No user token: the guest path, a device authorization for the stored checkout's exact
    // total. (A live request is returned again, not duplicated.)
    let outcome = match gateway.complete_checkout(owner, checkout_id, None).await {
        Ok(outcome) => outcome,
        // Approved and being placed: asking again is no error (the tool is idempotent); it
        // is the same request, and where it stands.
        Err(error) if Problem::from(&error).code() == "payment_in_progress" => {
            return live_request(gateway, links, owner, checkout_id)
                .await?
                .ok_or(error);
        }
        Err(error) => return Err(error),
    };
    match outcome {
        CompleteOutcome::AuthorizationRequired {
            checkout,
            authorization,
        } => {
            let dto =
                AuthorizationRequiredDto::new(&checkout, &authorization, links, gateway.now());
            let summary = format!(
                "{} The code expires in {} minutes. The order is placed as soon as the person approves; get_payment_status tells where it stands.",
                dto.message,
                dto.expires_in.div_ceil(60)
            );
            // The widget names the merchant; without it (store briefly down) it still shows
            // the amount, items and code.
            let merchant = gateway.merchant().await.map(|m| m.name).unwrap_or_default();
            let meta = crate::widget::result_meta(&merchant, &checkout, &dto.authorization_url);
            let qr_of = Some(dto.authorization_url.clone());
            Ok(Answer {
                status: 202,
                summary,
                resource: Some(dto.request_id.clone()),
                body: serde_json::to_value(&dto).unwrap_or(Value::Null),
                qr_of,
                meta: Some(meta),
                failed: false,
            })
        }
        // Only a user token leads there, and MCP calls carry none.
        CompleteOutcome::Completed(_) | CompleteOutcome::StepUpRequired { .. } => Err(
            AppError::BadRequest("this checkout is paid with a wallet token, not here".into()),
        ),
    }
}

/// The checkout's request being approved or placed, as `request_payment` answered it, with
/// where it stands now.
async fn live_request(
    gateway: &Gateway,
    links: &Links,
    owner: &str,
    checkout_id: &str,
) -> Result<Option<Answer>, AppError> {
    let Some(view) = gateway.latest_payment_status(owner, checkout_id).await? else {
        return Ok(None);
    };
    if view.authorization.status().is_terminal() {
        return Ok(None);
    }
    let dto =
        AuthorizationRequiredDto::new(&view.checkout, &view.authorization, links, gateway.now());
    let summary = PaymentStatusDto::new(&view).message;
    Ok(Some(Answer {
        status: 202,
        summary,
        resource: Some(dto.request_id.clone()),
        body: serde_json::to_value(&dto).unwrap_or(Value::Null),
        qr_of: None,
        meta: None,
        failed: false,
    }))
}

fn answer<T: serde::Serialize>(
    status: u16,
    value: &T,
    summary: String,
    resource: Option<String>,
) -> Answer {
    Answer {
        status,
        body: serde_json::to_value(value).unwrap_or(Value::Null),
        summary,
        resource,
        qr_of: None,
        meta: None,
        failed: false,
    }
}

fn checkout_answer(status: u16, checkout: &Checkout, links: &Links) -> Answer {
    let dto = CheckoutDto::new(checkout, links);
    let body = serde_json::to_value(&dto).unwrap_or(Value::Null);
    let summary: CheckoutSummary = serde_json::from_value(body.clone()).unwrap_or_default();
    Answer {
        status,
        summary: summary.describe(),
        resource: Some(dto.id),
        body,
        qr_of: None,
        meta: None,
        failed: false,
    }
}

/// What the summary of a checkout says, read from its answer (stored answers included).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct CheckoutSummary {
    id: String,
    status: String,
    total: MoneySummary,
    missing: Vec<String>,
    next_step: NextStepSummary,
    order_id: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct MoneySummary {
    formatted: String,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct NextStepSummary {
    action: String,
}

impl CheckoutSummary {
    /// One sentence: where the checkout stands and which tool comes next.
    fn describe(&self) -> String {
        let next = match self.next_step.action.as_str() {
            "update_checkout" => format!(
                "Next: update_checkout with {}.",
                self.missing.join(" and ")
            ),
            "complete" => "Next: request_payment, for the person to approve the total in their wallet.".to_owned(),
            "await_authorization" => "The person is approving the payment in their wallet; follow it with get_payment_status.".to_owned(),
            "done" => format!(
                "The order {} is placed.",
                self.order_id.as_deref().unwrap_or_default()
            ),
            _ => "Next: create_checkout, to buy again.".to_owned(),
        };
        format!(
            "Checkout {} is {}, total {}. {next}",
            self.id, self.status, self.total.formatted
        )
    }
}

fn products_summary(page: &ProductListDto) -> String {
    if page.products.is_empty() {
        return "No products match.".to_owned();
    }
    let lines: Vec<String> = page
        .products
        .iter()
        .map(|p| {
            format!(
                "{} — {} (product_id {}){}",
                p.name,
                p.price.formatted,
                p.id,
                if p.available { "" } else { ", not available" }
            )
        })
        .collect();
    let more = match &page.next_cursor {
        Some(cursor) => format!("\nMore: call again with cursor {cursor}."),
        None => String::new(),
    };
    format!("{}{more}", lines.join("\n"))
}

/// The JSON of the arguments with keys sorted at every level, so that a retry sending the
/// same arguments in another order is the same call. The idempotency key itself (the
/// record's name, not the request) and arguments given as `null` (the same as absent) are
/// left out.
fn canonical(arguments: &JsonObject) -> Vec<u8> {
    fn sorted(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let ordered: BTreeMap<&String, Value> =
                    map.iter().map(|(k, v)| (k, sorted(v))).collect();
                serde_json::to_value(ordered).unwrap_or(Value::Null)
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    let request: JsonObject = arguments
        .iter()
        .filter(|(name, value)| name.as_str() != "idempotency_key" && !value.is_null())
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    sorted(&Value::Object(request)).to_string().into_bytes()
}

fn success_result(answer: Answer) -> CallToolResult {
    if answer.failed {
        return CallToolResult::error(vec![
            ContentBlock::text(answer.summary),
            ContentBlock::text(answer.body.to_string()),
        ]);
    }
    let mut content = vec![ContentBlock::text(answer.summary)];
    if let Some(png) = answer.qr_of.as_deref().and_then(sacp_wire::qr::png) {
        content.push(ContentBlock::image(
            base64::engine::general_purpose::STANDARD.encode(png),
            "image/png",
        ));
    }
    // Clients that read only text get the same data as the structured content.
    content.push(ContentBlock::text(answer.body.to_string()));
    let mut result = CallToolResult::success(content);
    result.structured_content = Some(answer.body);
    result.meta = answer.meta.map(rmcp::model::MetaObject::from);
    result
}

/// A failure the caller can act on: the problem's title and detail, what to do, and the
/// problem itself (code, status) as JSON.
fn error_result(error: &AppError) -> CallToolResult {
    let problem = Problem::from(error);
    let body = problem.body(None, None);
    let mut text = format!(
        "{} ({}): {}",
        body["title"].as_str().unwrap_or("Error"),
        problem.code(),
        problem.detail()
    );
    if let Some(seconds) = problem.retry_after_secs() {
        text.push_str(&format!(" Retry after {seconds} s."));
    }
    if let Some(meaning) = sacp_wire::problem::PROBLEMS
        .iter()
        .find(|(code, ..)| *code == problem.code())
        .map(|(.., meaning)| *meaning)
    {
        text.push(' ');
        text.push_str(meaning);
    }
    CallToolResult::error(vec![
        ContentBlock::text(text),
        ContentBlock::text(body.to_string()),
    ])
}

/// Counts a call refused before it ran, as REST counts refused requests (aggregated audit).
fn refused(gateway: &Gateway, spec: &ToolSpec, context: &CallContext, error: &AppError) {
    gateway.guard().record_refusal(
        Some(&context.caller),
        None,
        spec.action,
        Problem::from(error).status(),
        context.request_id.clone(),
    );
}

/// Counts an answered call (traffic) and audits it as REST audits the route it mirrors.
async fn record(
    gateway: &Gateway,
    spec: &ToolSpec,
    context: &CallContext,
    status: u16,
    resource: Option<String>,
) {
    gateway
        .guard()
        .record_answer(sacp_app::Answered {
            caller: &context.caller,
            action: spec.action,
            status,
            request_id: &context.request_id,
            resource: resource.as_deref(),
            subject: None,
            changes_state: spec.operation != sacp_domain::switches::Operation::Read,
            audit_reads: false,
        })
        .await;
}

#[cfg(test)]
mod tests {
    use sacp_domain::idempotency::IdempotencyKeyError;

    use super::*;

    #[test]
    fn the_same_arguments_in_another_order_are_the_same_call() {
        let a: JsonObject =
            serde_json::from_str(r#"{"b":1,"a":{"y":2,"x":[{"q":1,"p":2}]}}"#).unwrap();
        let b: JsonObject =
            serde_json::from_str(r#"{"a":{"x":[{"p":2,"q":1}],"y":2},"b":1}"#).unwrap();
        assert_eq!(canonical(&a), canonical(&b));
        let c: JsonObject =
            serde_json::from_str(r#"{"a":{"x":[{"p":3,"q":1}],"y":2},"b":1}"#).unwrap();
        assert_ne!(canonical(&a), canonical(&c));
        let spelled: JsonObject = serde_json::from_str(
            r#"{"b":1,"buyer":null,"idempotency_key":" k","a":{"x":[{"p":2,"q":1}],"y":2}}"#,
        )
        .unwrap();
        assert_eq!(
            canonical(&a),
            canonical(&spelled),
            "a null argument is an absent one; the key is not part of the request"
        );
    }

    #[test]
    fn an_unusable_idempotency_key_is_the_callers_error() {
        let error = AppError::from(IdempotencyKeyError::Empty);
        assert_eq!(Problem::from(&error).status(), 400);
    }
}
