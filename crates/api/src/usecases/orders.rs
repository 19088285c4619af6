//! Read a placed order with the user's token.

use sacp_domain::catalog::Order;
use sacp_ports::{BearerToken, UpstreamError};

use super::{AppError, Gateway};

impl Gateway {
    /// A placed order, read at the store with the user's wallet token.
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
