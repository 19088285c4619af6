//! The tools: their names, arguments and results (the interface agents are built against),
//! what each needs and what REST route it mirrors — its scopes, kill-switch operation, rate
//! limits and audit action are that route's.

use std::sync::Arc;

use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use sacp_domain::access::Scope;
use sacp_domain::switches::Operation;
use sacp_wire::dto::{
    AuthorizationRequiredDto, BuyerDto, CheckoutDto, FulfillmentDto, ItemRequestDto,
    PaymentStatusDto, ProductDto, ProductListDto,
};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::schema;

/// Arguments of `search_products`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchProductsArgs {
    /// Search words (needs the `search:read` scope), at most 200 characters; leave out to
    /// browse.
    #[schema(max_length = 200)]
    pub query: Option<String>,
    /// Only this category (`coffee`, `tea`, `equipment`), at most 64 characters.
    #[schema(max_length = 64)]
    pub category: Option<String>,
    /// Page size, 1 to 100 (default 20).
    #[schema(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page, unchanged.
    #[schema(max_length = 64)]
    pub cursor: Option<String>,
}

/// Arguments of `get_product`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GetProductArgs {
    /// A product id from `search_products`.
    pub product_id: String,
}

/// Arguments of `create_checkout`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCheckoutArgs {
    /// The lines: product ids from `search_products` and quantities (1 to 99).
    pub items: Vec<ItemRequestDto>,
    /// The buyer (name and email), if known already.
    pub buyer: Option<BuyerDto>,
    /// Shipping (with an address) or pickup, if known already.
    pub fulfillment: Option<FulfillmentDto>,
    /// A unique value (a UUID) to send again when retrying this call: a retry then returns
    /// the checkout the first call opened instead of opening another.
    #[schema(max_length = 255)]
    pub idempotency_key: Option<String>,
}

/// Arguments of `update_checkout`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateCheckoutArgs {
    /// The checkout (`cs_…`).
    pub checkout_id: String,
    /// Replaces every line.
    pub items: Option<Vec<ItemRequestDto>>,
    /// The buyer.
    pub buyer: Option<BuyerDto>,
    /// Shipping or pickup.
    pub fulfillment: Option<FulfillmentDto>,
}

/// Arguments of the tools that act on one checkout.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutArgs {
    /// The checkout (`cs_…`).
    pub checkout_id: String,
}

/// Which tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolName {
    /// `search_products`
    SearchProducts,
    /// `get_product`
    GetProduct,
    /// `create_checkout`
    CreateCheckout,
    /// `update_checkout`
    UpdateCheckout,
    /// `get_checkout`
    GetCheckout,
    /// `cancel_checkout`
    CancelCheckout,
    /// `request_payment`
    RequestPayment,
    /// `get_payment_status`
    GetPaymentStatus,
}

/// What the annotations say (only what is true of the tool).
#[derive(Debug, Clone, Copy)]
struct Hints {
    read_only: bool,
    destructive: bool,
    idempotent: bool,
}

const READ: Hints = Hints {
    read_only: true,
    destructive: false,
    idempotent: true,
};

/// One tool.
#[derive(Debug)]
pub struct ToolSpec {
    /// Which.
    pub name: ToolName,
    /// Its name on the wire.
    pub wire_name: &'static str,
    title: &'static str,
    description: &'static str,
    /// The REST route it mirrors (`METHOD pattern`): audit action and traffic route.
    pub action: &'static str,
    /// The scopes it needs (searching with words also needs `search:read`).
    pub scopes: &'static [Scope],
    /// What the kill switches and the operation's limits see.
    pub operation: Operation,
    hints: Hints,
    input: fn() -> Arc<JsonObject>,
    output: fn() -> Arc<JsonObject>,
}

const CATALOG: &[Scope] = &[Scope::CatalogRead];
const CHECKOUT_READ: &[Scope] = &[Scope::CheckoutRead];
const CHECKOUT_WRITE: &[Scope] = &[Scope::CheckoutWrite];

/// Every tool, in the order a shopping conversation uses them.
pub static TOOLS: &[ToolSpec] = &[
    ToolSpec {
        name: ToolName::SearchProducts,
        wire_name: "search_products",
        title: "Search products",
        description: "Search the store's catalog by words, or browse it by category. Prices are money objects: show `formatted` to people, compute with `amount` (minor units). Pass `next_cursor` back as `cursor` for the next page.",
        action: "GET /products",
        scopes: CATALOG,
        operation: Operation::Read,
        hints: READ,
        input: schema::of::<SearchProductsArgs>,
        output: schema::of::<ProductListDto>,
    },
    ToolSpec {
        name: ToolName::GetProduct,
        wire_name: "get_product",
        title: "Get a product",
        description: "One product of the catalog, with its price and availability.",
        action: "GET /products/{id}",
        scopes: CATALOG,
        operation: Operation::Read,
        hints: READ,
        input: schema::of::<GetProductArgs>,
        output: schema::of::<ProductDto>,
    },
    ToolSpec {
        name: ToolName::CreateCheckout,
        wire_name: "create_checkout",
        title: "Create a checkout",
        description: "Open a guest checkout for the person (no login): the store prices the items, tax and shipping. The answer's `missing` lists what payment still needs (buyer, fulfillment) and `next_step` what to do. Send `idempotency_key` so that a retry does not open a second checkout.",
        action: "POST /checkout",
        scopes: CHECKOUT_WRITE,
        operation: Operation::CreateCheckout,
        hints: Hints {
            read_only: false,
            destructive: false,
            idempotent: false,
        },
        input: schema::of::<CreateCheckoutArgs>,
        output: schema::of::<CheckoutDto>,
    },
    ToolSpec {
        name: ToolName::UpdateCheckout,
        wire_name: "update_checkout",
        title: "Update a checkout",
        description: "Give the buyer (name, email) and fulfillment (shipping address or pickup), or replace the items. Refused while a payment is being approved: the amount the person approves is the amount charged.",
        action: "PATCH /checkout/{id}",
        scopes: CHECKOUT_WRITE,
        operation: Operation::Write,
        hints: Hints {
            read_only: false,
            destructive: true,
            idempotent: true,
        },
        input: schema::of::<UpdateCheckoutArgs>,
        output: schema::of::<CheckoutDto>,
    },
    ToolSpec {
        name: ToolName::GetCheckout,
        wire_name: "get_checkout",
        title: "Get a checkout",
        description: "A checkout: its items and total, its status, what is missing and the next step.",
        action: "GET /checkout/{id}",
        scopes: CHECKOUT_READ,
        operation: Operation::Read,
        hints: READ,
        input: schema::of::<CheckoutArgs>,
        output: schema::of::<CheckoutDto>,
    },
    ToolSpec {
        name: ToolName::CancelCheckout,
        wire_name: "cancel_checkout",
        title: "Cancel a checkout",
        description: "Cancel a checkout that is not paid: nothing is charged, even if the person approves a pending payment afterwards.",
        action: "POST /checkout/{id}/cancel",
        scopes: CHECKOUT_WRITE,
        operation: Operation::Write,
        hints: Hints {
            read_only: false,
            destructive: true,
            idempotent: true,
        },
        input: schema::of::<CheckoutArgs>,
        output: schema::of::<CheckoutDto>,
    },
    ToolSpec {
        name: ToolName::RequestPayment,
        wire_name: "request_payment",
        title: "Request payment",
        description: "Ask the person to approve the checkout's exact total in their wallet: show them the link, the QR code or the code. The amount and merchant come from the checkout, never from this call. The order is placed as soon as they approve, whether or not you ask again; follow it with get_payment_status. Calling again while a request is pending returns the same request.",
        action: "POST /checkout/{id}/complete",
        scopes: CHECKOUT_WRITE,
        operation: Operation::CompletePayment,
        hints: Hints {
            read_only: false,
            destructive: false,
            idempotent: true,
        },
        input: schema::of::<CheckoutArgs>,
        output: schema::of::<AuthorizationRequiredDto>,
    },
    ToolSpec {
        name: ToolName::GetPaymentStatus,
        wire_name: "get_payment_status",
        title: "Get the payment status",
        description: "Where the checkout's payment stands: pending (waiting for the person), approved (the order is being placed), completed (with the order id), rejected, expired, cancelled or failed (with a reason and what to do). Ask no more often than every `interval` seconds.",
        action: "GET /checkout/{id}/payment-status/{request_id}",
        scopes: CHECKOUT_READ,
        operation: Operation::Read,
        hints: READ,
        input: schema::of::<CheckoutArgs>,
        output: schema::of::<PaymentStatusDto>,
    },
];

impl ToolSpec {
    /// The tool named `name`, if there is one.
    pub fn find(name: &str) -> Option<&'static ToolSpec> {
        TOOLS.iter().find(|tool| tool.wire_name == name)
    }

    /// Whether a caller holding `held` (`None`: without a key, under the anonymous tier)
    /// may see and call the tool.
    pub fn open_to(&self, held: Option<&std::collections::BTreeSet<Scope>>) -> bool {
        match held {
            Some(held) => self.scopes.iter().all(|scope| held.contains(scope)),
            None => self.scopes == CATALOG,
        }
    }

    /// The tool as `tools/list` shows it.
    pub fn tool(&self) -> Tool {
        let tool = Tool::new(self.wire_name, self.description, (self.input)())
            .with_title(self.title)
            .with_raw_output_schema((self.output)())
            .with_annotations(
                ToolAnnotations::new()
                    .read_only(self.hints.read_only)
                    .destructive(self.hints.destructive)
                    .idempotent(self.hints.idempotent)
                    // The store and the wallet the gateway is configured with: a closed world.
                    .open_world(false),
            );
        if self.name == ToolName::RequestPayment {
            // Hosts that render MCP Apps show the approval widget with the result.
            tool.with_meta(rmcp::model::MetaObject::from(crate::widget::tool_meta()))
        } else {
            tool
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tool_has_an_object_schema_in_and_out_and_a_unique_name() {
        let mut names = std::collections::HashSet::new();
        for spec in TOOLS {
            assert!(names.insert(spec.wire_name), "{}", spec.wire_name);
            assert_eq!((spec.input)()["type"], "object", "{}", spec.wire_name);
            assert_eq!((spec.output)()["type"], "object", "{}", spec.wire_name);
            assert!(
                spec.action.starts_with("GET /") || spec.action.starts_with("P"),
                "{}",
                spec.action
            );
        }
    }

    #[test]
    fn without_a_key_only_the_catalog_is_open() {
        let open: Vec<&str> = TOOLS
            .iter()
            .filter(|t| t.open_to(None))
            .map(|t| t.wire_name)
            .collect();
        assert_eq!(open, ["search_products", "get_product"]);
    }
}
