//! Idempotent writes (draft-ietf-httpapi-idempotency-key-header): the `Idempotency-Key`
//! value, the fingerprint of a request body, and what a retried request gets.

use chrono::{DateTime, Duration, DurationRound, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// How long a finished request's answer is kept for replay.
pub const RETENTION: Duration = Duration::hours(24);

/// How long a request may stay in flight before a retry may take it over (the first one is
/// presumed dead: every request ends, by answer or timeout, well within this).
pub const IN_FLIGHT_LEASE: Duration = Duration::seconds(60);

/// Longest key accepted.
pub const MAX_KEY_LEN: usize = 255;

/// An `Idempotency-Key` header value, unquoted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

/// Why a header value is not a usable key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdempotencyKeyError {
    /// Empty, or only quotes.
    #[error("the Idempotency-Key header is empty")]
    Empty,
    /// More than [`MAX_KEY_LEN`] characters.
    #[error("the Idempotency-Key header is longer than 255 characters")]
    TooLong,
    /// Characters outside printable ASCII, or a stray quote.
    #[error(
        "the Idempotency-Key header must be printable ASCII, bare or as a quoted string (e.g. \"8e03978e-40d5-43e8-bc93-6894a57f9324\")"
    )]
    Malformed,
}

impl IdempotencyKey {
    /// Parses a header value: a structured-field string (`"..."`) or a bare token.
    pub fn parse(raw: &str) -> Result<IdempotencyKey, IdempotencyKeyError> {
        let raw = raw.trim();
        let inner = match raw.strip_prefix('"') {
            Some(rest) => rest
                .strip_suffix('"')
                .ok_or(IdempotencyKeyError::Malformed)?,
            None => raw,
        };
        if inner.is_empty() {
            return Err(IdempotencyKeyError::Empty);
        }
        if inner.chars().count() > MAX_KEY_LEN {
            return Err(IdempotencyKeyError::TooLong);
        }
        let quoted = inner.len() != raw.len();
        let allowed = |c: char| match c {
            '"' | '\\' => false,
            ' ' => quoted,
            c => c.is_ascii_graphic(),
        };
        if !inner.chars().all(allowed) {
            return Err(IdempotencyKeyError::Malformed);
        }
        Ok(IdempotencyKey(inner.to_owned()))
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// SHA-256 (hex) of a request body in canonical form: JSON with object members sorted and
/// no insignificant whitespace, so `{"a":1, "b":2}` and `{"b":2,"a":1}` match; any other
/// body is hashed as sent.
pub fn fingerprint(body: &[u8]) -> String {
    let mut hasher = Sha256::new();
    match serde_json::from_slice::<Value>(body) {
        Ok(value) => {
            let mut canonical = String::with_capacity(body.len());
            write_canonical(&value, &mut canonical);
            hasher.update(b"json:");
            hasher.update(canonical.as_bytes());
        }
        Err(_) => {
            hasher.update(b"raw:");
            hasher.update(body);
        }
    }
    // Two digits a byte by table: `write!` per byte went through the formatting machinery.
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(64);
    for byte in hasher.finalize() {
        hex.push(char::from(DIGITS[usize::from(byte >> 4)]));
        hex.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
    hex
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(members) => {
            let mut sorted: Vec<_> = members.iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (name, member)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(name.clone()).to_string());
                out.push(':');
                write_canonical(member, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// Which request a key belongs to: keys are scoped to the caller, method and path, so two
/// integrations (or two routes) never share one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyScope {
    /// The caller: integration key id, or `admin` for the operator token.
    pub caller: String,
    /// HTTP method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// The client's key.
    pub key: IdempotencyKey,
}

/// A scope held by one request. The claim's time tells it apart from a later request that
/// took the scope over once the lease ran out: only the holder may finish or abandon it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The scope held.
    pub scope: IdempotencyScope,
    /// When it was claimed, to the microsecond (what storage keeps).
    pub claimed_at: DateTime<Utc>,
}

impl Claim {
    /// A claim of `scope` taken at `now`.
    pub fn new(scope: IdempotencyScope, now: DateTime<Utc>) -> Claim {
        let claimed_at = now.duration_trunc(Duration::microseconds(1)).unwrap_or(now);
        Claim { scope, claimed_at }
    }
}

/// An answer kept for replay. Never holds a secret: answers carrying one are stored without it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    /// HTTP status (never 5xx).
    pub status: u16,
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// `Location`, for created resources.
    pub location: Option<String>,
    /// The body.
    pub body: Vec<u8>,
}

/// The answer to a claimed scope, to be stored together with the business change it reports
/// (one transaction where the change is local).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The claim it ends.
    pub claim: Claim,
    /// What to replay.
    pub response: StoredResponse,
    /// When it was answered (the record expires [`RETENTION`] later).
    pub at: DateTime<Utc>,
}

/// What a request carrying an idempotency key may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// First time (or the previous holder expired or gave up): run it, then finish or abandon
    /// this claim.
    Started(Claim),
    /// Already answered: replay this.
    Replay(StoredResponse),
    /// The key was used with a different body.
    Mismatch,
    /// The first request with this key is still running; retry after this many seconds.
    InFlight {
        /// Seconds until the first request's lease ends.
        retry_after_secs: u64,
    },
}

/// Seconds until an in-flight lease taken at `locked_at` ends, rounded up so that a client
/// waiting that long finds it ended (at least 1).
pub fn lease_left(locked_at: DateTime<Utc>, now: DateTime<Utc>) -> u64 {
    let millis = (locked_at + IN_FLIGHT_LEASE - now)
        .num_milliseconds()
        .max(1);
    u64::try_from(millis).unwrap_or(1).div_ceil(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_may_be_bare_or_quoted() {
        assert_eq!(
            IdempotencyKey::parse("abc-123").unwrap().as_str(),
            "abc-123"
        );
        assert_eq!(
            IdempotencyKey::parse("\"8e03978e-40d5\"").unwrap().as_str(),
            "8e03978e-40d5"
        );
        assert_eq!(
            IdempotencyKey::parse("\"with space\"").unwrap().as_str(),
            "with space"
        );
        assert_eq!(IdempotencyKey::parse(""), Err(IdempotencyKeyError::Empty));
        assert_eq!(
            IdempotencyKey::parse("\"\""),
            Err(IdempotencyKeyError::Empty)
        );
        assert_eq!(
            IdempotencyKey::parse("\"open"),
            Err(IdempotencyKeyError::Malformed)
        );
        assert_eq!(
            IdempotencyKey::parse("bare space"),
            Err(IdempotencyKeyError::Malformed)
        );
        assert_eq!(
            IdempotencyKey::parse("caf\u{e9}"),
            Err(IdempotencyKeyError::Malformed)
        );
        assert!(IdempotencyKey::parse(&"k".repeat(255)).is_ok());
        assert_eq!(
            IdempotencyKey::parse(&"k".repeat(256)),
            Err(IdempotencyKeyError::TooLong)
        );
    }

    #[test]
    fn fingerprints_ignore_member_order_and_whitespace_only() {
        let a = fingerprint(br#"{"items":[{"product_id":"p1","quantity":2}],"note":"x"}"#);
        let b = fingerprint(
            b"{ \"note\": \"x\",\n \"items\": [ {\"quantity\":2, \"product_id\":\"p1\"} ] }",
        );
        assert_eq!(a, b);
        assert_eq!(a.len(), 64);
        assert_ne!(
            a,
            fingerprint(br#"{"items":[{"product_id":"p1","quantity":3}],"note":"x"}"#)
        );
        assert_ne!(fingerprint(br#"[1,2]"#), fingerprint(br#"[2,1]"#));
        assert_eq!(fingerprint(b""), fingerprint(b""));
        assert_ne!(fingerprint(b"not json"), fingerprint(b"not  json"));
        // Stored fingerprints keep matching: lowercase hex of SHA-256 over the tagged text.
        let expected = |tagged: &[u8]| -> String {
            Sha256::digest(tagged)
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect()
        };
        assert_eq!(fingerprint(b"not json"), expected(b"raw:not json"));
        assert_eq!(
            fingerprint(br#"{"b":[1], "a":2}"#),
            expected(br#"json:{"a":2,"b":[1]}"#)
        );
    }

    #[test]
    fn an_in_flight_lease_tells_how_long_to_wait() {
        let t0 = DateTime::<Utc>::from_timestamp(1_000, 0).unwrap();
        assert_eq!(lease_left(t0, t0), 60);
        assert_eq!(lease_left(t0, t0 + Duration::seconds(59)), 1);
        assert_eq!(lease_left(t0, t0 + Duration::milliseconds(1_500)), 59);
        assert_eq!(lease_left(t0, t0 + Duration::seconds(90)), 1);
    }
}
