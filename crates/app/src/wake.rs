//! What the background workers sleep until: their own next due time, brought forward by
//! work this replica adds and by the storage's change notifications, so that an idle
//! replica does not ask the database every few hundred milliseconds whether anything is due.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use sacp_ports::{ChangeListener, StorageChange};
use tokio::sync::Notify;

use crate::Keys;

/// The earliest time a worker was told work falls due, and a bell that rings when that
/// time moves earlier.
#[derive(Debug, Default)]
pub struct Alarm {
    earliest: Mutex<Option<DateTime<Utc>>>,
    bell: Notify,
}

impl Alarm {
    /// Work falls due at `at`: the worker wakes by then (at once if it sleeps longer).
    pub fn due_at(&self, at: DateTime<Utc>) {
        let mut earliest = self
            .earliest
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if earliest.is_none_or(|current| at < current) {
            *earliest = Some(at);
            drop(earliest);
            self.bell.notify_one();
        }
    }

    /// The earliest time told since the last call (and forgets it).
    pub fn take(&self) -> Option<DateTime<Utc>> {
        self.earliest
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }

    /// Resolves when an earlier time is told (or was told since the last wait).
    pub async fn rung(&self) {
        self.bell.notified().await;
    }
}

/// The alarms of the gateway's workers.
#[derive(Debug, Default)]
pub struct Alarms {
    /// The payment driver's.
    pub authorizations: Alarm,
    /// The step-up watcher's.
    pub step_ups: Alarm,
}

/// Acts on the storage's change notifications: drops stale keys, wakes the workers.
pub(crate) struct Changes {
    pub(crate) keys: Keys,
    pub(crate) alarms: Arc<Alarms>,
    pub(crate) clock: Arc<dyn sacp_ports::Clock>,
}

impl ChangeListener for Changes {
    fn changed(&self, change: StorageChange) {
        match change {
            StorageChange::Key(id) => self.keys.forget(&id),
            StorageChange::AuthorizationDue(at) => self.alarms.authorizations.due_at(at),
            StorageChange::StepUpDue(at) => self.alarms.step_ups.due_at(at),
            StorageChange::Missed => {
                self.keys.forget_all();
                let now = self.clock.now();
                self.alarms.authorizations.due_at(now);
                self.alarms.step_ups.due_at(now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
    }

    #[tokio::test]
    async fn an_alarm_keeps_the_earliest_time_and_rings_only_when_it_moves_earlier() {
        let alarm = Alarm::default();
        alarm.due_at(at(10));
        alarm.due_at(at(20));
        alarm.due_at(at(5));
        // The bell rang (a permit is stored for the next wait).
        tokio::time::timeout(std::time::Duration::from_secs(1), alarm.rung())
            .await
            .expect("rung");
        assert_eq!(alarm.take(), Some(at(5)));
        assert_eq!(alarm.take(), None, "taken once");
        alarm.due_at(at(7));
        alarm.due_at(at(9));
        assert_eq!(alarm.take(), Some(at(7)));
    }
}
