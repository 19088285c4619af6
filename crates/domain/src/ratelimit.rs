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

use chrono::{DateTime, Utc};

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

/// A moment as limits count time: its Unix second, and whether it is past that second's
/// start. Read once per request from the clock; windows and resets are then integer
/// arithmetic on it, with no calendar (windows are aligned on the Unix epoch, and a UTC day
/// is 86,400 of its seconds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Moment {
    /// Seconds since the Unix epoch (a leap second counts as the second before it).
    pub second: i64,
    /// Whether the moment is past the start of `second` (some nanoseconds into it).
    pub into_second: bool,
}

impl Moment {
    /// The moment `at`.
    pub fn of(at: DateTime<Utc>) -> Moment {
        Moment {
            second: at.timestamp(),
            into_second: at.timestamp_subsec_nanos() > 0,
        }
    }
}

/// A [`Counter`] borrowing its name from its [`Limit`], its window in Unix seconds: what
/// storage that counts in this process is asked with, without a name being copied or a
/// time being built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct CounterAt<'a> {
    /// Unique name: policy, subject.
    pub name: &'a str,
    /// Unix second the window starts at (the window holds the moment it was made for).
    pub window_start: i64,
    /// Unix second the window ends at, when the counter may be forgotten.
    pub window_end: i64,
}

impl CounterAt<'_> {
    /// The same counter owning its name, its window as times.
    pub fn to_counter(&self) -> Counter {
        Counter {
            name: self.name.to_owned(),
            window_start: time_of(self.window_start),
            window_end: time_of(self.window_end),
        }
    }
}

/// The time of a Unix second; past the range of times, the last one (a window that would
/// end beyond the year 262,000 ends there).
fn time_of(second: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(second, 0).unwrap_or(if second < 0 {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    })
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
        self.counter_at(Moment::of(now)).to_counter()
    }

    /// [`Limit::counter`] at a [`Moment`], borrowing the name: the window containing it is
    /// `now`'s second moved back to a multiple of the window's width, and that plus the
    /// width.
    pub fn counter_at(&self, now: Moment) -> CounterAt<'_> {
        let width = i64::from(self.policy.window_secs.max(1));
        let window_start = now.second - now.second.rem_euclid(width);
        CounterAt {
            name: &self.counter_name,
            window_start,
            window_end: window_start.saturating_add(width),
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
        let now = Moment::of(now);
        Usage::at(limit.policy, count, limit.counter_at(now).window_end, now)
    }

    /// [`Usage::new`] of a limit of `policy` whose window at `now` ends at the Unix second
    /// `window_end` (its [`CounterAt`]'s), without working the window out again.
    pub fn at(policy: Policy, count: u64, window_end: i64, now: Moment) -> Usage {
        // Whole seconds from `now` to the window's end (which falls on a second), as
        // `(window_end - now).num_seconds()` counts them.
        let reset = (window_end - now.second - i64::from(now.into_second)).max(1);
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
            sink.put_number(usage.remaining());
            sink.put(";t=");
            sink.put_number(usage.reset_secs);
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
        text.put_number(u64::from(policy.limit));
        text.put(";w=");
        text.put_number(u64::from(policy.window_secs));
    }
    text
}

/// Where header text is written.
trait Sink {
    fn put(&mut self, text: &str);

    /// Writes `value` in decimal.
    fn put_number(&mut self, value: u64);
}

impl Sink for String {
    fn put(&mut self, text: &str) {
        self.push_str(text);
    }

    fn put_number(&mut self, value: u64) {
        let mut digits = [0u8; MAX_DIGITS];
        let digits = digits.get_mut(..decimal_width(value)).unwrap_or_default();
        write_decimal(digits, value);
        // Only ASCII digits were written.
        self.push_str(std::str::from_utf8(digits).unwrap_or("0"));
    }
}

/// A caller's buffer being filled; `full` once something did not fit.
struct Cursor<'a> {
    out: &'a mut [u8],
    len: usize,
    full: bool,
}

impl Cursor<'_> {
    fn put_bytes(&mut self, bytes: &[u8]) {
        match self.out.get_mut(self.len..self.len + bytes.len()) {
            Some(slot) => {
                slot.copy_from_slice(bytes);
                self.len += bytes.len();
            }
            None => self.full = true,
        }
    }
}

impl Sink for Cursor<'_> {
    fn put(&mut self, text: &str) {
        self.put_bytes(text.as_bytes());
    }

    /// Digits are written in place, as bytes: they are ASCII, and checking them as UTF-8,
    /// or writing them elsewhere first and copying them, was a visible share of writing
    /// the header.
    fn put_number(&mut self, value: u64) {
        let width = decimal_width(value);
        match self.out.get_mut(self.len..self.len + width) {
            Some(slot) => {
                write_decimal(slot, value);
                self.len += width;
            }
            None => self.full = true,
        }
    }
}

/// Most decimal digits of a `u64`.
const MAX_DIGITS: usize = 20;

/// How many decimal digits `value` has.
fn decimal_width(value: u64) -> usize {
    value.checked_ilog10().map_or(1, |log| log as usize + 1)
}

/// Writes `value` in decimal over the whole of `slot` (as wide as [`decimal_width`]),
/// without `core::fmt`.
fn write_decimal(slot: &mut [u8], mut value: u64) {
    for digit in slot.iter_mut().rev() {
        // The remainder is a single digit: nothing is lost.
        *digit = b'0' + u8::try_from(value % 10).unwrap_or(0);
        value /= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

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
    fn numbers_are_written_in_full_at_every_width() {
        let mut values = vec![0, 1, 9, 10, 99, 100, u64::MAX - 1, u64::MAX];
        values.extend((1..20u32).flat_map(|p| [10u64.pow(p) - 1, 10u64.pow(p)]));
        for value in values {
            let mut text = String::new();
            text.put_number(value);
            assert_eq!(text, value.to_string());
            let mut out = [0u8; MAX_DIGITS + 1];
            let mut cursor = Cursor {
                out: &mut out,
                len: 1,
                full: false,
            };
            cursor.put_number(value);
            assert!(!cursor.full);
            let written = cursor.len;
            assert_eq!(&out[1..written], value.to_string().as_bytes());
        }
        let mut tight = [0u8; 2];
        let mut cursor = Cursor {
            out: &mut tight,
            len: 0,
            full: false,
        };
        cursor.put_number(100);
        assert!(cursor.full, "three digits do not fit in two");
    }

    #[test]
    fn a_limit_names_its_counter_once() {
        let limit = Limit::new(Policy::per_day("key-day", 5), "key:key_a");
        assert_eq!(limit.counter_name(), "key-day:key:key_a");
        let now = at(86_400 + 5);
        let moment = Moment::of(now);
        assert_eq!(limit.counter_at(moment).to_counter(), limit.counter(now));
        assert_eq!(limit.counter_at(moment).name, limit.counter_name());
        assert_eq!(
            policy_header([limit.policy(), &Policy::per_minute("org-minute", 0)]),
            "\"key-day\";q=5;w=86400, \"org-minute\";q=0;w=60"
        );
    }
}
