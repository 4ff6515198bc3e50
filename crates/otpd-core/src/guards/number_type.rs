//! Number type: which kinds of line may receive a code, from the libphonenumber metadata
//! (no carrier lookup, so no third party learns the number).
//!
//! Defaults: premium-rate, shared-cost and unknown numbers never get a message (they are
//! where SMS pumping earns its money, and a code to them helps no real user); SMS to a
//! fixed line is refused while voice to it is allowed.

use serde::{Deserialize, Serialize};

use super::{GuardName, Mode, Refusal, Verdict};
use crate::channel::Channel;
use crate::recipient::LineType;

/// A service's line-type rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct NumberTypeGuard {
    /// `off`, `shadow` or `enforce` (default).
    pub mode: Mode,
    /// Line types that never get a message on any channel.
    pub blocked_types: Vec<LineType>,
    /// Whether SMS (and WhatsApp) to fixed lines is refused (voice stays allowed).
    pub refuse_sms_to_fixed_line: bool,
}

impl Default for NumberTypeGuard {
    fn default() -> Self {
        NumberTypeGuard {
            mode: Mode::Enforce,
            blocked_types: vec![
                LineType::PremiumRate,
                LineType::SharedCost,
                LineType::Unknown,
            ],
            refuse_sms_to_fixed_line: true,
        }
    }
}

impl NumberTypeGuard {
    /// Decides for a number of line type `line` on `channel`. `skip_sms_to_landlines` is
    /// the service's Twilio-style flag, which refuses text to fixed lines too.
    pub fn check(&self, line: LineType, channel: Channel, skip_sms_to_landlines: bool) -> Verdict {
        let refuse = |reason: String| {
            Err(Refusal {
                guard: GuardName::NumberType,
                reason,
                retry_after_secs: None,
            })
        };
        if self.blocked_types.contains(&line) {
            return refuse(format!("{} numbers get no message", line.as_str()));
        }
        let text = matches!(channel, Channel::Sms | Channel::Whatsapp);
        if text
            && line == LineType::FixedLine
            && (self.refuse_sms_to_fixed_line || skip_sms_to_landlines)
        {
            return refuse(format!(
                "{channel} is not supported by landline numbers; use voice"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipient::PhoneNumber;

    fn line(n: &str) -> LineType {
        PhoneNumber::parse(n, None).unwrap().line_type()
    }

    #[test]
    fn the_metadata_tells_the_kinds_apart() {
        assert_eq!(line("+447400123456"), LineType::Mobile);
        assert_eq!(line("+442079460018"), LineType::FixedLine);
        assert_eq!(line("+14155550123"), LineType::FixedLineOrMobile);
        assert_eq!(line("+449098790000"), LineType::PremiumRate);
        assert_eq!(line("+33884012345"), LineType::SharedCost);
        assert_eq!(line("+33891123456"), LineType::PremiumRate);
    }

    #[test]
    fn defaults_refuse_premium_shared_cost_and_sms_to_landlines() {
        let g = NumberTypeGuard::default();
        let premium = g.check(line("+449098790000"), Channel::Voice, false);
        assert!(premium.unwrap_err().reason.contains("premium_rate"));
        assert!(g.check(LineType::SharedCost, Channel::Sms, false).is_err());
        assert!(g.check(LineType::Unknown, Channel::Sms, false).is_err());
        assert!(g.check(LineType::FixedLine, Channel::Sms, false).is_err());
        assert!(g.check(LineType::FixedLine, Channel::Voice, false).is_ok());
        assert!(g.check(LineType::Mobile, Channel::Sms, false).is_ok());
        assert!(
            g.check(LineType::FixedLineOrMobile, Channel::Sms, false)
                .is_ok()
        );
    }

    #[test]
    fn tuning_opens_or_closes_kinds() {
        let g = NumberTypeGuard {
            blocked_types: vec![LineType::Voip],
            refuse_sms_to_fixed_line: false,
            ..Default::default()
        };
        assert!(g.check(LineType::FixedLine, Channel::Sms, false).is_ok());
        assert!(g.check(LineType::FixedLine, Channel::Sms, true).is_err());
        assert!(g.check(LineType::Voip, Channel::Sms, false).is_err());
        assert!(g.check(LineType::PremiumRate, Channel::Sms, false).is_ok());
        let parsed: NumberTypeGuard =
            serde_json::from_str(r#"{"blocked_types": ["premium_rate", "landline"]}"#).unwrap();
        assert_eq!(
            parsed.blocked_types,
            vec![LineType::PremiumRate, LineType::FixedLine]
        );
        assert!(parsed.refuse_sms_to_fixed_line, "left out: default");
    }
}
