//! Which rate limits and quotas a call counts against: the same rules for a REST request and
//! an MCP tool call that mirrors it.
//!
//! A key's limits do not change from one request to the next, so they are made once per
//! cached copy of the key ([`LimitPlan`], held by its [`Principal`]): a request borrows them
//! and formats no counter name. A key read again (it changed, or its copy aged out) gets a
//! new plan; the old one goes with the old copy.

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use sacp_domain::ApiKeyId;
use sacp_domain::access::{KeyLimits, SecretHash};
use sacp_domain::ratelimit::{Limit, Policy as RatePolicy, policy_header};
use sacp_domain::switches::Operation;
use sacp_ports::BearerToken;

use crate::{Caller, Guardrails, LimitSettings};

/// A short, stable, non-reversible name for the end user behind a wallet token: the
/// per-end-user limit is counted before the token is introspected, so that a flood never
/// reaches the wallet.
pub fn user_subject(token: &BearerToken) -> String {
    format!(
        "user:{}",
        sacp_domain::ids::base32(&SecretHash::of(token.expose()).0[..16])
    )
}

/// How many limits every request of a key counts against: its minute, its day and its
/// organisation's minute (the first ones of each [`LimitPlan`] list).
const REQUEST_LIMITS: usize = 3;

/// Where [`LimitPlan`] keeps `operation`'s limits.
fn slot(operation: Operation) -> usize {
    match operation {
        Operation::Read => 0,
        Operation::Write => 1,
        Operation::CreateCheckout => 2,
        Operation::CompletePayment => 3,
    }
}

/// One operation's limits for one key, and their `RateLimit-Policy` value.
#[derive(Debug, Clone)]
struct Planned {
    limits: Box<[Limit]>,
    policy_header: Box<str>,
}

/// The limits of one key, made once per cached copy of it: for each [`Operation`], every
/// request's limits (the key's minute and day, its organisation's minute) then the
/// operation's (writes per minute; payments per minute or checkouts per day), each with its
/// counter's name, and the `RateLimit-Policy` value that lists them. Each operation's are
/// made the first time a request does it (a key that only reads holds only its reads').
#[derive(Debug, Clone)]
pub struct LimitPlan {
    /// `key:<id>`: the subject of the key's own limits.
    key: Box<str>,
    /// `org:<org>`: the subject of its organisation's.
    tenant: Arc<str>,
    limits: KeyLimits,
    settings: LimitSettings,
    operations: [OnceLock<Planned>; 4],
}

impl PartialEq for LimitPlan {
    /// Plans of the same key, limits and settings are the same plan, whichever of their
    /// operations' limits were made yet.
    fn eq(&self, other: &LimitPlan) -> bool {
        (&self.key, &self.tenant, self.limits, self.settings)
            == (&other.key, &other.tenant, other.limits, other.settings)
    }
}

impl Eq for LimitPlan {}

impl LimitPlan {
    /// The plan of the key `key_id` of the organisation whose subject is `tenant`
    /// (`org:<org>`), with its own `limits` and the gateway-wide `settings`.
    pub fn new(
        key_id: &ApiKeyId,
        tenant: Arc<str>,
        limits: KeyLimits,
        settings: LimitSettings,
    ) -> LimitPlan {
        LimitPlan {
            key: format!("key:{}", key_id.as_str()).into(),
            tenant,
            limits,
            settings,
            operations: Default::default(),
        }
    }

    /// `operation`'s limits and policy value, made on first use.
    fn planned(&self, operation: Operation) -> &Planned {
        // `slot` answers 0 to 3 for the four operations: always in range.
        self.operations[slot(operation)].get_or_init(|| self.make(operation))
    }

    fn make(&self, operation: Operation) -> Planned {
        let (key, settings) = (&*self.key, &self.settings);
        let mut all = vec![
            Limit::new(
                RatePolicy::per_minute("key-minute", self.limits.requests_per_minute),
                key,
            ),
            Limit::new(RatePolicy::per_day("key-day", self.limits.daily_quota), key),
            Limit::new(
                RatePolicy::per_minute("org-minute", settings.org_per_minute),
                &*self.tenant,
            ),
        ];
        if operation != Operation::Read {
            all.push(Limit::new(
                RatePolicy::per_minute("key-writes", settings.writes_per_minute),
                key,
            ));
        }
        match operation {
            Operation::CompletePayment => all.push(Limit::new(
                RatePolicy::per_minute("key-payments", settings.completions_per_minute),
                key,
            )),
            Operation::CreateCheckout => all.push(Limit::new(
                RatePolicy::per_day("key-checkouts", settings.checkouts_per_day),
                key,
            )),
            Operation::Read | Operation::Write => {}
        }
        Planned {
            policy_header: policy_header(all.iter().map(Limit::policy)).into(),
            limits: all.into(),
        }
    }

    /// What a request doing `operation` counts against: every request's limits, then the
    /// operation's.
    pub fn limits(&self, operation: Operation) -> &[Limit] {
        &self.planned(operation).limits
    }

    /// What every request counts against (an MCP message counts these once, as a REST
    /// request does).
    pub fn request_limits(&self) -> &[Limit] {
        let read = self.limits(Operation::Read);
        read.get(..REQUEST_LIMITS).unwrap_or(read)
    }

    /// What `operation` counts against beyond every request's (an MCP tool call's).
    pub fn operation_limits(&self, operation: Operation) -> &[Limit] {
        self.limits(operation).get(REQUEST_LIMITS..).unwrap_or(&[])
    }

    /// The `RateLimit-Policy` value of [`LimitPlan::limits`] for `operation`.
    pub fn policy_header(&self, operation: Operation) -> &str {
        &self.planned(operation).policy_header
    }
}

impl Guardrails {
    /// The limits a call by `caller` doing `operation` counts against: every request's (see
    /// [`Guardrails::request_limits`]), the operation's (see [`Guardrails::operation_limits`])
    /// and the end user's minute (`user`, see [`user_subject`]). A key's are borrowed from
    /// its plan unless an end user's is added.
    pub fn limits_for<'a>(
        &self,
        caller: &'a Caller,
        operation: Operation,
        user: Option<String>,
    ) -> Cow<'a, [Limit]> {
        match (caller, user) {
            (Caller::Key(principal), None) => Cow::Borrowed(principal.plan.limits(operation)),
            (Caller::Key(principal), Some(user)) => {
                let mut limits = principal.plan.limits(operation).to_vec();
                limits.push(Limit::new(
                    RatePolicy::per_minute("user-minute", self.settings().user_per_minute),
                    user,
                ));
                Cow::Owned(limits)
            }
            // Only a key's operations have limits of their own.
            (caller, _) => self.request_limits(caller),
        }
    }

    /// What every request counts against: the key's minute and day and its organisation's
    /// minute, or an anonymous caller's address. The operator and public pages count against
    /// none. (An MCP message counts these once, as a REST request does.)
    pub fn request_limits<'a>(&self, caller: &'a Caller) -> Cow<'a, [Limit]> {
        match caller {
            Caller::Key(principal) => Cow::Borrowed(principal.plan.request_limits()),
            Caller::Anonymous(ip) => Cow::Owned(
                self.settings()
                    .anonymous_per_minute
                    .map(|per_minute| {
                        Limit::new(
                            RatePolicy::per_minute("anonymous-minute", per_minute),
                            format!("ip:{ip}"),
                        )
                    })
                    .into_iter()
                    .collect(),
            ),
            Caller::Operator | Caller::Public => Cow::Borrowed(&[]),
        }
    }

    /// What a key's `operation` counts against beyond every request's: writes per minute,
    /// and payments per minute or checkouts per day as the operation is.
    pub fn operation_limits<'a>(
        &self,
        caller: &'a Caller,
        operation: Operation,
    ) -> Cow<'a, [Limit]> {
        match caller {
            Caller::Key(principal) => Cow::Borrowed(principal.plan.operation_limits(operation)),
            _ => Cow::Borrowed(&[]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPERATIONS: [Operation; 4] = [
        Operation::Read,
        Operation::Write,
        Operation::CreateCheckout,
        Operation::CompletePayment,
    ];

    fn plan() -> LimitPlan {
        let id = ApiKeyId::from_bits([1; 16]);
        LimitPlan::new(
            &id,
            "org:acme".into(),
            KeyLimits::READ_TIER,
            LimitSettings::default(),
        )
    }

    fn names(limits: &[Limit]) -> Vec<&str> {
        limits.iter().map(Limit::counter_name).collect()
    }

    #[test]
    fn each_operation_counts_every_requests_limits_then_its_own() {
        let plan = plan();
        let key = "key:key_aeaqcaibaeaqcaibaeaqcaibae";
        assert_eq!(
            names(plan.limits(Operation::Read)),
            [
                format!("key-minute:{key}"),
                format!("key-day:{key}"),
                "org-minute:org:acme".to_owned()
            ]
        );
        assert_eq!(plan.request_limits(), plan.limits(Operation::Read));
        assert!(plan.operation_limits(Operation::Read).is_empty());
        assert_eq!(
            names(plan.operation_limits(Operation::Write)),
            [format!("key-writes:{key}")]
        );
        assert_eq!(
            names(plan.operation_limits(Operation::CompletePayment)),
            [format!("key-writes:{key}"), format!("key-payments:{key}")]
        );
        assert_eq!(
            names(plan.operation_limits(Operation::CreateCheckout)),
            [format!("key-writes:{key}"), format!("key-checkouts:{key}")]
        );
        for operation in OPERATIONS {
            assert_eq!(&plan.limits(operation)[..3], plan.request_limits());
            assert_eq!(
                plan.policy_header(operation),
                policy_header(plan.limits(operation).iter().map(Limit::policy))
            );
        }
        assert_eq!(
            plan.policy_header(Operation::Read),
            "\"key-minute\";q=600;w=60, \"key-day\";q=100000;w=86400, \"org-minute\";q=6000;w=60"
        );
        assert_eq!(plan, self::plan(), "made or not yet, the same plan");
        assert_ne!(
            plan,
            LimitPlan::new(
                &ApiKeyId::from_bits([1; 16]),
                "org:acme".into(),
                KeyLimits {
                    requests_per_minute: 1,
                    daily_quota: 1
                },
                LimitSettings::default(),
            )
        );
    }
}
