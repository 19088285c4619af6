//! Audit events: who did what to which resource, and how it ended. Never a
//! secret, token or device code: keys are named by id, resources by their public id.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::ids::ApiKeyId;

/// How an audited request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditOutcome {
    /// Done (2xx).
    Success,
    /// Refused by authentication or authorization (401, 403).
    Denied,
    /// Refused or failed otherwise (other 4xx, 5xx).
    Failed,
}

impl AuditOutcome {
    /// The outcome of an HTTP status.
    pub fn of_status(status: u16) -> AuditOutcome {
        match status {
            200..=399 => AuditOutcome::Success,
            401 | 403 => AuditOutcome::Denied,
            _ => AuditOutcome::Failed,
        }
    }

    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Success => "success",
            AuditOutcome::Denied => "denied",
            AuditOutcome::Failed => "failed",
        }
    }

    /// Parses a wire name.
    pub fn parse(text: &str) -> Option<AuditOutcome> {
        [
            AuditOutcome::Success,
            AuditOutcome::Denied,
            AuditOutcome::Failed,
        ]
        .into_iter()
        .find(|o| o.as_str() == text)
    }
}

/// One audited action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEvent {
    /// When it was answered.
    pub at: DateTime<Utc>,
    /// The request id (`X-Request-Id`).
    pub request_id: String,
    /// The integration key, when one was presented (by id, never the secret).
    pub key_id: Option<ApiKeyId>,
    /// The key's organisation, once authenticated.
    pub org: Option<String>,
    /// The end user, when a user token was introspected.
    pub subject: Option<String>,
    /// What was attempted: method and route, e.g. `POST /checkout/{id}/complete`.
    pub action: String,
    /// The resource acted on (a checkout, key or request id).
    pub resource: Option<String>,
    /// How it ended.
    pub outcome: AuditOutcome,
    /// The HTTP status answered.
    pub status: u16,
    /// For refusals counted together: who was refused — `key:<id>` for a key that
    /// authenticated, else `ip:<address>` — and `at` is the start of the minute. `None` for
    /// an event of one request.
    pub source: Option<String>,
    /// How many requests this event stands for: 1, or the refusals of one source, action and
    /// status in one minute.
    pub count: u64,
}

/// Longest text an audit event keeps from a caller (a resource id, a subject).
pub const MAX_AUDIT_TEXT: usize = 128;

/// `text` as an audit event keeps it: control characters (NUL, escapes, line breaks) removed
/// and at most [`MAX_AUDIT_TEXT`] characters, so what a caller put in a path or an argument
/// can neither break the storage nor a terminal that shows the log.
pub fn printable(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .take(MAX_AUDIT_TEXT)
        .collect()
}

impl AuditEvent {
    /// The event with every caller-given text made [`printable`].
    pub fn cleaned(mut self) -> AuditEvent {
        self.request_id = printable(&self.request_id);
        self.resource = self.resource.as_deref().map(printable);
        self.subject = self.subject.as_deref().map(printable);
        self.source = self.source.as_deref().map(printable);
        self
    }
}

/// Requests of one key to one route with one status during one minute (traffic inspection).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrafficCount {
    /// Start of the minute (UTC).
    pub minute: DateTime<Utc>,
    /// The key (`None` for calls without a valid key).
    pub key_id: Option<ApiKeyId>,
    /// Method and route pattern, e.g. `GET /products/{id}`.
    pub route: String,
    /// HTTP status answered.
    pub status: u16,
    /// How many.
    pub count: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_text_keeps_no_control_characters_and_is_bounded() {
        assert_eq!(printable("cs_\0x\u{1b}[31m\nred"), "cs_x[31mred");
        assert_eq!(printable(&"é".repeat(500)).chars().count(), MAX_AUDIT_TEXT);
        assert_eq!(printable("cs_ordinary-id"), "cs_ordinary-id");
    }
}
