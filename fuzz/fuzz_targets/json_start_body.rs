//! JSON decoding of `POST /v1/verifications` bodies into the server's own request type,
//! then the parsing the handler does next (channels, recipient, locale, TTL): never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otpd_core::channel::Channel;
use otpd_core::recipient::Recipient;
use otpd_core::service::{validate_locale, validate_ttl};
use otpd_server::api::verifications::StartBody;

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<StartBody>(data) else {
        return;
    };
    let channel = body
        .channel
        .as_deref()
        .map(str::parse::<Channel>)
        .unwrap_or(Ok(Channel::Sms));
    for c in body.channels.iter().flatten() {
        let _ = c.parse::<Channel>();
    }
    if let Ok(channel) = channel {
        if let Ok(r) = Recipient::parse_for(channel, &body.to, body.country.as_deref()) {
            assert!(!r.as_str().is_empty());
        }
    }
    if let Some(l) = &body.locale {
        let _ = validate_locale(l);
    }
    if let Some(t) = body.ttl_seconds {
        let _ = validate_ttl(t);
    }
    if let Some(m) = &body.metadata {
        let _ = m.to_string();
    }
});
