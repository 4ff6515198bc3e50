//! Call scripts: the text a call speaks, carried sealed in the provider's own callback.
//!
//! Some voice APIs do not take the spoken text with the call: Plivo fetches what to play
//! from an `answer_url` when the callee picks up. otpd keeps no state for that fetch.
//! The worker seals the call's text into a token ([`seal`]: XChaCha20-Poly1305 under the
//! server secret's sealing key, bound to the message id and to this use, with the code's
//! expiry inside), the adapter puts the token in the URL it gives the provider, and
//! whichever node the provider's fetch reaches opens it ([`open`]) after checking the
//! provider's signature. The provider's logs hold only the ciphertext; a token past its
//! expiry, moved to another message, or altered opens to nothing.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use otpd_core::secret::Sealer;
use zeroize::Zeroizing;

/// Why a call script cannot be had.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScriptError {
    /// The token is not one otpd sealed for this message (altered, moved, another key).
    #[error("the call script does not open")]
    Unopenable,
    /// The code it carries has expired: nothing is said.
    #[error("the call script has expired")]
    Expired,
}

/// The sealing context of a message's script: the message id, under a label of its own
/// so that no other sealed blob of otpd opens as a script.
fn context(message_id: &str) -> String {
    format!("otpd/call-script/{message_id}")
}

/// The token of `text` for message `message_id`, valid until `expires_at` (base64url,
/// unpadded: it goes into a URL as it is).
pub fn seal(sealer: &Sealer, message_id: &str, text: &str, expires_at: DateTime<Utc>) -> String {
    let plain = Zeroizing::new(format!("{}\n{text}", expires_at.timestamp()));
    URL_SAFE_NO_PAD.encode(sealer.seal_str(&context(message_id), &plain))
}

/// The text a token of message `message_id` carries, if it opens and has not expired at
/// `now`.
pub fn open(
    sealer: &Sealer,
    message_id: &str,
    token: &str,
    now: DateTime<Utc>,
) -> Result<Zeroizing<String>, ScriptError> {
    let sealed = URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| ScriptError::Unopenable)?;
    let plain = sealer
        .open_str(&context(message_id), &sealed)
        .map_err(|_| ScriptError::Unopenable)?;
    let (expires, text) = plain.split_once('\n').ok_or(ScriptError::Unopenable)?;
    let expires: i64 = expires.parse().map_err(|_| ScriptError::Unopenable)?;
    if now.timestamp() >= expires {
        return Err(ScriptError::Expired);
    }
    Ok(Zeroizing::new(text.to_string()))
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use otpd_core::secret::ServerSecret;

    use super::*;

    #[test]
    fn a_script_opens_only_for_its_message_and_before_it_expires() {
        let secret = ServerSecret::from_text("a test secret of enough length").unwrap();
        let now = Utc::now();
        let token = seal(
            secret.sealer(),
            "dlv_1",
            "Your code is 1, 2, 3.",
            now + Duration::minutes(5),
        );
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert!(!token.contains("1, 2, 3"));
        assert_eq!(
            open(secret.sealer(), "dlv_1", &token, now)
                .unwrap()
                .as_str(),
            "Your code is 1, 2, 3."
        );
        assert_eq!(
            open(secret.sealer(), "dlv_2", &token, now),
            Err(ScriptError::Unopenable)
        );
        assert_eq!(
            open(secret.sealer(), "dlv_1", &token, now + Duration::minutes(5)),
            Err(ScriptError::Expired)
        );
        let mut altered = token.clone().into_bytes();
        altered[10] = if altered[10] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            open(
                secret.sealer(),
                "dlv_1",
                &String::from_utf8(altered).unwrap(),
                now
            ),
            Err(ScriptError::Unopenable)
        );
        let other = ServerSecret::from_text("another secret of enough length").unwrap();
        assert_eq!(
            open(other.sealer(), "dlv_1", &token, now),
            Err(ScriptError::Unopenable)
        );
        // A blob sealed for another use under the same key (a delivery's sealed body) is
        // not a script.
        let body = URL_SAFE_NO_PAD.encode(secret.sealer().seal_str("dlv_1", "9999999999\nx"));
        assert_eq!(
            open(secret.sealer(), "dlv_1", &body, now),
            Err(ScriptError::Unopenable)
        );
    }
}
