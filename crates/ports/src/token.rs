//! Bearer credentials passed between the gateway and the upstreams.

use std::fmt;
use std::sync::OnceLock;

use secrecy::{ExposeSecret, SecretString};

/// A bearer credential: a user's wallet access token, or a payment token. Prints as `***`
/// so that it cannot reach a log by accident.
#[derive(Clone)]
pub struct BearerToken(SecretString, OnceLock<String>);

impl BearerToken {
    /// Wraps a token.
    pub fn new(token: impl Into<String>) -> BearerToken {
        BearerToken(SecretString::from(token.into()), OnceLock::new())
    }

    /// Notes whom the token acts for, once introspection has told (for the audit log).
    pub fn note_subject(&self, subject: &str) {
        let _ = self.1.set(subject.to_owned());
    }

    /// The end user the token acts for, if introspection has told.
    pub fn subject(&self) -> Option<&str> {
        self.1.get().map(String::as_str)
    }

    /// The token itself, for the request that carries it.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(***)")
    }
}

impl PartialEq for BearerToken {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for BearerToken {}
