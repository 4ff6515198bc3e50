//! Entities: the application's own ids for its users (`user-42`, a UUID, an email). otpd
//! ties authenticator factors and backup codes to them, and counts wrong codes per entity
//! for the lockout.

use crate::DomainError;

/// Longest entity id, in characters.
pub const MAX_ENTITY_LEN: usize = 128;

/// Checks an entity id: 1–128 characters, no control characters, no surrounding spaces.
pub fn validate_entity(v: &str) -> Result<(), DomainError> {
    let n = v.chars().count();
    if (1..=MAX_ENTITY_LEN).contains(&n) && !v.chars().any(char::is_control) && v.trim() == v {
        Ok(())
    } else {
        Err(DomainError::InvalidRequest(format!(
            "entity must be 1-{MAX_ENTITY_LEN} characters without control characters or \
             surrounding spaces"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entities_are_checked() {
        assert!(validate_entity("user-42").is_ok());
        assert!(validate_entity("alice@example.com").is_ok());
        for bad in ["", " x", "x ", "a\u{0}b", &"x".repeat(129)] {
            assert!(validate_entity(bad).is_err(), "{bad:?}");
        }
    }
}
