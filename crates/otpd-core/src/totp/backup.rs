//! Backup (recovery) codes: ten single-use codes per entity, for when the authenticator
//! device is lost. Shown once; stored only as keyed hashes
//! (`HMAC(server secret, scope ‖ code)`, scope = service and entity), so the store can find
//! a submitted code by its hash without ever holding the code.

use std::fmt;

use rand::Rng;
use rand::rngs::OsRng;
use zeroize::Zeroizing;

/// Codes in a set.
pub const BACKUP_CODES_PER_SET: usize = 10;
/// Characters per code: 10 symbols of 32, 50 bits each.
const CODE_LEN: usize = 10;
/// Crockford's base32 alphabet, lower case: no `i`, `l`, `o`, `u` to misread.
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// One backup code in its canonical form (10 lower-case symbols). `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct BackupCode(Zeroizing<String>);

impl BackupCode {
    /// A fresh code from the OS CSPRNG.
    pub fn generate() -> Self {
        let mut rng = OsRng;
        BackupCode(Zeroizing::new(
            (0..CODE_LEN)
                .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
                .collect(),
        ))
    }

    /// Parses what a user typed: case, dashes and spaces ignored, and the letters Crockford
    /// reads as digits (`o` → 0, `i`/`l` → 1) mapped. `None` if it is not a backup code.
    pub fn parse(input: &str) -> Option<Self> {
        let mut out = Zeroizing::new(String::with_capacity(CODE_LEN));
        for c in input.chars() {
            let c = match c.to_ascii_lowercase() {
                '-' | ' ' => continue,
                'o' => '0',
                'i' | 'l' => '1',
                c if c.is_ascii() && ALPHABET.contains(&(c as u8)) => c,
                _ => return None,
            };
            out.push(c);
        }
        (out.len() == CODE_LEN).then_some(BackupCode(out))
    }

    /// The canonical form (what is hashed).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The form shown to users: `xxxxx-xxxxx`.
    pub fn display(&self) -> Zeroizing<String> {
        let (a, b) = self.0.split_at(CODE_LEN / 2);
        Zeroizing::new(format!("{a}-{b}"))
    }
}

impl fmt::Debug for BackupCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BackupCode(<redacted>)")
    }
}

/// The hashing scope of an entity's backup codes (so a code of one entity or service never
/// matches another's).
pub fn hash_scope(service_id: &str, entity: &str) -> String {
    format!("backup/{service_id}/{entity}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_codes_round_trip_through_their_display_form() {
        for _ in 0..100 {
            let c = BackupCode::generate();
            assert_eq!(c.expose().len(), CODE_LEN);
            let shown = c.display();
            assert_eq!(shown.len(), CODE_LEN + 1);
            assert_eq!(BackupCode::parse(&shown), Some(c.clone()));
            assert_eq!(BackupCode::parse(&shown.to_uppercase()), Some(c));
        }
    }

    #[test]
    fn parse_maps_look_alikes_and_refuses_other_input() {
        assert_eq!(
            BackupCode::parse("OIL23-45678").unwrap().expose(),
            "0112345678"
        );
        for bad in [
            "",
            "123456",
            "abcde-fghi",
            "abcde-fghijk",
            "abcde_fghij",
            "abcdé-fghij",
        ] {
            assert!(BackupCode::parse(bad).is_none(), "{bad:?}");
        }
        assert_eq!(
            format!("{:?}", BackupCode::generate()),
            "BackupCode(<redacted>)"
        );
    }
}
