//! Delivery channels: how a code travels to the user.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

use crate::DomainError;

/// A way of delivering a code. Every channel but `email` addresses a phone number.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// Text message.
    Sms,
    /// Phone call reading the code aloud.
    Voice,
    /// WhatsApp authentication message.
    Whatsapp,
    /// Email message.
    Email,
    /// USSD, pulled by the user: they dial the service code and the held code is shown
    /// on their screen.
    Ussd,
}

impl Channel {
    /// Every channel, in a stable order.
    pub const ALL: [Channel; 5] = [
        Channel::Sms,
        Channel::Voice,
        Channel::Whatsapp,
        Channel::Email,
        Channel::Ussd,
    ];

    /// The wire name (`sms`, `voice`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Sms => "sms",
            Channel::Voice => "voice",
            Channel::Whatsapp => "whatsapp",
            Channel::Email => "email",
            Channel::Ussd => "ussd",
        }
    }

    /// Whether the recipient of this channel is a phone number (all but email).
    pub fn addresses_phone(self) -> bool {
        self != Channel::Email
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Channel {
    type Err = DomainError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Channel::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| {
                DomainError::UnsupportedChannel(format!("unknown channel '{}'", truncate(s)))
            })
    }
}

/// Cuts user input echoed in an error to a readable length.
pub(crate) fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_channel() {
        for c in Channel::ALL {
            assert_eq!(c.as_str().parse::<Channel>().unwrap(), c);
        }
        assert!(matches!(
            "fax".parse::<Channel>(),
            Err(DomainError::UnsupportedChannel(_))
        ));
    }
}
