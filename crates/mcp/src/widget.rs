//! The payment approval widget, for hosts that render MCP Apps (Claude, ChatGPT, VS Code):
//! one versioned `ui://` resource, linked from `request_payment`. Self-contained (no fetches
//! of its own): it shows the merchant, the items, the exact amount, the QR code, the code and
//! the link, shows a waiting state the moment it mounts, and follows the payment through the
//! host (`get_payment_status`) to completed, rejected or expired.

use rmcp::model::JsonObject;
use sacp_domain::Checkout;
use sacp_wire::dto::MoneyDto;
use serde_json::{Value, json};

/// The widget's resource URI: a new version gets a new URI, so hosts never mix a cached old
/// page with new data.
pub const URI: &str = "ui://sacp/payment-approval-v1.html";
/// MCP Apps' HTML profile.
pub const MIME_TYPE: &str = "text/html;profile=mcp-app";
/// The page.
pub const HTML: &str = include_str!("../assets/payment-approval.html");
/// Where results carry what the widget shows beyond the structured content.
pub const RESULT_META_KEY: &str = "sacp/approval";

fn object(value: Value) -> JsonObject {
    match value {
        Value::Object(object) => object,
        _ => JsonObject::new(),
    }
}

/// `_meta` of the tool that shows the widget (MCP Apps, and ChatGPT's equivalents).
pub fn tool_meta() -> JsonObject {
    object(json!({
        "ui": {"resourceUri": URI},
        "openai/outputTemplate": URI,
        "openai/widgetAccessible": true,
        "openai/toolInvocation/invoking": "Requesting payment approval…",
        "openai/toolInvocation/invoked": "Waiting for the person to approve",
    }))
}

/// `_meta` of the widget's resource: it needs no network and no outside resources; it is
/// served for the gateway's origin.
pub fn resource_meta(public_url: &str) -> JsonObject {
    let origin = public_url.trim_end_matches('/');
    object(json!({
        "ui": {
            "csp": {"connectDomains": [], "resourceDomains": []},
            "domain": origin,
            "prefersBorder": true,
        },
        "openai/widgetCSP": {"connect_domains": [], "resource_domains": []},
        "openai/widgetDomain": origin,
        "openai/widgetPrefersBorder": true,
        "openai/widgetDescription": "Shows the payment the person approves in their wallet — merchant, items, exact amount, QR code, code and link — and follows it until the order is placed.",
    }))
}

/// What a `request_payment` result carries for the widget: the merchant, the lines, and the
/// approval link as an SVG QR code (drawn without fetching anything).
pub fn result_meta(merchant: &str, checkout: &Checkout, link: &str) -> JsonObject {
    let items: Vec<Value> = checkout
        .cart()
        .lines()
        .iter()
        .map(|line| {
            json!({
                "name": line.name,
                "quantity": line.quantity.get(),
                "line_total": MoneyDto::from(line.line_total),
            })
        })
        .collect();
    object(json!({
        RESULT_META_KEY: {
            "merchant": merchant,
            "items": items,
            "total": MoneyDto::from(checkout.cart().total()),
            "qr_svg": sacp_wire::qr::svg(link),
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_widget_fetches_nothing_and_starts_waiting() {
        for forbidden in [
            "http://",
            "https://",
            "src=",
            "@import",
            "fetch(",
            "XMLHttpRequest",
        ] {
            assert!(!HTML.contains(forbidden), "{forbidden}");
        }
        assert!(HTML.contains(r#"data-state="waiting""#));
        assert!(HTML.contains("ui/initialize"));
        assert!(URI.starts_with("ui://") && URI.contains("-v1"));
    }
}
