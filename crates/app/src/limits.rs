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
    /// The limits a call by `caller` doing `operation` counts against: the key's minute and
    /// day, its organisation's minute, the key's writes, payments or checkouts per day as
    /// the operation is, the end user's minute (`user`, see [`user_subject`]); an anonymous
    /// caller's address. The operator and public pages count against none.
    pub fn limits_for(
        &self,
        caller: &Caller,
        operation: Operation,
        user: Option<String>,
    ) -> Vec<Limit> {
        let settings = self.settings();
        let mut limits = Vec::new();
        match caller {
            Caller::Key(principal) => {
                let key = format!("key:{}", principal.key_id.as_str());
                limits.push(Limit::new(
                    RatePolicy::per_minute("key-minute", principal.limits.requests_per_minute),
                    key.clone(),
                ));
                limits.push(Limit::new(
                    RatePolicy::per_day("key-day", principal.limits.daily_quota),
                    key.clone(),
                ));
                limits.push(Limit::new(
                    RatePolicy::per_minute("org-minute", settings.org_per_minute),
                    format!("org:{}", principal.org),
                ));
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
                if let Some(user) = user {
                    limits.push(Limit::new(
                        RatePolicy::per_minute("user-minute", settings.user_per_minute),
                        user,
                    ));
                }
            }
            Caller::Anonymous(ip) => {
                if let Some(per_minute) = settings.anonymous_per_minute {
                    limits.push(Limit::new(
                        RatePolicy::per_minute("anonymous-minute", per_minute),
                        format!("ip:{ip}"),
                    ));
                }
            }
            Caller::Operator | Caller::Public => {}
        }
        limits
    }
}
