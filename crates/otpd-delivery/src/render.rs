//! Message rendering: a service's template for the locale, filled for one delivery.

use chrono::{DateTime, Utc};
use otpd_core::channel::Channel;
use otpd_core::service::Service;
use otpd_core::template::{MessageContext, render};
use otpd_core::verification::MessageOptions;
use zeroize::Zeroizing;

/// A message's subject (email only) and text.
pub struct Rendered {
    /// Subject line for email.
    pub subject: Option<String>,
    /// The text with the code.
    pub body: Zeroizing<String>,
}

/// Renders the message of `service` in `locale` for `channel`, with the verification's
/// own overrides (`options`: display name, app hash). The SMS Retriever and WebOTP lines
/// apply to SMS only.
pub fn message(
    service: &Service,
    options: &MessageOptions,
    channel: Channel,
    locale: &str,
    code: &str,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Rendered {
    let seconds_left = (expires_at - now).num_seconds().max(1) as u64;
    let sms = channel == Channel::Sms;
    let name = options
        .friendly_name
        .as_deref()
        .unwrap_or_else(|| service.display_name());
    let app_hash = options
        .app_hash
        .as_deref()
        .or(service.settings.app_hash.as_deref());
    let ctx = MessageContext {
        code,
        service: name,
        minutes: seconds_left.div_ceil(60),
        app_hash: app_hash.filter(|_| sms),
        webotp_domain: service.settings.webotp_domain.as_deref().filter(|_| sms),
    };
    Rendered {
        subject: (channel == Channel::Email).then(|| format!("Your {name} verification code")),
        body: render(&service.template_for(locale), &ctx),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;
    use otpd_core::service::ServiceSettings;

    fn service() -> Service {
        let now = Utc::now();
        Service {
            id: "svc_1".into(),
            name: "acme".into(),
            sid: "VA1".into(),
            settings: ServiceSettings {
                webotp_domain: Some("acme.example".into()),
                templates: [("fr".to_string(), "Code {code} pour {service}".to_string())].into(),
                ..ServiceSettings::default()
            },
            webhook_secret: None,
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn renders_service_template_minutes_and_sms_only_lines() {
        let now = Utc::now();
        let s = service();
        let none = MessageOptions::default();
        let sms = message(
            &s,
            &none,
            Channel::Sms,
            "en",
            "123456",
            now + Duration::seconds(600),
            now,
        );
        assert!(
            sms.body
                .starts_with("Your acme verification code is 123456. It expires in 10 minutes.")
        );
        assert!(sms.body.ends_with("@acme.example #123456"));
        let voice = message(
            &s,
            &none,
            Channel::Voice,
            "fr-FR",
            "123456",
            now + Duration::seconds(61),
            now,
        );
        assert_eq!(voice.body.as_str(), "Code 123456 pour acme");
        let email = message(
            &s,
            &none,
            Channel::Email,
            "en",
            "123456",
            now + Duration::seconds(30),
            now,
        );
        assert_eq!(
            email.subject.as_deref(),
            Some("Your acme verification code")
        );
        assert!(email.body.contains("expires in 1 minutes"));
        let custom = MessageOptions {
            friendly_name: Some("Shop".into()),
            app_hash: Some("FA+9qCX9VSu".into()),
        };
        let sms = message(
            &s,
            &custom,
            Channel::Sms,
            "en",
            "123456",
            now + Duration::seconds(600),
            now,
        );
        assert!(
            sms.body
                .starts_with("Your Shop verification code is 123456.")
        );
        assert!(
            sms.body.contains("\nFA+9qCX9VSu\n"),
            "{}",
            sms.body.as_str()
        );
    }
}
