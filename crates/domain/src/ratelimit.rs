//! Rate limits and quotas: fixed-window counters, the decision over several of them at once,
//! and the IETF `RateLimit-Policy` / `RateLimit` header values (draft-ietf-httpapi-ratelimit-
//! headers-10).
//!
//! The counting itself happens in storage shared by every replica; this module owns the
//! arithmetic: which window a moment falls in, when it resets, and what to tell the client.
//!
//! A request that passes allocates nothing here: a [`Limit`] carries its counter's name
//! (made once, when the limit is), [`CounterAt`] borrows it, a [`Decision`] keeps up to
//! [`INLINE_USAGES`] usages in place, and [`Decision::write_limit_header`] writes the
//! `RateLimit` value into the caller's buffer.

use chrono::{DateTime, TimeDelta, TimeZone, Utc};

/// One limit: at most `limit` requests per `window_secs`, named for the headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    policy: Policy,
    /// `policy:subject`: the name of its counters, made once.
    counter_name: String,
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

/// A [`Counter`] borrowing its name from its [`Limit`]: what storage that counts in this
/// process is asked with, without a name being copied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct CounterAt<'a> {
    /// Unique name: policy, subject.
    pub name: &'a str,
    /// Start of the window the moment falls in.
    pub window_start: DateTime<Utc>,
    /// When the counter may be forgotten (the window's end).
    pub window_end: DateTime<Utc>,
}

impl CounterAt<'_> {
    /// The same counter owning its name.
    pub fn to_counter(&self) -> Counter {
        Counter {
            name: self.name.to_owned(),
            window_start: self.window_start,
            window_end: self.window_end,
        }
    }
}

impl Limit {
    /// A limit of `policy` over `subject` (e.g. `key:key_abc`, `org:acme`,
    /// `ip:203.0.113.9`).
    pub fn new(policy: Policy, subject: impl AsRef<str>) -> Limit {
        let subject = subject.as_ref();
        let mut counter_name = String::with_capacity(policy.name.len() + 1 + subject.len());
        counter_name.push_str(policy.name);
        counter_name.push(':');
        counter_name.push_str(subject);
        Limit {
            policy,
            counter_name,
        }
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The name of its counters: `policy:subject`, e.g. `key-minute:key:key_abc`.
    pub fn counter_name(&self) -> &str {
        &self.counter_name
    }

    /// The counter for the window containing `now`. Windows are aligned on the Unix epoch,
    /// so every replica computes the same window for the same moment.
    pub fn counter(&self, now: DateTime<Utc>) -> Counter {
        self.counter_at(now).to_counter()
    }

    /// [`Limit::counter`], borrowing the name.
    pub fn counter_at(&self, now: DateTime<Utc>) -> CounterAt<'_> {
        let (window_start, window_end) = self.window(now);
        CounterAt {
            name: &self.counter_name,
            window_start,
            window_end,
        }
    }

    /// Start and end of the window containing `now`: `now` moved back to the window's
    /// first second, and forward by its width. Moving a time by less than a year is a few
    /// additions; building one from a Unix second works the calendar out, and this runs
    /// for every limit of every request.
    fn window(&self, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        let width = i64::from(self.policy.window_secs.max(1));
        let second = now.timestamp();
        let first = second - second.rem_euclid(width);
        let back = TimeDelta::seconds(second - first)
            + TimeDelta::nanoseconds(i64::from(now.timestamp_subsec_nanos()));
        let moved = now
            .checked_sub_signed(back)
            .and_then(|start| Some((start, start.checked_add_signed(TimeDelta::seconds(width))?)));
        match moved {
            Some((start, end))
                if start.timestamp() == first && start.timestamp_subsec_nanos() == 0 =>
            {
                (start, end)
            }
            // A leap second, or the edge of time: from the calendar.
            _ => {
                let at = |secs: i64| Utc.timestamp_opt(secs, 0).single().unwrap_or(now);
                (at(first), at(first + width))
            }
        }
    }
}

/// A limit with the count its window has reached, this request included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// What fills the unused places of a [`Decision`].
    const UNUSED: Usage = Usage {
        policy: Policy {
            name: "",
            limit: 0,
            window_secs: 0,
        },
        count: 0,
        reset_secs: 0,
        released: false,
    };

    /// Usage of `limit` at `now` once its counter reached `count`.
    pub fn new(limit: &Limit, count: u64, now: DateTime<Utc>) -> Usage {
        let (_, window_end) = limit.window(now);
        Usage::at(limit.policy, count, window_end, now)
    }

    /// [`Usage::new`] of a limit of `policy` whose window at `now` ends at `window_end` (its
    /// [`CounterAt`]'s), without working the window out again.
    pub fn at(policy: Policy, count: u64, window_end: DateTime<Utc>, now: DateTime<Utc>) -> Usage {
        // Whole seconds from `now` to the window's end (which falls on a second), as
        // `(window_end - now).num_seconds()` counts them, without a calendar.
        let part_second = i64::from(now.timestamp_subsec_nanos() > 0);
        let reset = (window_end.timestamp() - now.timestamp() - part_second).max(1);
        Usage {
            policy,
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

/// How many usages a [`Decision`] holds in place (more are kept on the heap): more than any
/// call counts against (a key's request, its operation's and its end user's limits: six).
pub const INLINE_USAGES: usize = 8;

/// Every usage of a decision, in place while they fit.
#[derive(Debug, Clone)]
#[allow(
    clippy::large_enum_variant,
    reason = "in place is the point: a request's usages without a heap allocation"
)]
enum Usages {
    Inline {
        items: [Usage; INLINE_USAGES],
        len: usize,
    },
    Heap(Vec<Usage>),
}

/// The verdict over every limit that applies to a request.
#[derive(Debug, Clone)]
pub struct Decision {
    usages: Usages,
}

impl PartialEq for Decision {
    fn eq(&self, other: &Decision) -> bool {
        self.usages() == other.usages()
    }
}

impl Eq for Decision {}

impl Default for Decision {
    fn default() -> Decision {
        Decision::none()
    }
}

impl FromIterator<Usage> for Decision {
    fn from_iter<I: IntoIterator<Item = Usage>>(usages: I) -> Decision {
        let mut decision = Decision::none();
        for usage in usages {
            decision.push(usage);
        }
        decision
    }
}

impl Decision {
    /// The decision of a request no limit applies to.
    pub const fn none() -> Decision {
        Decision {
            usages: Usages::Inline {
                items: [Usage::UNUSED; INLINE_USAGES],
                len: 0,
            },
        }
    }

    /// Adds the next limit's usage.
    pub fn push(&mut self, usage: Usage) {
        match &mut self.usages {
            Usages::Inline { items, len } => match items.get_mut(*len) {
                Some(slot) => {
                    *slot = usage;
                    *len += 1;
                }
                None => {
                    let mut spilled = items.to_vec();
                    spilled.push(usage);
                    self.usages = Usages::Heap(spilled);
                }
            },
            Usages::Heap(items) => items.push(usage),
        }
    }

    /// Every limit's usage, in the order given.
    pub fn usages(&self) -> &[Usage] {
        match &self.usages {
            Usages::Inline { items, len } => items.get(..*len).unwrap_or(&[]),
            Usages::Heap(items) => items,
        }
    }

    fn usages_mut(&mut self) -> &mut [Usage] {
        match &mut self.usages {
            Usages::Inline { items, len } => items.get_mut(..*len).unwrap_or(&mut []),
            Usages::Heap(items) => items,
        }
    }

    /// The same decision for a refused request taken back off every counter: what remains
    /// does not count it.
    pub fn released(mut self) -> Decision {
        for usage in self.usages_mut() {
            usage.released = true;
        }
        self
    }

    /// Whether the request may proceed: no limit exceeded.
    pub fn allowed(&self) -> bool {
        !self.usages().iter().any(Usage::exceeded)
    }

    /// The first exceeded policy, if any.
    pub fn exceeded(&self) -> Option<&Usage> {
        self.usages().iter().find(|u| u.exceeded())
    }

    /// Seconds the client should wait: the longest reset among exceeded limits.
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.usages()
            .iter()
            .filter(|u| u.exceeded())
            .map(|u| u.reset_secs)
            .max()
    }

    /// `RateLimit-Policy` value: every policy, e.g. `"key-minute";q=600;w=60`.
    pub fn policy_header(&self) -> String {
        policy_header(self.usages().iter().map(|u| &u.policy))
    }

    /// `RateLimit` value: what is left of each policy and when it resets, e.g.
    /// `"key-minute";r=599;t=42`.
    pub fn limit_header(&self) -> String {
        let mut text = String::new();
        self.write_limit(&mut text);
        text
    }

    /// Writes [`Decision::limit_header`] into `out` without allocating; returns its length,
    /// or `None` when it does not fit.
    pub fn write_limit_header(&self, out: &mut [u8]) -> Option<usize> {
        let mut cursor = Cursor {
            out,
            len: 0,
            full: false,
        };
        self.write_limit(&mut cursor);
        (!cursor.full).then_some(cursor.len)
    }

    fn write_limit(&self, sink: &mut impl Sink) {
        for (index, usage) in self.usages().iter().enumerate() {
            if index > 0 {
                sink.put(", ");
            }
            sink.put("\"");
            sink.put(usage.policy.name);
            sink.put("\";r=");
            sink.put(Digits::of(usage.remaining()).as_str());
            sink.put(";t=");
            sink.put(Digits::of(usage.reset_secs).as_str());
        }
    }
}

/// `RateLimit-Policy` value of `policies`, in order, e.g.
/// `"key-minute";q=600;w=60, "key-day";q=100000;w=86400`.
pub fn policy_header<'a>(policies: impl IntoIterator<Item = &'a Policy>) -> String {
    let mut text = String::new();
    for (index, policy) in policies.into_iter().enumerate() {
        if index > 0 {
            text.put(", ");
        }
        text.put("\"");
        text.put(policy.name);
        text.put("\";q=");
        text.put(Digits::of(u64::from(policy.limit)).as_str());
        text.put(";w=");
        text.put(Digits::of(u64::from(policy.window_secs)).as_str());
    }
    text
}

/// Where header text is written.
trait Sink {
    fn put(&mut self, text: &str);
}

impl Sink for String {
    fn put(&mut self, text: &str) {
        self.push_str(text);
    }
}

/// A caller's buffer being filled; `full` once something did not fit.
struct Cursor<'a> {
    out: &'a mut [u8],
    len: usize,
    full: bool,
}

impl Sink for Cursor<'_> {
    fn put(&mut self, text: &str) {
        match self.out.get_mut(self.len..self.len + text.len()) {
            Some(slot) => {
                slot.copy_from_slice(text.as_bytes());
                self.len += text.len();
            }
            None => self.full = true,
        }
    }
}

/// The decimal digits of a number, written without `core::fmt`.
struct Digits {
    bytes: [u8; 20],
    start: usize,
}

impl Digits {
    fn of(mut value: u64) -> Digits {
        let mut bytes = [b'0'; 20];
        let mut start = bytes.len();
        while start > 0 {
            start -= 1;
            if let Some(slot) = bytes.get_mut(start) {
                // The remainder is a single digit: nothing is lost.
                *slot = b'0' + u8::try_from(value % 10).unwrap_or(0);
            }
            value /= 10;
            if value == 0 {
                break;
            }
        }
        Digits { bytes, start }
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(self.bytes.get(self.start..).unwrap_or(&[])).unwrap_or("0")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(secs, 0).single().unwrap()
    }

    #[test]
    fn windows_and_resets_match_the_calendar_at_any_instant() {
        let minute = Limit::new(Policy::per_minute("key-minute", 2), "key:key_a");
        let day = Limit::new(Policy::per_day("key-day", 5), "key:key_a");
        let odd = Limit::new(
            Policy {
                name: "odd",
                limit: 1,
                window_secs: 7,
            },
            "x",
        );
        let nanos = [0, 1, 500_000_000, 999_999_999];
        // Before and after the epoch, across a day, a leap day and a year's end.
        let seconds = [
            -86_401,
            -1,
            0,
            59,
            60,
            86_399,
            951_782_399,
            1_798_761_599,
            1_800_000_030,
        ];
        for limit in [&minute, &day, &odd] {
            let width = i64::from(limit.policy().window_secs);
            for second in seconds {
                for nano in nanos {
                    let now = Utc.timestamp_opt(second, nano).single().unwrap();
                    let first = second.div_euclid(width) * width;
                    let counter = limit.counter(now);
                    assert_eq!(counter.window_start, at(first), "{now} {width}");
                    assert_eq!(counter.window_end, at(first + width), "{now} {width}");
                    let reset = (at(first + width) - now).num_seconds().max(1);
                    assert_eq!(
                        Usage::new(limit, 1, now).reset_secs,
                        u64::try_from(reset).unwrap(),
                        "{now}"
                    );
                }
            }
        }
        // A leap second (chrono's nanoseconds past 1e9) still falls in its minute.
        let leap = chrono::NaiveDate::from_ymd_opt(2016, 12, 31)
            .and_then(|d| d.and_hms_nano_opt(23, 59, 59, 1_500_000_000))
            .unwrap()
            .and_utc();
        let counter = minute.counter(leap);
        assert_eq!(counter.window_start.timestamp(), leap.timestamp() - 59);
        assert_eq!(counter.window_end.timestamp(), leap.timestamp() + 1);
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
        let decision: Decision = [second, third].into_iter().collect();
        assert!(!decision.allowed());
        assert_eq!(decision.retry_after_secs(), Some(50));
    }

    #[test]
    fn a_refused_request_taken_back_does_not_lower_what_remains() {
        let minute = Limit::new(Policy::per_minute("key-minute", 600), "key:k");
        let day = Limit::new(Policy::per_day("key-day", 5), "key:k");
        let now = at(86_400 * 3 + 18);
        let refused = [Usage::new(&minute, 11, now), Usage::new(&day, 6, now)]
            .into_iter()
            .collect::<Decision>()
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
        let decision: Decision = [Usage::new(&minute, 1, now), Usage::new(&day, 7, now)]
            .into_iter()
            .collect();
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

    #[test]
    fn the_limit_header_written_in_place_is_the_same_text() {
        let minute = Limit::new(Policy::per_minute("key-minute", 600), "key:k");
        let day = Limit::new(Policy::per_day("key-day", u32::MAX), "key:k");
        let now = at(86_400 * 3 + 18);
        let decision: Decision = [Usage::new(&minute, 0, now), Usage::new(&day, u64::MAX, now)]
            .into_iter()
            .collect();
        let mut buffer = [0u8; 256];
        let written = decision.write_limit_header(&mut buffer).unwrap();
        assert_eq!(
            std::str::from_utf8(&buffer[..written]).unwrap(),
            decision.limit_header()
        );
        assert_eq!(
            decision.limit_header(),
            "\"key-minute\";r=600;t=42, \"key-day\";r=0;t=86382"
        );
        let mut small = [0u8; 20];
        assert_eq!(
            decision.write_limit_header(&mut small),
            None,
            "too long: none"
        );
        assert_eq!(Decision::none().write_limit_header(&mut small), Some(0));
    }

    #[test]
    fn a_decision_keeps_every_usage_past_its_inline_places() {
        let now = at(60);
        let limits: Vec<Limit> = (0..INLINE_USAGES + 3)
            .map(|n| Limit::new(Policy::per_minute("key-minute", 5), format!("key:{n}")))
            .collect();
        let decision: Decision = limits
            .iter()
            .enumerate()
            .map(|(n, limit)| Usage::new(limit, n as u64, now))
            .collect();
        assert_eq!(decision.usages().len(), INLINE_USAGES + 3);
        assert_eq!(
            decision
                .usages()
                .iter()
                .map(|u| u.count)
                .collect::<Vec<_>>(),
            (0..INLINE_USAGES as u64 + 3).collect::<Vec<_>>()
        );
        assert!(
            !decision.allowed(),
            "the usages past the inline ones count too"
        );
        assert!(
            decision
                .clone()
                .released()
                .usages()
                .iter()
                .all(|u| u.released)
        );
        assert_eq!(
            decision.policy_header().matches("key-minute").count(),
            INLINE_USAGES + 3
        );
    }

    #[test]
    fn a_limit_names_its_counter_once() {
        let limit = Limit::new(Policy::per_day("key-day", 5), "key:key_a");
        assert_eq!(limit.counter_name(), "key-day:key:key_a");
        let now = at(86_400 + 5);
        assert_eq!(limit.counter_at(now).to_counter(), limit.counter(now));
        assert_eq!(limit.counter_at(now).name, limit.counter_name());
        assert_eq!(
            policy_header([limit.policy(), &Policy::per_minute("org-minute", 0)]),
            "\"key-day\";q=5;w=86400, \"org-minute\";q=0;w=60"
        );
    }
}
