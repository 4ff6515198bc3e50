//! Message rendering: a service's template for the locale, filled for one delivery, in
//! the form each channel needs:
//!
//! - **sms**: the text (with the SMS Retriever and WebOTP lines), its GSM-7/UCS-2 encoding
//!   and segment count ([`crate::sms`]);
//! - **voice**: a script that reads the code digit by digit, with pauses, twice;
//! - **email**: a subject (never the code), a plain-text part and an HTML part;
//! - **whatsapp**: the text, and [`whatsapp_auth_template`] for the Cloud API's
//!   authentication-template form (the code as body parameter and copy-code button);
//! - **ussd**: the text.
//!
//! Built-in texts exist for en, fr, es, pt, de, ar, hi and sw. A service overrides any of
//! them with `templates` keys `fr` (every channel), `voice:fr`, `email:fr`,
//! `email_subject:fr`, `sms:fr`, `whatsapp:fr`, `ussd:fr` (exact locale, then language).

use chrono::{DateTime, Utc};
use otpd_core::channel::Channel;
use otpd_core::service::Service;
use otpd_core::template::{
    MessageContext, built_in_subject, built_in_voice, language_of, render, spoken_digits,
};
use otpd_core::verification::MessageOptions;
use zeroize::Zeroizing;

use crate::sms::{self, SmsInfo};

/// Languages written right to left (the HTML part says so).
const RTL_LANGUAGES: &[&str] = &["ar", "fa", "he", "ur"];

/// A message ready for its channel.
pub struct Rendered {
    /// Subject line (email).
    pub subject: Option<String>,
    /// The text with the code (the plain-text part of an email; the voice script).
    pub body: Zeroizing<String>,
    /// The HTML part (email).
    pub html: Option<Zeroizing<String>>,
    /// Encoding and segment count (sms).
    pub sms: Option<SmsInfo>,
}

/// Renders the message of `service` in `locale` for `channel`, with the verification's
/// own overrides (`options`: display name, app hash, a chosen built-in template for SMS).
/// The SMS Retriever and WebOTP lines
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
    let text_template = || match options.built_in_warning {
        // A template chosen for this verification (Twilio's `TemplateSid`, SMS only).
        Some(warning) if sms => otpd_core::template::built_in_with(locale, warning),
        _ => service
            .template_override(channel.as_str(), locale)
            .unwrap_or_else(|| service.template_for(locale)),
    };
    match channel {
        Channel::Voice => {
            let spoken = spoken_digits(code);
            let voice_ctx = MessageContext {
                code: &spoken,
                ..ctx
            };
            let own = service
                .template_override("voice", locale)
                .or_else(|| has_own_text(service, locale).then(|| service.template_for(locale)));
            let body = match own {
                Some(t) if t.matches("{code}").count() < 2 => {
                    // A one-time text is said twice.
                    let once = render(&t, &voice_ctx);
                    Zeroizing::new(format!("{} {}", once.as_str(), once.as_str()))
                }
                Some(t) => render(&t, &voice_ctx),
                None => render(built_in_voice(locale), &voice_ctx),
            };
            Rendered {
                subject: None,
                body,
                html: None,
                sms: None,
            }
        }
        Channel::Email => {
            let subject_template = service
                .template_override("email_subject", locale)
                .unwrap_or_else(|| built_in_subject(locale).to_string());
            let subject_ctx = MessageContext { code: "", ..ctx };
            let subject = render(&subject_template, &subject_ctx).to_string();
            let body = render(&text_template(), &ctx);
            let html = email_html(&subject, &body, code, locale);
            Rendered {
                subject: Some(subject),
                body,
                html: Some(html),
                sms: None,
            }
        }
        Channel::Sms => {
            let body = render(&text_template(), &ctx);
            let info = sms::analyze(&body);
            Rendered {
                subject: None,
                body,
                html: None,
                sms: Some(info),
            }
        }
        Channel::Whatsapp | Channel::Ussd => Rendered {
            subject: None,
            body: render(&text_template(), &ctx),
            html: None,
            sms: None,
        },
    }
}

/// Whether the service set its own every-channel text for this locale or its language.
fn has_own_text(service: &Service, locale: &str) -> bool {
    let t = &service.settings.templates;
    t.contains_key(locale) || t.contains_key(&language_of(locale))
}

/// Escapes text for HTML element content and attribute values.
pub fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\n' => out.push_str("<br>"),
            c => out.push(c),
        }
    }
    out
}

/// The HTML part of an email: the text (escaped), and the code large, on its own.
fn email_html(subject: &str, text: &str, code: &str, locale: &str) -> Zeroizing<String> {
    let language = language_of(locale);
    let dir = if RTL_LANGUAGES.contains(&language.as_str()) {
        "rtl"
    } else {
        "ltr"
    };
    Zeroizing::new(format!(
        "<!doctype html>\n<html lang=\"{lang}\" dir=\"{dir}\"><head><meta charset=\"utf-8\"><title>{title}</title></head>\n\
         <body style=\"font-family:sans-serif\">\n<p>{text}</p>\n\
         <p style=\"font-size:28px;font-weight:bold;letter-spacing:6px\">{code}</p>\n</body></html>\n",
        lang = html_escape(&language),
        title = html_escape(subject),
        text = html_escape(text),
        code = html_escape(code),
    ))
}

/// Most GSM 03.38 characters one USSD screen shows (160 octets of 7-bit text; GSM 03.90).
pub const USSD_GSM7_LIMIT: usize = 182;
/// Most UTF-16 units one USSD screen shows when the text needs UCS-2 (160 octets).
pub const USSD_UCS2_LIMIT: usize = 80;

/// Whether `text` fits one USSD screen ([`USSD_GSM7_LIMIT`] septets, or
/// [`USSD_UCS2_LIMIT`] UCS-2 units).
pub fn fits_ussd_screen(text: &str) -> bool {
    let info = crate::sms::analyze(text);
    match info.encoding {
        crate::sms::Encoding::Gsm7 => info.units <= USSD_GSM7_LIMIT,
        crate::sms::Encoding::Ucs2 => info.units <= USSD_UCS2_LIMIT,
    }
}

/// The final USSD answer (`END <text>`) for a rendered message: the whole message when it
/// fits one screen, else its first sentence that holds the code, else the code alone —
/// never a screen the network cuts (and with it, perhaps, the code).
pub fn ussd_reply(body: &str, code: &str) -> String {
    let whole = format!("END {body}");
    if fits_ussd_screen(&whole) {
        return whole;
    }
    let sentence = body
        .split_inclusive(['.', '!', '?', '\n'])
        .map(str::trim)
        .find(|s| s.contains(code))
        .map(|s| format!("END {s}"))
        .filter(|s| fits_ussd_screen(s));
    sentence.unwrap_or_else(|| format!("END {code}"))
}

/// The language codes of WhatsApp message templates, from Meta's "Supported languages"
/// (<https://developers.facebook.com/docs/whatsapp/business-management-api/message-templates/supported-languages>).
pub const WHATSAPP_LANGUAGES: &[&str] = &[
    "af", "sq", "ar", "ar_EG", "ar_AE", "ar_LB", "ar_MA", "ar_QA", "az", "be_BY", "bn", "bn_IN",
    "bg", "ca", "zh_CN", "zh_HK", "zh_TW", "hr", "cs", "da", "prs_AF", "nl", "nl_BE", "en",
    "en_GB", "en_US", "en_AE", "en_AU", "en_CA", "en_GH", "en_IE", "en_IN", "en_JM", "en_MY",
    "en_NZ", "en_QA", "en_SG", "en_UG", "en_ZA", "et", "fil", "fi", "fr", "fr_BE", "fr_CA",
    "fr_CH", "fr_CI", "fr_MA", "ka", "de", "de_AT", "de_CH", "el", "gu", "ha", "he", "hi", "hu",
    "id", "ga", "it", "ja", "kn", "kk", "rw_RW", "ko", "ky_KG", "lo", "lv", "lt", "mk", "ms", "ml",
    "mr", "nb", "ps_AF", "fa", "pl", "pt_BR", "pt_PT", "pa", "ro", "ru", "sr", "si_LK", "sk", "sl",
    "es", "es_AR", "es_CL", "es_CO", "es_CR", "es_DO", "es_EC", "es_HN", "es_MX", "es_PA", "es_PE",
    "es_ES", "es_UY", "sw", "sv", "ta", "te", "th", "tr", "uk", "ur", "uz", "vi", "zu",
];

/// The language of `supported` (BCP 47 tags such as `fr-CA`) for a locale: the tag itself
/// (`fr_CA` or `fr-ca` read as `fr-CA`), else the first with the same primary language
/// (`fr-BE` → `fr-FR`), else `fallback`. For voice providers that read text aloud.
pub fn closest_language(
    locale: &str,
    supported: &[&'static str],
    fallback: &'static str,
) -> &'static str {
    let locale = locale.replace('_', "-");
    let primary = locale
        .split('-')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    supported
        .iter()
        .find(|l| l.eq_ignore_ascii_case(&locale))
        .or_else(|| {
            supported
                .iter()
                .find(|l| l.split('-').next() == Some(primary.as_str()))
        })
        .copied()
        .unwrap_or(fallback)
}

/// The template language for a locale: the first of `ll_RR` and `ll` that is one of
/// `approved` (the languages the operator's template is approved in), else the first of
/// `approved`. Without `approved`, the first of `ll_RR` and `ll` that Meta supports
/// ([`WHATSAPP_LANGUAGES`]), else `en_US`. `fr-CA` with a template approved in `fr` and
/// `en_US` is `fr`: never a language the template lacks ("template missing", 132001).
pub fn whatsapp_language(locale: &str, approved: &[String]) -> String {
    let normal = locale.replace('-', "_");
    let (lang, region) = match normal.split_once('_') {
        Some((l, r)) => (l.to_ascii_lowercase(), Some(r.to_ascii_uppercase())),
        None => (normal.to_ascii_lowercase(), None),
    };
    let candidates: Vec<String> = region
        .map(|r| format!("{lang}_{r}"))
        .into_iter()
        .chain([lang.clone()])
        .collect();
    if !approved.is_empty() {
        return candidates
            .iter()
            .find_map(|c| approved.iter().find(|a| a.eq_ignore_ascii_case(c)))
            .unwrap_or(&approved[0])
            .clone();
    }
    candidates
        .iter()
        .find_map(|c| {
            WHATSAPP_LANGUAGES
                .iter()
                .find(|a| a.eq_ignore_ascii_case(c))
        })
        .map_or("en_US", |l| l)
        .to_string()
}

/// The WhatsApp Cloud API message of an authentication template (`POST
/// /{phone-number-id}/messages`) in template language `language` ([`whatsapp_language`]):
/// the code is the body parameter and the parameter of the copy-code (URL) button, as
/// Meta's authentication templates require.
pub fn whatsapp_auth_template(
    to: &str,
    template: &str,
    language: &str,
    code: &str,
) -> serde_json::Value {
    serde_json::json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to.trim_start_matches('+'),
        "type": "template",
        "template": {
            "name": template,
            "language": {"code": language},
            "components": [
                {"type": "body", "parameters": [{"type": "text", "text": code}]},
                {"type": "button", "sub_type": "url", "index": "0",
                 "parameters": [{"type": "text", "text": code}]}
            ]
        }
    })
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
        assert_eq!(
            voice.body.as_str(),
            "Code 1, 2, 3, 4, 5, 6 pour acme Code 1, 2, 3, 4, 5, 6 pour acme"
        );
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
            ..MessageOptions::default()
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

    #[test]
    fn a_chosen_built_in_template_wins_over_the_services_for_sms_only() {
        let now = Utc::now();
        let mut s = plain_service();
        s.settings.templates = [("fr".to_string(), "{code} maison".to_string())].into();
        for (warning, tail) in [(true, "personne."), (false, "minutes.")] {
            let chosen = MessageOptions {
                built_in_warning: Some(warning),
                ..MessageOptions::default()
            };
            let sms = message(
                &s,
                &chosen,
                Channel::Sms,
                "fr",
                "123456",
                now + Duration::seconds(600),
                now,
            );
            assert!(sms.body.starts_with("Votre code"), "{}", sms.body.as_str());
            assert!(sms.body.ends_with(tail), "{}", sms.body.as_str());
            let whatsapp = message(
                &s,
                &chosen,
                Channel::Whatsapp,
                "fr",
                "123456",
                now + Duration::seconds(600),
                now,
            );
            assert_eq!(whatsapp.body.as_str(), "123456 maison");
        }
    }

    fn plain_service() -> Service {
        let mut s = service();
        s.settings.templates.clear();
        s.settings.webotp_domain = None;
        s
    }

    fn at(channel: Channel, s: &Service, locale: &str) -> Rendered {
        let now = Utc::now();
        message(
            s,
            &MessageOptions::default(),
            channel,
            locale,
            "481516",
            now + Duration::seconds(600),
            now,
        )
    }

    #[test]
    fn voice_reads_the_digits_one_by_one_twice() {
        let s = plain_service();
        let en = at(Channel::Voice, &s, "en");
        assert_eq!(
            en.body.as_str(),
            "Your acme verification code is: 4, 8, 1, 5, 1, 6. Once again, your code is: 4, 8, 1, 5, 1, 6."
        );
        let sw = at(Channel::Voice, &s, "sw-TZ");
        assert_eq!(sw.body.matches("4, 8, 1, 5, 1, 6").count(), 2);
        assert!(sw.body.starts_with("Nambari"));
        assert!(!sw.body.contains("481516"));
    }

    #[test]
    fn email_has_a_subject_a_text_and_an_escaped_html_part() {
        let mut s = plain_service();
        s.name = "a<b>&c".into();
        let mail = at(Channel::Email, &s, "de");
        let subject = mail.subject.clone().unwrap();
        assert!(!subject.contains("481516"), "{subject}");
        assert!(subject.contains("Bestätigungscode"));
        assert!(mail.body.contains("481516"));
        let html = mail.html.unwrap();
        assert!(html.contains("lang=\"de\" dir=\"ltr\""));
        assert!(html.contains("a&lt;b&gt;&amp;c"), "{}", html.as_str());
        assert!(!html.contains("<b>"));
        assert!(html.contains(">481516</p>"));
        let ar = at(Channel::Email, &plain_service(), "ar");
        assert!(ar.html.unwrap().contains("dir=\"rtl\""));
    }

    #[test]
    fn sms_reports_encoding_and_segments() {
        let s = plain_service();
        let en = at(Channel::Sms, &s, "en").sms.unwrap();
        assert_eq!(en.encoding, crate::sms::Encoding::Gsm7);
        assert_eq!(en.segments, 1);
        let hi = at(Channel::Sms, &s, "hi").sms.unwrap();
        assert_eq!(hi.encoding, crate::sms::Encoding::Ucs2);
        assert_eq!(hi.segments, 2, "{hi:?}");
        assert!(at(Channel::Voice, &s, "en").sms.is_none());
    }

    #[test]
    fn every_template_can_be_overridden_per_channel_and_locale() {
        let mut s = plain_service();
        for (k, v) in [
            ("fr", "SMS {code}"),
            ("voice:fr", "Appel {code}, encore {code}"),
            ("email:fr", "Courriel {code}"),
            ("email_subject:fr", "Sujet {service}"),
            ("whatsapp:fr", "WA {code}"),
        ] {
            s.settings.templates.insert(k.into(), v.into());
        }
        assert_eq!(at(Channel::Sms, &s, "fr-CA").body.as_str(), "SMS 481516");
        assert_eq!(
            at(Channel::Voice, &s, "fr").body.as_str(),
            "Appel 4, 8, 1, 5, 1, 6, encore 4, 8, 1, 5, 1, 6"
        );
        let mail = at(Channel::Email, &s, "fr");
        assert_eq!(mail.subject.as_deref(), Some("Sujet acme"));
        assert_eq!(mail.body.as_str(), "Courriel 481516");
        assert_eq!(at(Channel::Whatsapp, &s, "fr").body.as_str(), "WA 481516");
        assert_eq!(at(Channel::Ussd, &s, "fr").body.as_str(), "SMS 481516");
        // Other locales keep the built-in texts.
        assert!(at(Channel::Voice, &s, "es").body.starts_with("Tu código"));
    }

    /// Issue 23: a service without `friendly_name` is named in every message by its own
    /// name (`default` for the built-in service), in every built-in language and channel;
    /// a `friendly_name` replaces it.
    #[test]
    fn messages_name_the_service_by_its_name_when_friendly_name_is_unset() {
        let mut s = plain_service();
        assert_eq!(s.settings.friendly_name, None);
        let channels = [
            Channel::Sms,
            Channel::Voice,
            Channel::Email,
            Channel::Whatsapp,
            Channel::Ussd,
        ];
        for locale in ["en", "fr", "es", "pt", "de", "ar", "hi", "sw"] {
            for channel in channels {
                let m = at(channel, &s, locale);
                assert!(
                    m.body.contains("acme"),
                    "{channel} {locale}: {}",
                    m.body.as_str()
                );
                if let Some(subject) = &m.subject {
                    assert!(subject.contains("acme"), "{locale}: {subject}");
                }
            }
        }
        assert!(
            at(Channel::Sms, &s, "en")
                .body
                .starts_with("Your acme verification code is 481516.")
        );
        s.settings.friendly_name = Some("Acme Shop".into());
        for channel in channels {
            let m = at(channel, &s, "en");
            assert!(
                m.body.contains("Acme Shop"),
                "{channel}: {}",
                m.body.as_str()
            );
            assert!(!m.body.contains("acme"), "{channel}: {}", m.body.as_str());
        }
    }

    #[test]
    fn whatsapp_authentication_template_form() {
        // The caller maps the locale (whatsapp_language); the template carries Meta's code.
        let m = whatsapp_auth_template(
            "+14155550123",
            "otp_auth",
            &whatsapp_language("pt-BR", &[]),
            "481516",
        );
        assert_eq!(m["to"], "14155550123");
        assert_eq!(m["type"], "template");
        assert_eq!(m["template"]["language"]["code"], "pt_BR");
        let c = &m["template"]["components"];
        assert_eq!(c[0]["parameters"][0]["text"], "481516");
        assert_eq!(c[1]["sub_type"], "url");
        assert_eq!(c[1]["parameters"][0]["text"], "481516");
    }

    // USSD screens: 182 GSM 03.38 characters (160 octets of 7-bit text), 80 when the text
    // needs UCS-2 (GSM 03.90 / 3GPP TS 23.090; Africa's Talking documents the 182 limit
    // for its USSD responses).
    #[test]
    fn ussd_replies_fit_one_screen() {
        assert_eq!(
            ussd_reply("Your code is 481516.", "481516"),
            "END Your code is 481516."
        );
        let long = format!(
            "{}. Your code is 481516. {}",
            "x".repeat(120),
            "y".repeat(80)
        );
        let reply = ussd_reply(&long, "481516");
        assert_eq!(reply, "END Your code is 481516.");
        assert!(fits_ussd_screen(&reply));
        let exact = format!("END {}", "a".repeat(USSD_GSM7_LIMIT - 4));
        assert!(fits_ussd_screen(&exact));
        assert!(!fits_ussd_screen(&format!("{exact}a")));
        let greek = format!("Κωδικός 481516 {}", "ж".repeat(70));
        assert!(!fits_ussd_screen(&format!("END {greek}")));
        assert_eq!(ussd_reply(&greek, "481516"), "END 481516");
    }
}
