//! What the use cases record for the operator's metrics (names in
//! [`sacp_ports::telemetry`]).

use sacp_domain::authorization::AuthorizationStatus;
use sacp_ports::telemetry;

/// A payment ended with `outcome` (`completed`, `rejected`, `expired`, `failed`,
/// `cancelled`).
pub(crate) fn payment_ended(outcome: &'static str) {
    metrics::counter!(telemetry::PAYMENTS, "outcome" => outcome).increment(1);
}

/// The outcome an authorization's terminal status counts as, if it is terminal.
pub(crate) fn outcome_of(status: AuthorizationStatus) -> Option<&'static str> {
    match status {
        AuthorizationStatus::Consumed => Some("completed"),
        AuthorizationStatus::Rejected => Some("rejected"),
        AuthorizationStatus::Expired => Some("expired"),
        AuthorizationStatus::Failed => Some("failed"),
        AuthorizationStatus::Cancelled => Some("cancelled"),
        AuthorizationStatus::Pending
        | AuthorizationStatus::Approved
        | AuthorizationStatus::Charging => None,
    }
}

/// A payment token was minted at the wallet.
pub(crate) fn token_minted() {
    metrics::counter!(telemetry::WALLET_TOKENS_MINTED).increment(1);
}
