//! Hears the changes other replicas make (`LISTEN sacp_changes`) and hands them to a
//! [`ChangeListener`].
//!
//! The notifications are sent by triggers (migration `000009_change_notifications`) from the
//! transaction that makes the change, so a change made through another path (an operator's
//! `sacp-gateway keys revoke`, another replica) is heard too. A key edited by hand in SQL
//! without bumping its `version` is not announced; the key cache's one-second age bound
//! covers that. One dedicated connection,
//! outside the pool, on a thread of its own: it reads what the server pushed every
//! [`POLL`] without sending anything, so listening costs the database no transaction. A lost
//! connection is opened again (with a back-off), and every (re)connection is announced as
//! [`StorageChange::Missed`]: what was sent while nobody listened is then caught up on.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use diesel::pg::PgConnection;
use diesel::{Connection, RunQueryDsl};
use sacp_domain::ApiKeyId;
use sacp_ports::{ChangeListener, StorageChange};

/// The channel the triggers notify on.
pub const CHANNEL: &str = "sacp_changes";

/// How often pushed notifications are read (the delay a change may take to be acted on).
const POLL: Duration = Duration::from_millis(50);
/// How often the connection is checked when nothing arrives: a connection that died without
/// the server closing it (a network cut) is noticed within this.
const CHECK_EVERY: Duration = Duration::from_secs(30);
/// Longest wait between attempts to connect again.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The listening thread; it stops when this is dropped.
#[derive(Debug)]
pub struct ChangeFeed {
    stop: Arc<AtomicBool>,
}

impl Drop for ChangeFeed {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Starts listening on `database_url`, telling `listener` of every change.
pub fn listen(database_url: &str, listener: Arc<dyn ChangeListener>) -> ChangeFeed {
    let stop = Arc::new(AtomicBool::new(false));
    let url = database_url.to_owned();
    let stopping = stop.clone();
    let spawned = std::thread::Builder::new()
        .name("sacp-changes".into())
        .spawn(move || run(&url, listener.as_ref(), &stopping));
    if let Err(error) = spawned {
        // Without the thread, caches fall back to their age limit and the driver to its
        // fallback scan: slower to hear of changes, never wrong.
        tracing::error!(%error, "cannot start the change listener");
    }
    ChangeFeed { stop }
}

fn run(url: &str, listener: &dyn ChangeListener, stop: &AtomicBool) {
    let mut backoff = Duration::from_millis(100);
    let mut was_lost = false;
    while !stop.load(Ordering::Relaxed) {
        match open(url) {
            Ok(mut conn) => {
                if was_lost {
                    tracing::info!("change listener connected again");
                }
                backoff = Duration::from_millis(100);
                listener.changed(StorageChange::Missed);
                let error = hear(&mut conn, listener, stop);
                if let Some(error) = error {
                    tracing::warn!(%error, "change listener lost its connection; reconnecting");
                    was_lost = true;
                }
            }
            Err(error) => {
                if !was_lost {
                    tracing::warn!(%error, "change listener cannot connect; retrying");
                }
                was_lost = true;
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

fn open(url: &str) -> Result<PgConnection, diesel::ConnectionError> {
    let mut conn = PgConnection::establish(url)?;
    diesel::sql_query(format!("LISTEN {CHANNEL}"))
        .execute(&mut conn)
        .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))?;
    Ok(conn)
}

/// Reads notifications until `stop` or an error (returned).
fn hear(
    conn: &mut PgConnection,
    listener: &dyn ChangeListener,
    stop: &AtomicBool,
) -> Option<String> {
    let mut checked = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let mut heard = false;
        for notification in conn.notifications_iter() {
            match notification {
                Ok(notification) => {
                    heard = true;
                    if let Some(change) = parse(&notification.payload) {
                        listener.changed(change);
                    }
                }
                Err(error) => return Some(error.to_string()),
            }
        }
        if heard {
            checked = Instant::now();
        } else if checked.elapsed() >= CHECK_EVERY {
            if let Err(error) = diesel::sql_query("SELECT 1").execute(conn) {
                return Some(error.to_string());
            }
            checked = Instant::now();
        }
        std::thread::sleep(POLL);
    }
    None
}

/// The change a notification's payload announces; `None` for one this version does not know.
pub fn parse(payload: &str) -> Option<StorageChange> {
    let (kind, value) = payload.split_once(':')?;
    match kind {
        "key" => ApiKeyId::parse(value).ok().map(StorageChange::Key),
        "authorization" => epoch(value).map(StorageChange::AuthorizationDue),
        "step_up" => epoch(value).map(StorageChange::StepUpDue),
        _ => None,
    }
}

/// PostgreSQL's `extract(epoch …)` text (`1767225600.123456`), to the microsecond, rounded
/// down (waking a little early is harmless, late is not).
fn epoch(text: &str) -> Option<DateTime<Utc>> {
    let (seconds, fraction) = text.split_once('.').unwrap_or((text, ""));
    let seconds: i64 = seconds.parse().ok()?;
    if fraction.len() > 9 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let micros: i64 = format!("{fraction:0<6}").get(..6)?.parse().ok()?;
    let micros = if seconds < 0 && micros > 0 {
        seconds.checked_mul(1_000_000)?.checked_sub(micros)?
    } else {
        seconds.checked_mul(1_000_000)?.checked_add(micros)?
    };
    DateTime::from_timestamp_micros(micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_name_the_change() {
        let at = DateTime::from_timestamp_micros(1_767_225_600_123_456).unwrap();
        assert_eq!(
            parse("authorization:1767225600.123456"),
            Some(StorageChange::AuthorizationDue(at))
        );
        assert_eq!(
            parse("step_up:1767225600.1234569"),
            Some(StorageChange::StepUpDue(at)),
            "beyond microseconds rounds down"
        );
        assert_eq!(
            parse("authorization:1767225600"),
            Some(StorageChange::AuthorizationDue(
                DateTime::from_timestamp(1_767_225_600, 0).unwrap()
            ))
        );
        let key = ApiKeyId::from_bits([7; 16]);
        assert_eq!(
            parse(&format!("key:{key}")),
            Some(StorageChange::Key(key.clone()))
        );
        assert_eq!(parse("key:not-a-key-id"), None);
        assert_eq!(parse("authorization:soon"), None);
        assert_eq!(parse("authorization:1.2e9"), None);
        assert_eq!(parse("something:else"), None);
        assert_eq!(parse("no separator"), None);
    }
}
