//! The current time, injected.

use std::cell::Cell;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};

/// Source of the current time. Use cases and workers take one so that tests control time.
pub trait Clock: Send + Sync {
    /// The current instant.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        match SystemTime::now().duration_since(SystemTime::UNIX_EPOCH) {
            Ok(since_epoch) => time_since_epoch(since_epoch),
            // A system clock set before 1970.
            Err(_) => Utc::now(),
        }
    }
}

thread_local! {
    /// The last day this thread's clock read fell on, with its date: a request reads the
    /// clock several times, and working a date out of a day number is most of the cost of a
    /// read.
    static LAST_DAY: Cell<Option<(u64, NaiveDate)>> = const { Cell::new(None) };
}

/// The time `since_epoch` after the Unix epoch; the same as
/// `DateTime::from_timestamp(secs, nanos)`, with the date of the day remembered.
fn time_since_epoch(since_epoch: Duration) -> DateTime<Utc> {
    let seconds = since_epoch.as_secs();
    let day = seconds / 86_400;
    let in_day = u32::try_from(seconds % 86_400).unwrap_or(0);
    let date = match LAST_DAY.get() {
        Some((known, date)) if known == day => Some(date),
        _ => {
            let date = i64::try_from(seconds)
                .ok()
                .and_then(|s| DateTime::from_timestamp(s, 0))
                .map(|t| t.date_naive());
            if let Some(date) = date {
                LAST_DAY.set(Some((day, date)));
            }
            date
        }
    };
    date.zip(NaiveTime::from_num_seconds_from_midnight_opt(
        in_day,
        since_epoch.subsec_nanos(),
    ))
    .map(|(date, time)| date.and_time(time).and_utc())
    .unwrap_or_else(Utc::now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remembered_day_gives_the_same_time_as_the_calendar() {
        let seconds = [
            0,
            1,
            86_399,
            86_400,
            86_401,
            951_782_399,
            951_868_800,
            1_798_761_599,
            1_798_761_600,
            4_102_444_800,
        ];
        for nanos in [0, 1, 999_999_999] {
            // In order, then back across a day, so that a remembered day is both reused and
            // replaced.
            for &second in seconds.iter().chain(seconds.iter().rev()) {
                let since = Duration::new(second, nanos);
                let expected =
                    DateTime::from_timestamp(i64::try_from(second).unwrap(), nanos).unwrap();
                assert_eq!(time_since_epoch(since), expected, "{second}.{nanos}");
            }
        }
    }

    #[test]
    fn the_system_clock_reads_the_current_time() {
        let before = Utc::now();
        let read = SystemClock.now();
        let after = Utc::now();
        assert!(before <= read && read <= after);
    }
}
