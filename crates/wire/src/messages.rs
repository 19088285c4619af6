//! What an agent relays to the person about a payment: one sentence saying where it stands
//! and what to do next, the same over REST and MCP.

use sacp_domain::PaymentStatus;

/// What an agent can tell the person about a failed payment, and do next.
pub fn failure_message(reason: Option<&str>) -> String {
    use sacp_domain::authorization::failure;
    match reason {
        Some(failure::NO_PAYMENT_METHOD) => "The person's wallet has no payment method: ask them to add a card in their wallet app, then call complete again. Nothing was charged.".into(),
        Some(failure::DECLINED) => "The card was declined; nothing was charged. The person can choose another card in their wallet, then call complete again.".into(),
        Some(failure::OVER_WALLET_LIMIT) => "The payment is above what the person's wallet allows; nothing was charged. The person can raise the limit in their wallet, then call complete again.".into(),
        Some(failure::APPROVAL_EXPIRED) => "The approval could no longer be collected from the wallet; nothing was charged. Call complete again for a new code.".into(),
        Some(failure::ORDER_NOT_PLACED) => "The order could not be placed after the approval; nothing was charged. Call complete again to retry.".into(),
        Some(failure::WALLET_TOKEN_REFUSED) => "The wallet withdrew the approval; nothing was charged. Call complete again for a new code.".into(),
        Some(failure::STORE_REFUSED_TOKEN) => "The store did not accept the wallet's approval; nothing was charged. Call complete again, or contact the merchant if it keeps happening.".into(),
        _ => "The payment could not be completed; nothing was charged. Call complete again to retry.".into(),
    }
}

/// What an agent can tell the person about a payment in `status`, and do next.
pub fn payment_message(
    status: PaymentStatus,
    amount: &str,
    user_code: &str,
    reason: Option<&str>,
) -> String {
    match status {
        PaymentStatus::Pending => format!("Waiting for the person to approve {amount} in their wallet (code {user_code})."),
        PaymentStatus::Approved => format!("The person approved {amount}; the order is being placed. Keep polling."),
        PaymentStatus::Completed => "Payment approved! Order confirmed.".into(),
        PaymentStatus::Rejected => "Payment was rejected by the person. Nothing was charged; complete the checkout again to retry.".into(),
        PaymentStatus::Expired => "The authorization request expired. Nothing was charged; complete the checkout again to get a new code.".into(),
        PaymentStatus::Cancelled => "The checkout was cancelled; nothing was charged, and an approval given now is not used.".into(),
        PaymentStatus::Failed => failure_message(reason),
    }
}
