//! Identifiers. Each record gets one random, time-ordered 128-bit value shown two ways:
//! an otpd id (`ver_<hex>`) and a Twilio-style SID (`VE<hex>`), so both APIs name the same
//! record without a lookup table.

/// A fresh 32-hex-digit identifier body (UUIDv7: time-ordered, 74 random bits).
pub fn new_hex() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// The prefixes of the record kinds, as (otpd prefix, Twilio SID prefix).
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// A verification: `ver_` / `VE`.
    Verification,
    /// A service: `svc_` / `VA`.
    Service,
    /// An API key: `key_` / `SK`.
    ApiKey,
    /// A delivery attempt: `dlv_` / `VL`.
    Delivery,
    /// An event: `evt_` / `EV`.
    Event,
    /// A recorded test message: `msg_` / `SM`.
    Message,
    /// A proof-of-work challenge: `pow_` / `PW`.
    Challenge,
    /// An authenticator factor: `tf_` / `YF` (Twilio's Factor).
    Factor,
    /// A challenge of an authenticator factor: `fch_` / `YC` (Twilio's Challenge).
    FactorChallenge,
}

impl Kind {
    fn prefixes(self) -> (&'static str, &'static str) {
        match self {
            Kind::Verification => ("ver_", "VE"),
            Kind::Service => ("svc_", "VA"),
            Kind::ApiKey => ("key_", "SK"),
            Kind::Delivery => ("dlv_", "VL"),
            Kind::Event => ("evt_", "EV"),
            Kind::Message => ("msg_", "SM"),
            Kind::Challenge => ("pow_", "PW"),
            Kind::Factor => ("tf_", "YF"),
            Kind::FactorChallenge => ("fch_", "YC"),
        }
    }

    /// A new otpd id of this kind.
    pub fn new_id(self) -> String {
        format!("{}{}", self.prefixes().0, new_hex())
    }

    /// The Twilio SID for an otpd id of this kind (`ver_ab…` → `VEab…`).
    pub fn sid_of(self, id: &str) -> String {
        let (native, sid) = self.prefixes();
        format!("{sid}{}", id.strip_prefix(native).unwrap_or(id))
    }

    /// The otpd id for a SID of this kind, if it has the right shape (`VE` + 32 hex).
    pub fn id_of_sid(self, sid: &str) -> Option<String> {
        let (native, prefix) = self.prefixes();
        let hex = sid.strip_prefix(prefix)?;
        (hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| format!("{native}{}", hex.to_ascii_lowercase()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_and_sid_name_the_same_record() {
        let id = Kind::Verification.new_id();
        let sid = Kind::Verification.sid_of(&id);
        assert!(sid.starts_with("VE") && sid.len() == 34);
        assert_eq!(
            Kind::Verification.id_of_sid(&sid).as_deref(),
            Some(id.as_str())
        );
        assert_eq!(Kind::Verification.id_of_sid("VEnothex"), None);
    }
}
