//! Opaque, unguessable, prefixed identifiers.
//!
//! Each id is a fixed prefix (`cs_`, `par_`) followed by 128 random bits in lowercase
//! base32 (26 characters). The random source is injected so that the domain never touches
//! the operating system and tests can be deterministic.

use std::fmt;

/// Source of random bytes. Implementations must be cryptographically secure in production
/// (ids are bearer-like capabilities: knowing one is enough to read a checkout).
pub trait RandomSource: Send + Sync {
    /// Fills `dest` entirely with random bytes.
    fn fill_bytes(&self, dest: &mut [u8]);
}

/// Number of random bytes in every id.
pub const ID_RANDOM_BYTES: usize = 16;
const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
/// Length of the encoded random part: ceil(128 / 5).
const ENCODED_LEN: usize = 26;

fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(ENCODED_LEN);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
        buffer &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// Lowercase base32 (RFC 4648 alphabet, no padding) of `bytes`.
pub fn base32(bytes: &[u8]) -> String {
    encode(bytes)
}

/// Whether `text` uses only the base32 alphabet of [`base32`].
pub fn is_base32(text: &str) -> bool {
    text.bytes().all(|b| ALPHABET.contains(&b))
}

/// Error returned when text is not an id of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid {kind} id")]
pub struct InvalidId {
    /// The kind of id that was expected, e.g. `checkout`.
    pub kind: &'static str,
}

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The prefix every id of this kind starts with.
            pub const PREFIX: &'static str = $prefix;

            /// A new id with 128 bits from `random`.
            pub fn generate(random: &dyn RandomSource) -> Self {
                let mut bytes = [0u8; ID_RANDOM_BYTES];
                random.fill_bytes(&mut bytes);
                Self(format!("{}{}", $prefix, encode(&bytes)))
            }

            /// Parses an id received from a client or from storage.
            pub fn parse(text: &str) -> Result<Self, InvalidId> {
                let valid = text.strip_prefix($prefix).is_some_and(|rest| {
                    rest.len() == ENCODED_LEN && rest.bytes().all(|b| ALPHABET.contains(&b))
                });
                if valid {
                    Ok(Self(text.to_owned()))
                } else {
                    Err(InvalidId { kind: $kind })
                }
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <String as serde::Deserialize>::deserialize(deserializer)?;
                Self::parse(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

prefixed_id!(
    /// The gateway's own checkout id (`cs_...`), distinct from the store's session id.
    CheckoutId,
    "cs_",
    "checkout"
);
prefixed_id!(
    /// An integration API key (`key_...`); the key's public handle, not its secret.
    ApiKeyId,
    "key_",
    "API key"
);
prefixed_id!(
    /// A payment authorization request (`par_...`): the handle agents poll and the QR code
    /// URL carries. Never the wallet's device code.
    PaymentAuthorizationId,
    "par_",
    "payment authorization"
);

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU8, Ordering};

    struct Counter(AtomicU8);
    impl RandomSource for Counter {
        fn fill_bytes(&self, dest: &mut [u8]) {
            for byte in dest {
                *byte = self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    #[test]
    fn ids_carry_prefix_and_128_random_bits() {
        let random = Counter(AtomicU8::new(0));
        let first = CheckoutId::generate(&random);
        let second = CheckoutId::generate(&random);
        assert!(first.as_str().starts_with("cs_"));
        assert_eq!(first.as_str().len(), 3 + 26);
        assert_ne!(first, second);
        assert_eq!(CheckoutId::parse(first.as_str()), Ok(first.clone()));
        let par = PaymentAuthorizationId::generate(&random);
        assert!(par.as_str().starts_with("par_"));
    }

    #[test]
    fn all_zero_and_all_one_bits_encode_at_full_length() {
        assert_eq!(encode(&[0; 16]), "a".repeat(26));
        assert_eq!(encode(&[0xff; 16]), format!("{}4", "7".repeat(25)));
    }

    #[test]
    fn foreign_or_malformed_ids_are_refused() {
        let random = Counter(AtomicU8::new(7));
        let par = PaymentAuthorizationId::generate(&random);
        assert!(CheckoutId::parse(par.as_str()).is_err());
        for bad in [
            "",
            "cs_",
            "cs_short",
            "cs_ABCDEFGHIJKLMNOPQRSTUVWXYZ",
            "cs_aaaaaaaaaaaaaaaaaaaaaaaaaa/",
        ] {
            assert!(CheckoutId::parse(bad).is_err(), "{bad:?}");
        }
    }
}
