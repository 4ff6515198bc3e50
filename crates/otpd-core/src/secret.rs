//! The server secret and the keys derived from it.
//!
//! One secret (from `OTPD_SECRET`, or generated at first start) yields, by HKDF-SHA256 with
//! distinct labels, independent keys: one for code hashes, one for sealing (AEAD) the
//! copies of codes and secrets that must be recovered later.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand::RngCore;
use rand::rngs::OsRng;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::code::OtpCode;

type HmacSha256 = Hmac<Sha256>;

/// Bytes of a generated server secret.
const GENERATED_SECRET_BYTES: usize = 32;
/// Shortest `OTPD_SECRET` accepted: a guessable secret would make every hash guessable.
pub const MIN_SECRET_LEN: usize = 16;
/// HKDF label of the code-hash key; bump the version to rotate the derivation.
const LABEL_CODE_HASH: &[u8] = b"otpd/v1/code-hmac";
/// HKDF label of the sealing key.
const LABEL_SEAL: &[u8] = b"otpd/v1/seal";
/// First byte of every sealed blob: the format version.
const SEAL_VERSION: u8 = 1;
/// XChaCha20 nonce length.
const NONCE_LEN: usize = 24;

/// Errors of secret handling.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    /// The configured secret is too short to be safe.
    #[error("the server secret must be at least {MIN_SECRET_LEN} characters")]
    TooShort,
    /// A sealed blob did not open: wrong key, wrong context or tampered data.
    #[error("sealed data could not be opened")]
    Unseal,
}

/// The keys derived from the server secret. Cheap to clone behind an `Arc`.
pub struct ServerSecret {
    hasher: CodeHasher,
    sealer: Sealer,
}

impl ServerSecret {
    /// Derives the keys from the configured secret text.
    pub fn from_text(text: &str) -> Result<Self, SecretError> {
        if text.len() < MIN_SECRET_LEN {
            return Err(SecretError::TooShort);
        }
        let hk = Hkdf::<Sha256>::new(None, text.as_bytes());
        let mut code_key = Zeroizing::new([0u8; 32]);
        let mut seal_key = Zeroizing::new([0u8; 32]);
        hk.expand(LABEL_CODE_HASH, code_key.as_mut())
            .expect("32 bytes is a valid HKDF-SHA256 length");
        hk.expand(LABEL_SEAL, seal_key.as_mut())
            .expect("32 bytes is a valid HKDF-SHA256 length");
        Ok(ServerSecret {
            hasher: CodeHasher { key: code_key },
            sealer: Sealer {
                cipher: XChaCha20Poly1305::new(seal_key.as_ref().into()),
            },
        })
    }

    /// A fresh random secret as text (base64 of 32 bytes from the OS CSPRNG).
    pub fn generate_text() -> Zeroizing<String> {
        let mut bytes = Zeroizing::new([0u8; GENERATED_SECRET_BYTES]);
        OsRng.fill_bytes(bytes.as_mut());
        Zeroizing::new(B64.encode(bytes.as_ref()))
    }

    /// The code hasher.
    pub fn hasher(&self) -> &CodeHasher {
        &self.hasher
    }

    /// The sealer.
    pub fn sealer(&self) -> &Sealer {
        &self.sealer
    }
}

/// Keyed hashing of codes: `HMAC-SHA256(key, verification id ‖ 0x00 ‖ code)`.
pub struct CodeHasher {
    key: Zeroizing<[u8; 32]>,
}

impl CodeHasher {
    /// The stored form of `code` for the verification `id`.
    pub fn hash(&self, id: &str, code: &OtpCode) -> Vec<u8> {
        self.hash_text(id, code.expose())
    }

    /// `HMAC-SHA256(key, context ‖ 0x00 ‖ text)`: the stored form of any short secret that
    /// is found by its hash (backup codes, scoped by `context`).
    pub fn hash_text(&self, context: &str, text: &str) -> Vec<u8> {
        let mut mac =
            <HmacSha256 as Mac>::new_from_slice(self.key.as_ref()).expect("any key length");
        mac.update(context.as_bytes());
        mac.update(&[0]);
        mac.update(text.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    /// Whether `code` is the one whose hash is `stored`, compared in constant time.
    pub fn matches(&self, id: &str, code: &OtpCode, stored: &[u8]) -> bool {
        self.hash(id, code).ct_eq(stored).into()
    }
}

/// Authenticated encryption (XChaCha20-Poly1305) of small secrets, bound to a context
/// string (e.g. the verification id) so a sealed blob cannot be moved to another record.
pub struct Sealer {
    cipher: XChaCha20Poly1305,
}

impl Sealer {
    /// Seals `plaintext` for `context`: `version ‖ nonce ‖ ciphertext+tag`.
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let ciphertext = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 encryption of a small buffer cannot fail");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        out.push(SEAL_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        out
    }

    /// Opens a blob sealed for `context`.
    pub fn open(&self, context: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, SecretError> {
        if sealed.len() < 1 + NONCE_LEN || sealed[0] != SEAL_VERSION {
            return Err(SecretError::Unseal);
        }
        let (nonce, ciphertext) = sealed[1..].split_at(NONCE_LEN);
        self.cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| SecretError::Unseal)
    }

    /// Seals text (a code, a message body, a webhook secret).
    pub fn seal_str(&self, context: &str, text: &str) -> Vec<u8> {
        self.seal(context, text.as_bytes())
    }

    /// Opens sealed text.
    pub fn open_str(&self, context: &str, sealed: &[u8]) -> Result<Zeroizing<String>, SecretError> {
        let bytes = self.open(context, sealed)?;
        String::from_utf8(bytes.to_vec())
            .map(Zeroizing::new)
            .map_err(|_| SecretError::Unseal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> ServerSecret {
        ServerSecret::from_text("a test secret of enough length").unwrap()
    }

    #[test]
    fn hash_matches_only_the_same_code_and_id() {
        let s = secret();
        let code = OtpCode::parse("123456").unwrap();
        let stored = s.hasher().hash("ver_1", &code);
        assert!(s.hasher().matches("ver_1", &code, &stored));
        assert!(!s.hasher().matches("ver_2", &code, &stored));
        assert!(
            !s.hasher()
                .matches("ver_1", &OtpCode::parse("123457").unwrap(), &stored)
        );
        assert!(!s.hasher().matches("ver_1", &code, &stored[..31]));
    }

    #[test]
    fn different_secrets_give_different_hashes() {
        let a = secret();
        let b = ServerSecret::from_text("another secret of enough length").unwrap();
        let code = OtpCode::parse("123456").unwrap();
        assert_ne!(a.hasher().hash("v", &code), b.hasher().hash("v", &code));
    }

    #[test]
    fn sealed_data_opens_only_in_its_context() {
        let s = secret();
        let sealed = s.sealer().seal_str("ver_1", "123456");
        assert_eq!(
            s.sealer().open_str("ver_1", &sealed).unwrap().as_str(),
            "123456"
        );
        assert_eq!(
            s.sealer().open_str("ver_2", &sealed),
            Err(SecretError::Unseal)
        );
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(
            s.sealer().open_str("ver_1", &tampered),
            Err(SecretError::Unseal)
        );
        assert!(!sealed.windows(6).any(|w| w == b"123456"));
    }

    #[test]
    fn short_secrets_are_refused() {
        assert_eq!(
            ServerSecret::from_text("short").err(),
            Some(SecretError::TooShort)
        );
        assert!(ServerSecret::from_text(&ServerSecret::generate_text()).is_ok());
    }
}
