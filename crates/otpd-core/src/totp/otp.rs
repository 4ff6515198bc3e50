//! The one-time-password arithmetic of RFC 4226 (HOTP) and RFC 6238 (TOTP), by hand on
//! `hmac`: dynamic truncation of an HMAC over the 8-byte big-endian counter.

use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Sha256, Sha512};

use super::Algorithm;

/// `10^digits` for the code lengths otpd allows (6 and 8; anything else is clamped).
fn modulus(digits: u8) -> u32 {
    10u32.pow(u32::from(digits.clamp(6, 8)))
}

fn mac<M: Mac + hmac::digest::KeyInit>(key: &[u8], counter: u64) -> Vec<u8> {
    let mut m = <M as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(&counter.to_be_bytes());
    m.finalize().into_bytes().to_vec()
}

/// The HOTP value of `key` at `counter` (RFC 4226 section 5.3), as `digits` zero-padded
/// decimal digits.
pub fn hotp(key: &[u8], counter: u64, digits: u8, algorithm: Algorithm) -> String {
    let hash = match algorithm {
        Algorithm::Sha1 => mac::<Hmac<Sha1>>(key, counter),
        Algorithm::Sha256 => mac::<Hmac<Sha256>>(key, counter),
        Algorithm::Sha512 => mac::<Hmac<Sha512>>(key, counter),
    };
    // Dynamic truncation: the low nibble of the last byte picks 4 bytes, top bit cleared.
    let offset = usize::from(hash[hash.len() - 1] & 0x0f);
    let binary = u32::from_be_bytes([
        hash[offset] & 0x7f,
        hash[offset + 1],
        hash[offset + 2],
        hash[offset + 3],
    ]);
    let digits = digits.clamp(6, 8);
    format!(
        "{:0width$}",
        binary % modulus(digits),
        width = usize::from(digits)
    )
}

/// The TOTP time step of a Unix time (RFC 6238 section 4.2, `T0 = 0`); `None` before 1970.
pub fn time_step(unix_seconds: i64, period: u32) -> Option<u64> {
    u64::try_from(unix_seconds)
        .ok()
        .map(|t| t / u64::from(period.max(1)))
}
