//! Bearer credentials passed between the gateway and the upstreams.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

/// A bearer credential: a user's wallet access token, or a payment token. Prints as `***`
/// so that it cannot reach a log by accident.
#[derive(Clone)]
pub struct BearerToken(SecretString);

impl BearerToken {
    /// Wraps a token.
    pub fn new(token: impl Into<String>) -> BearerToken {
        BearerToken(SecretString::from(token.into()))
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
