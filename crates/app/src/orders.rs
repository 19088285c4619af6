//! Read a placed order with the user's token.

use sacp_domain::catalog::Order;
use sacp_ports::wallet::Introspection;
use sacp_ports::{BearerToken, RepositoryError, UpstreamError};

use super::{AppError, Gateway};

impl Gateway {
    /// A placed order, read at the store with the user's wallet token — only when the gateway
    /// placed it for the same person. The store's order says nothing of whom it belongs to,
    /// so the gateway compares the wallet's subject for the token with the payer it recorded
    /// when it placed the order; any other order is not found.
    pub async fn get_order(
        &self,
        order_id: &str,
        user_token: Option<&BearerToken>,
    ) -> Result<Order, AppError> {
        let token = user_token.ok_or(AppError::UserTokenRequired)?;
        let valid_id = !order_id.is_empty()
            && order_id.len() <= 128
            && order_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
        if !valid_id {
            return Err(AppError::NotFound("order"));
        }
        let subject = match self
            .wallet
            .introspect(token)
            .await
            .map_err(AppError::wallet)?
        {
            Introspection::Active(info) => info.subject,
            Introspection::Inactive => return Err(AppError::UserTokenInvalid),
        };
        token.note_subject(&subject);
        let placed = self
            .checkouts
            .with_order(order_id)
            .await
            .map_err(|e| match e {
                RepositoryError::NotFound => AppError::NotFound("order"),
                other => AppError::Storage(other),
            })?;
        if placed.payer() != Some(subject.as_str()) {
            return Err(AppError::NotFound("order"));
        }
        self.store
            .order(order_id, token)
            .await
            .map_err(|e| match e {
                UpstreamError::NotFound => AppError::NotFound("order"),
                UpstreamError::Unauthorized => AppError::UserTokenInvalid,
                other => AppError::store(other),
            })
    }
}
