//! Tokens sealed at rest with AES-256-GCM (ring, the crypto rustls already uses).
//!
//! Sealed bytes: a format byte, a random 96-bit nonce, then the ciphertext with its 128-bit
//! tag. The context (checkout and step-up ids) is the associated data: a sealed token copied
//! to another row does not open.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use sacp_ports::BearerToken;
use sacp_ports::step_up::{SealError, TokenSealer};
use zeroize::Zeroizing;

/// The first byte of every sealed token: how the rest reads.
const FORMAT: u8 = 1;
/// Bytes of a sealing key.
pub const KEY_LEN: usize = 32;

/// Why a configured sealing key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a sealing key is 64 hexadecimal digits (32 bytes), e.g. from `openssl rand -hex 32`")]
pub struct BadSealingKey;

/// Seals tokens with AES-256-GCM under one key.
pub struct AesGcmSealer {
    key: LessSafeKey,
    key_id: String,
    random: SystemRandom,
}

impl std::fmt::Debug for AesGcmSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AesGcmSealer")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl AesGcmSealer {
    /// A sealer under the key written as 64 hexadecimal digits (the operator's
    /// `SACP_TOKEN_SEALING_KEY`, the same on every replica).
    pub fn from_hex(hex: &str) -> Result<AesGcmSealer, BadSealingKey> {
        let hex = hex.trim();
        if hex.len() != KEY_LEN * 2 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(BadSealingKey);
        }
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        for (byte, pair) in key.iter_mut().zip(hex.as_bytes().chunks(2)) {
            let pair = std::str::from_utf8(pair).map_err(|_| BadSealingKey)?;
            *byte = u8::from_str_radix(pair, 16).map_err(|_| BadSealingKey)?;
        }
        Ok(AesGcmSealer::new(&key))
    }

    /// A sealer under a key drawn for this process only: what it seals, only it can open.
    pub fn ephemeral() -> Result<AesGcmSealer, SealError> {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        SystemRandom::new()
            .fill(key.as_mut_slice())
            .map_err(|_| SealError::Failed("no randomness for a key".into()))?;
        Ok(AesGcmSealer::new(&key))
    }

    fn new(key: &[u8; KEY_LEN]) -> AesGcmSealer {
        // The fingerprint names the key without revealing it: a hash of a label and the key.
        let mut hasher = ring::digest::Context::new(&ring::digest::SHA256);
        hasher.update(b"sacp token sealing key id\0");
        hasher.update(key);
        let digest = hasher.finish();
        let key_id = digest.as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        #[allow(clippy::expect_used)]
        let unbound =
            UnboundKey::new(&AES_256_GCM, key).expect("a 32-byte key is always an AES-256-GCM key");
        AesGcmSealer {
            key: LessSafeKey::new(unbound),
            key_id,
            random: SystemRandom::new(),
        }
    }
}

impl TokenSealer for AesGcmSealer {
    fn key_id(&self) -> &str {
        &self.key_id
    }

    fn seal(&self, token: &BearerToken, context: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .map_err(|_| SealError::Failed("no randomness for a nonce".into()))?;
        // The buffer holds the token in the clear until it is sealed in place.
        let mut in_out = token.expose().as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context),
                &mut in_out,
            )
            .map_err(|_| SealError::Failed("sealing refused".into()))?;
        let mut sealed = Vec::with_capacity(1 + NONCE_LEN + in_out.len());
        sealed.push(FORMAT);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&in_out);
        Ok(sealed)
    }

    fn open(&self, sealed: &[u8], context: &[u8]) -> Result<BearerToken, SealError> {
        let Some((&FORMAT, rest)) = sealed.split_first() else {
            return Err(SealError::Unopenable);
        };
        if rest.len() < NONCE_LEN {
            return Err(SealError::Unopenable);
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Unopenable)?;
        let mut in_out = Zeroizing::new(ciphertext.to_vec());
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(context), &mut in_out)
            .map_err(|_| SealError::Unopenable)?;
        let token = std::str::from_utf8(plain).map_err(|_| SealError::Unopenable)?;
        Ok(BearerToken::new(token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sealer_passes_the_contract() {
        let configured =
            AesGcmSealer::from_hex(&"0123456789abcdef".repeat(4)).expect("a valid key");
        let other = AesGcmSealer::ephemeral().unwrap();
        sacp_ports::contract::step_up::token_sealer_contract(&configured, &other);
        sacp_ports::contract::step_up::token_sealer_contract(&other, &configured);
    }

    #[test]
    fn a_configured_key_is_64_hex_digits_and_named_the_same_everywhere() {
        let hex = "00112233445566778899aabbccddeeff".repeat(2);
        let a = AesGcmSealer::from_hex(&hex).unwrap();
        let b = AesGcmSealer::from_hex(&hex.to_uppercase()).unwrap();
        assert_eq!(
            a.key_id(),
            b.key_id(),
            "replicas with one key agree on its id"
        );
        let sealed = a.seal(&BearerToken::new("t"), b"c").unwrap();
        assert_eq!(b.open(&sealed, b"c").unwrap().expose(), "t");
        assert!(!a.key_id().contains(&hex[..16]), "the id is not the key");
        assert!(!format!("{a:?}").contains(&hex[..16]));
        for bad in [
            "",
            "short",
            &"zz".repeat(32),
            &hex[..62],
            &format!("{hex}00"),
        ] {
            assert_eq!(
                AesGcmSealer::from_hex(bad).err(),
                Some(BadSealingKey),
                "{bad:?}"
            );
        }
    }
}
