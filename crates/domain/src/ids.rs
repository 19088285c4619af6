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
pub(crate) const ENCODED_LEN: usize = 26;
/// Bits of the last encoded character beyond the 128: always zero.
const PADDING_BITS: usize = ENCODED_LEN * 5 - ID_RANDOM_BYTES * 8;

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

/// The bytes whose [`encode`]ing is `text` (which must be one: the ids' constructors make
/// sure of it). The 26 characters' 130 bits are gathered in one integer, the last
/// character's two padding bits dropped: this runs for every key a request presents.
fn decode(text: &str) -> [u8; ID_RANDOM_BYTES] {
    let (last, first) = text.as_bytes().split_last().unwrap_or((&0, &[]));
    let bits = first.iter().fold(0u128, |bits, &byte| {
        (bits << 5) | u128::from(value_of(byte))
    });
    ((bits << (5 - PADDING_BITS)) | u128::from(value_of(*last) >> PADDING_BITS)).to_be_bytes()
}

/// Whether `text` is what [`encode`] makes of some 128 bits: the right length, the
/// alphabet, and zero padding bits in the last character (so that every id has exactly one
/// spelling).
fn is_encoded_bits(text: &str) -> bool {
    text.len() == ENCODED_LEN
        && is_base32(text)
        && text
            .bytes()
            .last()
            .is_some_and(|last| usize::from(value_of(last)) & ((1 << PADDING_BITS) - 1) == 0)
}

/// The 128 bits `text` (an id's random part, without its prefix) spells, when it is the one
/// spelling [`encode`] makes of them: what parsing the id would accept, without building it.
pub fn encoded_bits(text: &str) -> Option<[u8; ID_RANDOM_BYTES]> {
    is_encoded_bits(text).then(|| decode(text))
}

/// Marks a byte outside [`ALPHABET`] in [`VALUES`]: above every 5-bit value.
const NOT_BASE32: u8 = 0x80;

/// Each byte's 5-bit value in [`ALPHABET`], or [`NOT_BASE32`].
const VALUES: [u8; 256] = {
    let mut values = [NOT_BASE32; 256];
    let mut value: u8 = 0;
    while value < 32 {
        values[ALPHABET[value as usize] as usize] = value;
        value += 1;
    }
    values
};

/// The 5-bit value of `byte`, or [`NOT_BASE32`].
fn value_of(byte: u8) -> u8 {
    VALUES[usize::from(byte)]
}

/// Lowercase base32 (RFC 4648 alphabet, no padding) of `bytes`.
pub fn base32(bytes: &[u8]) -> String {
    encode(bytes)
}

/// Whether `text` uses only the base32 alphabet of [`base32`].
pub fn is_base32(text: &str) -> bool {
    // Without stopping early, so that the loop has no branch: a key's secret is checked
    // on every request that presents it.
    text.bytes().fold(0, |seen, byte| seen | value_of(byte)) & NOT_BASE32 == 0
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
                Self::from_bits(bytes)
            }

            /// The id whose random part is `bits`: the inverse of [`Self::to_bits`].
            pub fn from_bits(bits: [u8; ID_RANDOM_BYTES]) -> Self {
                Self(format!("{}{}", $prefix, encode(&bits)))
            }

            /// The id's 128 random bits: a fixed-size form for compact storage.
            pub fn to_bits(&self) -> [u8; ID_RANDOM_BYTES] {
                decode(&self.0[$prefix.len()..])
            }

            /// Parses an id received from a client or from storage. Only the spelling the
            /// gateway issues is accepted.
            pub fn parse(text: &str) -> Result<Self, InvalidId> {
                let valid = text.strip_prefix($prefix).is_some_and(is_encoded_bits);
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
    fn ids_round_trip_through_their_bits() {
        for byte in 0..=u8::MAX {
            let index = ALPHABET.iter().position(|&c| c == byte);
            assert_eq!(
                value_of(byte),
                index.map_or(NOT_BASE32, |i| u8::try_from(i).unwrap()),
                "{byte}"
            );
            assert_eq!(is_base32(&char::from(byte).to_string()), index.is_some());
        }
        // Every bit of every byte, alone and with its neighbours set, survives the trip.
        for position in 0..ID_RANDOM_BYTES * 8 {
            let mut alone = [0u8; ID_RANDOM_BYTES];
            alone[position / 8] = 0x80 >> (position % 8);
            let mut others = [0xffu8; ID_RANDOM_BYTES];
            others[position / 8] ^= 0x80 >> (position % 8);
            for bits in [alone, others] {
                assert_eq!(encoded_bits(&encode(&bits)), Some(bits));
            }
        }
        let random = Counter(AtomicU8::new(3));
        for _ in 0..40 {
            let id = CheckoutId::generate(&random);
            assert_eq!(CheckoutId::from_bits(id.to_bits()), id);
        }
        for bits in [[0; 16], [0xff; 16], [0x5a; 16]] {
            assert_eq!(ApiKeyId::from_bits(bits).to_bits(), bits);
        }
    }

    #[test]
    fn an_id_has_one_spelling_only() {
        // 26 characters carry 130 bits: the last character's two spare bits must be zero,
        // or two spellings would name the same id.
        let issued = CheckoutId::from_bits([0; 16]);
        assert_eq!(issued.as_str(), format!("cs_{}", "a".repeat(26)));
        for alias in ["b", "c", "d"] {
            let text = format!("cs_{}{alias}", "a".repeat(25));
            assert!(CheckoutId::parse(&text).is_err(), "{text}");
        }
        assert!(CheckoutId::parse(&format!("cs_{}e", "a".repeat(25))).is_ok());
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
