//! Rate limits and quotas: fixed-window counters, the decision over several of them at once,
//! and the IETF `RateLimit-Policy` / `RateLimit` header values (draft-ietf-httpapi-ratelimit-
//! headers-10).
//!
//! The counting itself happens in storage shared by every replica; this module owns the
//! arithmetic: which window a moment falls in, when it resets, and what to tell the client.

use chrono::{DateTime, TimeZone, Utc};

/// One limit: at most `limit` requests per `window_secs`, named for the headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Name shown in the headers, e.g. `key-minute`.
    pub name: &'static str,
    /// Requests allowed per window.
    pub limit: u32,
    /// Window length in seconds (60 = a minute, 86,400 = a UTC day).
    pub window_secs: u32,
}

impl Policy {
    /// A per-minute policy.
    pub fn per_minute(name: &'static str, limit: u32) -> Policy {
        Policy {
            name,
            limit,
            window_secs: 60,
        }
    }

    /// A per-UTC-day policy.
    pub fn per_day(name: &'static str, limit: u32) -> Policy {
        Policy {
            name,
            limit,
            window_secs: 86_400,
        }
    }
}

/// A policy applied to one subject (a key, an org, an end user, a client address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    /// The policy.
    pub policy: Policy,
    /// Whose requests it counts, e.g. `key:key_abc`, `org:acme`, `ip:203.0.113.9`.
    pub subject: String,
}

/// The counter a [`Limit`] uses at one moment: one per subject, policy and window.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Counter {
    /// Unique name: policy, subject.
    pub name: String,
    /// Start of the window the moment falls in.
    pub window_start: DateTime<Utc>,
    /// When the counter may be forgotten (the window's end).
    pub window_end: DateTime<Utc>,
}

impl Limit {
    /// A limit of `policy` over `subject`.
    pub fn new(policy: Policy, subject: impl Into<String>) -> Limit {
        Limit {
            policy,
            subject: subject.into(),
        }
    }

    /// The counter for the window containing `now`. Windows are aligned on the Unix epoch,
    /// so every replica computes the same window for the same moment.
    pub fn counter(&self, now: DateTime<Utc>) -> Counter {
        let (window_start, window_end) = self.window(now);
        Counter {
            name: format!("{}:{}", self.policy.name, self.subject),
            window_start,
            window_end,
        }
    }

    /// Start and end of the window containing `now`.
    fn window(&self, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        let width = i64::from(self.policy.window_secs.max(1));
        let start = now.timestamp().div_euclid(width) * width;
        let at = |secs: i64| Utc.timestamp_opt(secs, 0).single().unwrap_or(now);
        (at(start), at(start + width))
    }
}

/// A limit with the count its window has reached, this request included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    /// The policy.
    pub policy: Policy,
    /// Requests counted in the current window, this one included.
    pub count: u64,
    /// Seconds until the window resets (at least 1).
    pub reset_secs: u64,
    /// The request was refused and taken back off the counter: it does not use quota.
    pub released: bool,
}

impl Usage {
    /// Usage of `limit` at `now` once its counter reached `count`.
    pub fn new(limit: &Limit, count: u64, now: DateTime<Utc>) -> Usage {
        let (_, window_end) = limit.window(now);
        let reset = (window_end - now).num_seconds().max(1);
        Usage {
            policy: limit.policy.clone(),
            count,
            reset_secs: u64::try_from(reset).unwrap_or(1),
            released: false,
        }
    }

    /// Whether this request went past the limit.
    pub fn exceeded(&self) -> bool {
        self.count > u64::from(self.policy.limit)
    }

    /// Requests left in the window (a released request is not counted).
    pub fn remaining(&self) -> u64 {
        let used = self.count.saturating_sub(u64::from(self.released));
        u64::from(self.policy.limit).saturating_sub(used)
    }
}

/// The verdict over every limit that applies to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Every limit's usage, in the order given.
    pub usages: Vec<Usage>,
}

impl Decision {
    /// The same decision for a refused request taken back off every counter: what remains
    /// does not count it.
    pub fn released(mut self) -> Decision {
        for usage in &mut self.usages {
            usage.released = true;
        }
        self
    }

    /// Whether the request may proceed: no limit exceeded.
    pub fn allowed(&self) -> bool {
        !self.usages.iter().any(Usage::exceeded)
    }

    /// The first exceeded policy, if any.
    pub fn exceeded(&self) -> Option<&Usage> {
        self.usages.iter().find(|u| u.exceeded())
    }

    /// Seconds the client should wait: the longest reset among exceeded limits.
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.usages
            .iter()
            .filter(|u| u.exceeded())
            .map(|u| u.reset_secs)
            .max()
    }

    /// `RateLimit-Policy` value: every policy, e.g. `"key-minute";q=600;w=60`.
    pub fn policy_header(&self) -> String {
        self.usages
            .iter()
            .map(|u| {
                format!(
                    "\"{}\";q={};w={}",
                    u.policy.name, u.policy.limit, u.policy.window_secs
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `RateLimit` value: what is left of each policy and when it resets, e.g.
    /// `"key-minute";r=599;t=42`.
    pub fn limit_header(&self) -> String {
        self.usages
            .iter()
            .map(|u| {
                format!(
                    "\"{}\";r={};t={}",
                    u.policy.name,
                    u.remaining(),
                    u.reset_secs
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(secs, 0).single().unwrap()
    }

    #[test]
    fn windows_are_aligned_and_shared_by_every_moment_inside() {
        let limit = Limit::new(Policy::per_minute("key-minute", 2), "key:key_a");
        let a = limit.counter(at(120));
        let b = limit.counter(at(179));
        assert_eq!(a, b);
        assert_eq!(a.window_start, at(120));
        assert_eq!(a.window_end, at(180));
        assert_ne!(limit.counter(at(180)), a);
        assert_eq!(a.name, "key-minute:key:key_a");
        let day = Limit::new(Policy::per_day("key-day", 5), "key:key_a");
        assert_eq!(day.counter(at(86_400 + 5)).window_start, at(86_400));
    }

    #[test]
    fn the_request_past_the_limit_is_refused_until_the_reset() {
        let limit = Limit::new(Policy::per_minute("key-minute", 2), "key:key_a");
        let now = at(130);
        let second = Usage::new(&limit, 2, now);
        assert!(!second.exceeded());
        assert_eq!(second.remaining(), 0);
        let third = Usage::new(&limit, 3, now);
        assert!(third.exceeded());
        assert_eq!(third.reset_secs, 50);
        let decision = Decision {
            usages: vec![second, third],
        };
        assert!(!decision.allowed());
        assert_eq!(decision.retry_after_secs(), Some(50));
    }

    #[test]
    fn a_refused_request_taken_back_does_not_lower_what_remains() {
        let minute = Limit::new(Policy::per_minute("key-minute", 600), "key:k");
        let day = Limit::new(Policy::per_day("key-day", 5), "key:k");
        let now = at(86_400 * 3 + 18);
        let refused = Decision {
            usages: vec![Usage::new(&minute, 11, now), Usage::new(&day, 6, now)],
        }
        .released();
        assert!(!refused.allowed(), "still the refusal it was");
        assert_eq!(
            refused.limit_header(),
            "\"key-minute\";r=590;t=42, \"key-day\";r=0;t=86382",
            "ten minute requests used, not eleven"
        );
    }

    #[test]
    fn headers_follow_the_ietf_draft_syntax() {
        let minute = Limit::new(Policy::per_minute("key-minute", 600), "key:k");
        let day = Limit::new(Policy::per_day("key-day", 100_000), "key:k");
        let now = at(86_400 * 3 + 18);
        let decision = Decision {
            usages: vec![Usage::new(&minute, 1, now), Usage::new(&day, 7, now)],
        };
        assert!(decision.allowed());
        assert_eq!(decision.retry_after_secs(), None);
        assert_eq!(
            decision.policy_header(),
            "\"key-minute\";q=600;w=60, \"key-day\";q=100000;w=86400"
        );
        assert_eq!(
            decision.limit_header(),
            "\"key-minute\";r=599;t=42, \"key-day\";r=99993;t=86382"
        );
    }
}
