//! Message rendering: a service's template for the locale, filled for one delivery.

use chrono::{DateTime, Utc};
use otpd_core::channel::Channel;
use otpd_core::service::Service;
use otpd_core::template::{MessageContext, render};
use zeroize::Zeroizing;

/// A message's subject (email only) and text.
pub struct Rendered {
    /// Subject line for email.
    pub subject: Option<String>,
    /// The text with the code.
    pub body: Zeroizing<String>,
}

/// Renders the message of `service` in `locale` for `channel`. The SMS Retriever and
/// WebOTP lines apply to SMS only.
pub fn message(
    service: &Service,
    channel: Channel,
    locale: &str,
    code: &str,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Rendered {
    let seconds_left = (expires_at - now).num_seconds().max(1) as u64;
    let sms = channel == Channel::Sms;
    let ctx = MessageContext {
        code,
        service: service.display_name(),
        minutes: seconds_left.div_ceil(60),
        app_hash: service.settings.app_hash.as_deref().filter(|_| sms),
        webotp_domain: service.settings.webotp_domain.as_deref().filter(|_| sms),
    };
    Rendered {
        subject: (channel == Channel::Email)
            .then(|| format!("Your {} verification code", service.display_name())),
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
        let sms = message(
            &s,
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
            Channel::Voice,
            "fr-FR",
            "123456",
            now + Duration::seconds(61),
            now,
        );
        assert_eq!(voice.body.as_str(), "Code 123456 pour acme");
        let email = message(
            &s,
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
    }
}
