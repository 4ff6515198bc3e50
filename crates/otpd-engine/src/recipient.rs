//! Who a code goes to: the channel of this send and its fallbacks, the recipient (or a
//! configured test number with its fixed code), and a recipient as a check names it.

use otpd_core::channel::Channel;
use otpd_core::code::OtpCode;
use otpd_core::recipient::{PhoneNumber, Recipient};
use otpd_core::service::Service;

use crate::error::{VerifyError, VerifyResult};

/// The channel of this send and its fallbacks.
pub(crate) fn channels_of(
    channel: Option<Channel>,
    workflow: &[Channel],
    service: &Service,
) -> VerifyResult<(Channel, Vec<Channel>)> {
    let first = match channel {
        Some(c) => c,
        None => workflow
            .first()
            .copied()
            .or_else(|| service.settings.channels.first().copied())
            .unwrap_or(Channel::Sms),
    };
    let mut fallback: Vec<Channel> = Vec::new();
    for &c in workflow {
        if c != first && !fallback.contains(&c) {
            fallback.push(c);
        }
    }
    if fallback
        .iter()
        .any(|c| c.addresses_phone() != first.addresses_phone())
    {
        return Err(VerifyError::invalid(
            "channels must all address the same kind of recipient (phone or email)",
        ));
    }
    Ok((first, fallback))
}

/// A recipient, or a configured test number with its fixed code.
pub(crate) fn recipient_of(
    service: &Service,
    channel: Channel,
    to: &str,
    country: Option<&str>,
) -> VerifyResult<(Recipient, Option<OtpCode>)> {
    if channel.addresses_phone()
        && let Ok(possible) = PhoneNumber::parse_possible(to, country)
        && let Some(code) = service.settings.test_numbers.get(possible.e164())
    {
        let code = OtpCode::parse(code)?;
        return Ok((Recipient::Phone(possible), Some(code)));
    }
    Ok((Recipient::parse_for(channel, to, country)?, None))
}

/// Resolves a `to` for checking: a test number, a phone number, or an email address.
pub fn check_recipient(service: &Service, to: &str, country: Option<&str>) -> VerifyResult<String> {
    if to.contains('@') {
        return Ok(Recipient::parse_for(Channel::Email, to, None)?
            .as_str()
            .to_string());
    }
    if let Ok(possible) = PhoneNumber::parse_possible(to, country)
        && service.settings.test_numbers.contains_key(possible.e164())
    {
        return Ok(possible.e164().to_string());
    }
    Ok(PhoneNumber::parse(to, country)?.e164().to_string())
}
