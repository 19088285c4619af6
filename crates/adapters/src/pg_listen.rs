//! Hears the changes other replicas make (`LISTEN sacp_changes`) and hands them to a
//! [`ChangeListener`].
//!
//! The notifications are sent by triggers (migration `000009_change_notifications`) from the
//! transaction that makes the change, so a change made through another path (an operator's
//! `sacp-gateway keys revoke`, another replica) is heard too. A key edited by hand in SQL
//! without bumping its `version` is not announced; the key cache's one-second age bound
//! covers that. One dedicated connection, outside the pool, on a task of its own: it hands
//! over what the server pushed as it arrives, without sending anything, so listening costs
//! the database no transaction. A lost connection is opened again (with a back-off), and
//! every (re)connection is announced as [`StorageChange::Missed`]: what was sent while
//! nobody listened is then caught up on.

use std::future::poll_fn;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use futures_core::Stream;
use sacp_domain::ApiKeyId;
use sacp_ports::{ChangeListener, StorageChange};

/// The channel the triggers notify on.
pub const CHANNEL: &str = "sacp_changes";

/// How often the connection is checked when nothing arrives: a connection that died without
/// the server closing it (a network cut) is noticed within this.
const CHECK_EVERY: Duration = Duration::from_secs(30);
/// Longest wait between attempts to connect again.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The listening task; it stops when this is dropped.
#[derive(Debug)]
pub struct ChangeFeed {
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for ChangeFeed {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Starts listening on `database_url`, telling `listener` of every change, on a task of the
/// current tokio runtime.
pub fn listen(database_url: &str, listener: Arc<dyn ChangeListener>) -> ChangeFeed {
    let url = database_url.to_owned();
    let task = match tokio::runtime::Handle::try_current() {
        Ok(runtime) => Some(runtime.spawn(run(url, listener))),
        Err(error) => {
            // Without the task, caches fall back to their age limit and the driver to its
            // fallback scan: slower to hear of changes, never wrong.
            tracing::error!(%error, "cannot start the change listener");
            None
        }
    };
    ChangeFeed { task }
}

async fn run(url: String, listener: Arc<dyn ChangeListener>) {
    let mut backoff = Duration::from_millis(100);
    let mut was_lost = false;
    loop {
        match open(&url).await {
            Ok(mut conn) => {
                if was_lost {
                    tracing::info!("change listener connected again");
                }
                backoff = Duration::from_millis(100);
                listener.changed(StorageChange::Missed);
                let error = hear(&mut conn, listener.as_ref()).await;
                tracing::warn!(%error, "change listener lost its connection; reconnecting");
                was_lost = true;
            }
            Err(error) => {
                if !was_lost {
                    tracing::warn!(%error, "change listener cannot connect; retrying");
                }
                was_lost = true;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

async fn open(url: &str) -> Result<AsyncPgConnection, String> {
    let mut conn = crate::pg_pool::establish(url)
        .await
        .map_err(|e| e.to_string())?;
    diesel::sql_query(format!("LISTEN {CHANNEL}"))
        .execute(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    Ok(conn)
}

/// Hands over notifications as they arrive, until the connection fails (the error is
/// returned). The server pushes them: listening sends nothing, and costs the database no
/// transaction, except a check of the connection after [`CHECK_EVERY`] of silence.
async fn hear(conn: &mut AsyncPgConnection, listener: &dyn ChangeListener) -> String {
    loop {
        // The stream borrows the connection; what arrives while it is checked waits in the
        // connection's queue for the next stream.
        let next = {
            let mut notifications = pin!(conn.notifications_stream());
            tokio::time::timeout(
                CHECK_EVERY,
                poll_fn(|cx| notifications.as_mut().poll_next(cx)),
            )
            .await
        };
        match next {
            Ok(Some(Ok(notification))) => {
                if let Some(change) = parse(&notification.payload) {
                    listener.changed(change);
                }
            }
            Ok(Some(Err(error))) => return error.to_string(),
            Ok(None) => return "the notification stream ended".to_owned(),
            Err(_silence) => {
                if let Err(error) = diesel::sql_query("SELECT 1").execute(conn).await {
                    return error.to_string();
                }
            }
        }
    }
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
