//! Authenticator-app factors: TOTP (RFC 6238) and HOTP (RFC 4226), and the backup codes
//! that stand in for a lost device.
//!
//! Pure like the rest of the domain: the caller passes `now` and the factor's replay state
//! (`last_used`), and verification returns the time step or counter that matched, so the
//! store can record it with a conditional update (`… WHERE last_used_step < matched`) and a
//! code is accepted at most once, however many nodes race.
//!
//! - [`otp`]: the HOTP/TOTP arithmetic.
//! - [`uri`]: the `otpauth://` key URI that authenticator apps scan.
//! - [`backup`]: single-use recovery codes.

pub mod backup;
pub mod challenge;
pub mod otp;
pub mod uri;

use std::fmt;

use chrono::{DateTime, Utc};
use data_encoding::BASE32_NOPAD;
use rand::RngCore;
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::DomainError;

/// Prefix of factor ids (`tf_<hex>`).
pub const FACTOR_ID_PREFIX: &str = "tf_";
/// Default TOTP tolerance: one step either side of now absorbs clock skew and typing time.
pub const DEFAULT_WINDOW: u32 = 1;
/// Widest TOTP tolerance: each extra step doubles nothing but the guessing odds.
pub const MAX_WINDOW: u32 = 2;
/// Default HOTP look-ahead: codes generated but never used (button presses) that a check
/// skips over, resynchronizing the counter (RFC 4226 section 7.4).
pub const DEFAULT_LOOK_AHEAD: u32 = 10;
/// Largest HOTP look-ahead.
pub const MAX_LOOK_AHEAD: u32 = 50;

/// A new factor id.
pub fn new_factor_id() -> String {
    format!("{FACTOR_ID_PREFIX}{}", crate::ids::new_hex())
}

/// The HMAC hash function of a factor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Algorithm {
    /// HMAC-SHA1, what every authenticator app supports.
    #[serde(rename = "SHA1")]
    Sha1,
    /// HMAC-SHA256.
    #[serde(rename = "SHA256")]
    Sha256,
    /// HMAC-SHA512.
    #[serde(rename = "SHA512")]
    Sha512,
}

impl Algorithm {
    /// The name in `otpauth://` URIs and in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha1 => "SHA1",
            Algorithm::Sha256 => "SHA256",
            Algorithm::Sha512 => "SHA512",
        }
    }

    /// Parses the storage name.
    pub fn parse(s: &str) -> Option<Algorithm> {
        [Algorithm::Sha1, Algorithm::Sha256, Algorithm::Sha512]
            .into_iter()
            .find(|a| a.as_str() == s)
    }

    /// Bytes of a generated secret: the hash's output length, as RFC 6238 recommends
    /// (160 bits for SHA1).
    pub fn secret_len(self) -> usize {
        match self {
            Algorithm::Sha1 => 20,
            Algorithm::Sha256 => 32,
            Algorithm::Sha512 => 64,
        }
    }
}

/// Time-based or counter-based.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FactorKind {
    /// RFC 6238: the counter is the time step.
    Totp,
    /// RFC 4226: the counter advances with each code the device shows.
    Hotp,
}

impl FactorKind {
    /// The wire and storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            FactorKind::Totp => "totp",
            FactorKind::Hotp => "hotp",
        }
    }

    /// Parses the storage name.
    pub fn parse(s: &str) -> Option<FactorKind> {
        match s {
            "totp" => Some(FactorKind::Totp),
            "hotp" => Some(FactorKind::Hotp),
            _ => None,
        }
    }
}

/// Whether a factor has been proven by a first code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FactorStatus {
    /// Created, secret shown, no code seen yet: not usable for checks.
    Unverified,
    /// Activated by a valid code.
    Active,
}

impl FactorStatus {
    /// The wire and storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            FactorStatus::Unverified => "unverified",
            FactorStatus::Active => "active",
        }
    }

    /// Parses the storage name.
    pub fn parse(s: &str) -> Option<FactorStatus> {
        match s {
            "unverified" => Some(FactorStatus::Unverified),
            "active" => Some(FactorStatus::Active),
            _ => None,
        }
    }
}

/// How a factor's codes are made and accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FactorParams {
    /// TOTP or HOTP.
    pub kind: FactorKind,
    /// HMAC hash.
    pub algorithm: Algorithm,
    /// 6 or 8.
    pub digits: u8,
    /// Seconds per time step (TOTP): 30 or 60.
    pub period: u32,
    /// TOTP: steps accepted either side of now; HOTP: counters looked ahead.
    pub tolerance: u32,
}

fn invalid(msg: impl Into<String>) -> DomainError {
    DomainError::InvalidRequest(msg.into())
}

impl FactorParams {
    /// Checks the parameters against what otpd and authenticator apps support.
    pub fn validate(self) -> Result<Self, DomainError> {
        if !matches!(self.digits, 6 | 8) {
            return Err(invalid("digits must be 6 or 8"));
        }
        match self.kind {
            FactorKind::Totp => {
                if !matches!(self.period, 30 | 60) {
                    return Err(invalid("period must be 30 or 60"));
                }
                if self.tolerance > MAX_WINDOW {
                    return Err(invalid(format!("window must be 0-{MAX_WINDOW}")));
                }
            }
            FactorKind::Hotp => {
                if self.tolerance > MAX_LOOK_AHEAD {
                    return Err(invalid(format!("look_ahead must be 0-{MAX_LOOK_AHEAD}")));
                }
            }
        }
        Ok(self)
    }

    /// The time step of `now` (TOTP).
    pub fn step_at(&self, now: DateTime<Utc>) -> Option<u64> {
        otp::time_step(now.timestamp(), self.period)
    }

    /// The code a device shows at `counter` (a time step for TOTP).
    pub fn code_at(&self, secret: &FactorSecret, counter: u64) -> String {
        otp::hotp(secret.bytes(), counter, self.digits, self.algorithm)
    }

    /// Verifies `code`: the time step (TOTP, within `now ± tolerance`) or counter (HOTP,
    /// from `last_used + 1` through `tolerance` more) at which the device shows it, never one
    /// at or before `last_used` (a code is accepted once). Every candidate is compared in
    /// constant time; the earliest match wins.
    pub fn verify(
        &self,
        secret: &FactorSecret,
        code: &TotpCode,
        last_used: Option<u64>,
        now: DateTime<Utc>,
    ) -> Option<u64> {
        let first_unused = last_used.map_or(0, |l| l.saturating_add(1));
        let (from, to) = match self.kind {
            FactorKind::Totp => {
                let step = self.step_at(now)?;
                (
                    step.saturating_sub(u64::from(self.tolerance))
                        .max(first_unused),
                    step.saturating_add(u64::from(self.tolerance)),
                )
            }
            FactorKind::Hotp => (
                first_unused,
                first_unused.saturating_add(u64::from(self.tolerance)),
            ),
        };
        let mut matched = None;
        for counter in from..=to {
            let candidate = Zeroizing::new(self.code_at(secret, counter));
            let equal: bool = candidate.as_bytes().ct_eq(code.expose().as_bytes()).into();
            if equal && matched.is_none() {
                matched = Some(counter);
            }
        }
        matched
    }
}

/// A factor's shared secret: random bytes, zeroed on drop, never shown after creation.
pub struct FactorSecret(Zeroizing<Vec<u8>>);

impl FactorSecret {
    /// A fresh secret from the OS CSPRNG, as long as the algorithm's hash output.
    pub fn generate(algorithm: Algorithm) -> Self {
        let mut bytes = Zeroizing::new(vec![0u8; algorithm.secret_len()]);
        OsRng.fill_bytes(&mut bytes);
        FactorSecret(bytes)
    }

    /// A secret from known bytes (opened from storage, or a test vector).
    pub fn from_bytes(bytes: &[u8]) -> Self {
        FactorSecret(Zeroizing::new(bytes.to_vec()))
    }

    /// A secret from its base32 form (case and padding ignored), as apps and other servers
    /// show it; `None` if it is not base32.
    pub fn from_base32(text: &str) -> Option<Self> {
        let canonical: String = text
            .chars()
            .filter(|c| *c != '=' && *c != ' ')
            .map(|c| c.to_ascii_uppercase())
            .collect();
        BASE32_NOPAD
            .decode(canonical.as_bytes())
            .ok()
            .map(|b| FactorSecret(Zeroizing::new(b)))
    }

    /// The raw bytes (the HMAC key; sealed at rest).
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// Base32 without padding, as authenticator apps take it.
    pub fn base32(&self) -> Zeroizing<String> {
        Zeroizing::new(BASE32_NOPAD.encode(&self.0))
    }
}

impl fmt::Debug for FactorSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FactorSecret(<redacted>)")
    }
}

/// A submitted authenticator code: 6 or 8 ASCII digits (spaces a user copies from the app's
/// `123 456` display are dropped). `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpCode(Zeroizing<String>);

impl TotpCode {
    /// Parses a code; `None` if it is not 6 or 8 digits.
    pub fn parse(input: &str) -> Option<Self> {
        let digits: Zeroizing<String> =
            Zeroizing::new(input.chars().filter(|c| *c != ' ').collect());
        (matches!(digits.len(), 6 | 8) && digits.bytes().all(|b| b.is_ascii_digit()))
            .then_some(TotpCode(digits))
    }

    /// The digits.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TotpCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpCode(<redacted>)")
    }
}

/// Checks an issuer name: 1–64 characters, no `:` (it separates issuer and account in the
/// URI label) and no control characters.
pub fn validate_issuer(v: &str) -> Result<(), DomainError> {
    let n = v.chars().count();
    if (1..=64).contains(&n) && !v.contains(':') && !v.chars().any(char::is_control) {
        Ok(())
    } else {
        Err(invalid(
            "issuer must be 1-64 characters without ':' or control characters",
        ))
    }
}

/// Checks an account label: 1–128 characters, no control characters.
pub fn validate_label(v: &str) -> Result<(), DomainError> {
    let n = v.chars().count();
    if (1..=128).contains(&n) && !v.chars().any(char::is_control) {
        Ok(())
    } else {
        Err(invalid(
            "label must be 1-128 characters without control characters",
        ))
    }
}

/// A stored factor. The secret is only ever held sealed (AEAD, bound to the factor id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Factor {
    /// `tf_…`
    pub id: String,
    /// Owning service id.
    pub service_id: String,
    /// Owning service name.
    pub service_name: String,
    /// The application's user the factor belongs to.
    pub entity: String,
    /// Code parameters.
    pub params: FactorParams,
    /// Account name shown in the app.
    pub label: String,
    /// Issuer shown in the app.
    pub issuer: String,
    /// The secret sealed for the factor id.
    pub sealed_secret: Vec<u8>,
    /// Unverified until a first valid code.
    pub status: FactorStatus,
    /// The last time step (TOTP) or counter (HOTP) accepted: codes at or before it are
    /// refused. `None` before the first.
    pub last_used: Option<u64>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Activated.
    pub verified_at: Option<DateTime<Utc>>,
    /// Last accepted code.
    pub last_used_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests;
