//! The MCP server: tools for a key's scopes, and calls run as the REST routes they mirror.

use opentelemetry::context::FutureExt as _;
use opentelemetry::trace::TraceContextExt as _;
use rmcp::ErrorData;
use rmcp::handler::server::ServerHandler;
use rmcp::model::{
    CacheScope, CallToolRequestParams, CallToolResponse, ExtensionCapabilities, Implementation,
    ListResourcesResult, ListToolsResult, MetaObject, PaginatedRequestParams,
    ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult, Resource,
    ResourceContents, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp_actix_web::transport::on_request_extensions;
use sacp_app::{Caller, Gateway};
use sacp_wire::RequestId;
use sacp_wire::dto::Links;
use tracing::Instrument;

use crate::calls::{self, CallContext};
use crate::tools::{TOOLS, ToolName, ToolSpec};

/// Whether the client can be asked to open a URL within a call: a 2026-07-28 client that
/// declared URL-mode elicitation. (Earlier clients would need a session to be asked; the
/// gateway keeps none, so they show the link from the result instead.)
fn opens_urls(context: &RequestContext<RoleServer>) -> bool {
    context.protocol_version() >= Some(rmcp::model::ProtocolVersion::V_2026_07_28)
        && context
            .client_capabilities()
            .and_then(|capabilities| capabilities.elicitation)
            .and_then(|elicitation| elicitation.url)
            .is_some()
}

/// A URL elicitation for the person: the link, what to tell them, and its id (the payment
/// request's, unique per authorization).
struct Approval {
    url: String,
    message: String,
    id: String,
}

/// The wallet link of a successful `request_payment` result, and what to tell the person.
fn approval_link(result: &rmcp::model::CallToolResult) -> Option<Approval> {
    if result.is_error == Some(true) {
        return None;
    }
    let content = result.structured_content.as_ref()?;
    let url = content["authorization_url"].as_str()?.to_owned();
    let message = format!(
        "Approve the payment of {} in your wallet (code {}).",
        content["amount"]["formatted"].as_str().unwrap_or_default(),
        content["user_code"].as_str().unwrap_or_default()
    );
    let id = content["request_id"]
        .as_str()
        .unwrap_or(url.as_str())
        .to_owned();
    Some(Approval { url, message, id })
}

/// Asks the client to open the wallet's approval page.
fn open_wallet(approval: Approval) -> rmcp::model::InputRequiredResult {
    let Approval { url, message, id } = approval;
    use rmcp::model::{ElicitRequest, ElicitRequestParams, InputRequest, InputRequests};
    let mut requests = InputRequests::new();
    requests.insert(
        "approve_in_wallet".into(),
        InputRequest::Elicitation(ElicitRequest::new(
            ElicitRequestParams::UrlElicitationParams {
                meta: None,
                message,
                url,
                elicitation_id: id,
            },
        )),
    );
    rmcp::model::InputRequiredResult::new(Some(requests), Some("request_payment".into()))
}

/// What the server tells a client about itself.
const INSTRUCTIONS: &str = "Shop for a person at the store: search_products, create_checkout with the items, update_checkout with the buyer and the shipping address, then request_payment. The person approves the exact total in their own wallet (a link, a QR code or a code): never ask them for card details. The order is placed as soon as they approve; get_payment_status says where it stands. Money is {amount (minor units), currency, formatted}: show `formatted`.";

/// The gateway's MCP server: cheap to clone (one per request, any replica).
#[derive(Clone, Debug)]
pub struct SacpMcp {
    gateway: Gateway,
    links: Links,
    public_url: std::sync::Arc<str>,
}

impl SacpMcp {
    /// A server over `gateway`, with links under `links` and the widget served for
    /// `public_url`'s origin.
    pub fn new(gateway: Gateway, links: Links, public_url: &str) -> SacpMcp {
        SacpMcp {
            gateway,
            links,
            public_url: public_url.into(),
        }
    }
}

/// Who the `/mcp` guard admitted, and the HTTP request's id (carried from actix).
fn call_context(context: &RequestContext<RoleServer>) -> Option<CallContext> {
    let carried = on_request_extensions(&context.extensions)?;
    Some(CallContext {
        caller: carried.get::<Caller>()?.clone(),
        request_id: carried
            .get::<RequestId>()
            .map(|id| id.0.clone())
            .unwrap_or_default(),
        trace: carried
            .get::<opentelemetry::Context>()
            .cloned()
            .unwrap_or_default(),
    })
}

impl ServerHandler for SacpMcp {
    fn get_info(&self) -> ServerConfig {
        // MCP Apps: the approval widget is an HTML resource.
        let mut extensions = ExtensionCapabilities::new();
        if let serde_json::Value::Object(apps) =
            serde_json::json!({"mimeTypes": [crate::widget::MIME_TYPE]})
        {
            extensions.insert("io.modelcontextprotocol/ui".into(), apps);
        }
        let capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_resources()
            .enable_extensions_with(extensions)
            .build();
        ServerConfig::new(capabilities)
            .with_server_info(
                Implementation::new("sacp-gateway", env!("CARGO_PKG_VERSION"))
                    .with_title("SACP Gateway"),
            )
            .with_instructions(INSTRUCTIONS)
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        ToolSpec::find(name).map(ToolSpec::tool)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let held = call_context(&context).map(|c| c.caller);
        let scopes = match &held {
            Some(Caller::Key(principal)) => Some(Some(&principal.scopes)),
            Some(Caller::Anonymous(_)) => Some(None),
            _ => None,
        };
        let tools = TOOLS
            .iter()
            .filter(|tool| scopes.is_some_and(|held| tool.open_to(held)))
            .map(ToolSpec::tool)
            .collect();
        let listed = ListToolsResult::with_all_items(tools);
        // The list depends on the key: no shared caches (a 2026-07-28 field; earlier
        // revisions have no caching hints).
        if context.protocol_version() >= Some(rmcp::model::ProtocolVersion::V_2026_07_28) {
            Ok(listed.with_cache_scope(CacheScope::Private))
        } else {
            Ok(listed)
        }
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let widget = Resource::new(crate::widget::URI, "payment-approval")
            .with_title("Payment approval")
            .with_description("Shows the payment the person approves in their wallet, and follows it to the order.")
            .with_mime_type(crate::widget::MIME_TYPE)
            .with_meta(MetaObject::from(crate::widget::resource_meta(&self.public_url)));
        Ok(ListResourcesResult::with_all_items(vec![widget]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        if request.uri != crate::widget::URI {
            return Err(ErrorData::resource_not_found(
                format!("no resource {:?}; resources/list lists them", request.uri),
                None,
            ));
        }
        let contents = ResourceContents::text(crate::widget::HTML, request.uri.clone())
            .with_mime_type(crate::widget::MIME_TYPE)
            .with_meta(MetaObject::from(crate::widget::resource_meta(
                &self.public_url,
            )));
        Ok(ReadResourceResult::new(vec![contents]).into())
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let Some(spec) = ToolSpec::find(&request.name) else {
            return Err(ErrorData::invalid_params(
                format!("no tool named {:?}; tools/list lists them", request.name),
                None,
            ));
        };
        let Some(call) = call_context(&context) else {
            return Err(ErrorData::internal_error("the call was not admitted", None));
        };
        // The SDK runs the call on a task of its own: the request's log span and trace
        // context are carried over from the HTTP request.
        let span = tracing::info_span!(
            "tool_call",
            request_id = %call.request_id,
            trace_id = %call.trace.span().span_context().trace_id(),
            tool = spec.wire_name
        );
        let ask_to_open = spec.name == ToolName::RequestPayment
            && request.input_responses.is_none()
            && opens_urls(&context);
        let arguments = request.arguments.unwrap_or_default();
        let result = calls::run(&self.gateway, &self.links, spec, arguments, &call)
            .instrument(span)
            .with_context(call.trace.clone())
            .await;
        match (ask_to_open, approval_link(&result)) {
            // The spec's way for payments: the client opens the wallet's page for the person
            // (with their consent), then asks again and gets the result. Asking again returns
            // the same live request.
            (true, Some(approval)) => Ok(open_wallet(approval).into()),
            _ => Ok(result.into()),
        }
    }
}
