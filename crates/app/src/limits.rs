//! Which rate limits and quotas a call counts against: the same rules for a REST request and
//! an MCP tool call that mirrors it.

use sacp_domain::access::SecretHash;
use sacp_domain::ratelimit::{Limit, Policy as RatePolicy};
use sacp_domain::switches::Operation;
use sacp_ports::BearerToken;

use crate::{Caller, Guardrails};

/// A short, stable, non-reversible name for the end user behind a wallet token: the
/// per-end-user limit is counted before the token is introspected, so that a flood never
/// reaches the wallet.
pub fn user_subject(token: &BearerToken) -> String {
    format!(
        "user:{}",
        sacp_domain::ids::base32(&SecretHash::of(token.expose()).0[..16])
    )
}

impl Guardrails {
    /// The limits a call by `caller` doing `operation` counts against: every request's (see
    /// [`Guardrails::request_limits`]), the operation's (see [`Guardrails::operation_limits`])
    /// and the end user's minute (`user`, see [`user_subject`]).
    pub fn limits_for(
        &self,
        caller: &Caller,
        operation: Operation,
        user: Option<String>,
    ) -> Vec<Limit> {
        let mut limits = self.request_limits(caller);
        limits.extend(self.operation_limits(caller, operation));
        if let (Caller::Key(_), Some(user)) = (caller, user) {
            limits.push(Limit::new(
                RatePolicy::per_minute("user-minute", self.settings().user_per_minute),
                user,
            ));
        }
        limits
    }

    /// What every request counts against: the key's minute and day and its organisation's
    /// minute, or an anonymous caller's address. The operator and public pages count against
    /// none. (An MCP message counts these once, as a REST request does.)
    pub fn request_limits(&self, caller: &Caller) -> Vec<Limit> {
        let settings = self.settings();
        match caller {
            Caller::Key(principal) => {
                let key = format!("key:{}", principal.key_id.as_str());
                vec![
                    Limit::new(
                        RatePolicy::per_minute("key-minute", principal.limits.requests_per_minute),
                        key.clone(),
                    ),
                    Limit::new(
                        RatePolicy::per_day("key-day", principal.limits.daily_quota),
                        key,
                    ),
                    Limit::new(
                        RatePolicy::per_minute("org-minute", settings.org_per_minute),
                        format!("org:{}", principal.org),
                    ),
                ]
            }
            Caller::Anonymous(ip) => settings
                .anonymous_per_minute
                .map(|per_minute| {
                    Limit::new(
                        RatePolicy::per_minute("anonymous-minute", per_minute),
                        format!("ip:{ip}"),
                    )
                })
                .into_iter()
                .collect(),
            Caller::Operator | Caller::Public => Vec::new(),
        }
    }

    /// What a key's `operation` counts against beyond every request's: writes per minute,
    /// and payments per minute or checkouts per day as the operation is.
    pub fn operation_limits(&self, caller: &Caller, operation: Operation) -> Vec<Limit> {
        let Caller::Key(principal) = caller else {
            return Vec::new();
        };
        let settings = self.settings();
        let key = format!("key:{}", principal.key_id.as_str());
        let mut limits = Vec::new();
        if operation != Operation::Read {
            limits.push(Limit::new(
                RatePolicy::per_minute("key-writes", settings.writes_per_minute),
                key.clone(),
            ));
        }
        match operation {
            Operation::CompletePayment => limits.push(Limit::new(
                RatePolicy::per_minute("key-payments", settings.completions_per_minute),
                key,
            )),
            Operation::CreateCheckout => limits.push(Limit::new(
                RatePolicy::per_day("key-checkouts", settings.checkouts_per_day),
                key,
            )),
            _ => {}
        }
        limits
    }
}
