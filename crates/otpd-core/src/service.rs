//! Services: the per-application defaults a verification starts from.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::DomainError;
use crate::channel::{Channel, truncate};
use crate::code::{MAX_CODE_LENGTH, MIN_CODE_LENGTH, OtpCode};
use crate::guards::GuardSettings;
use crate::lockout::LockoutPolicy;
use crate::recipient::PhoneNumber;
use crate::template::MAX_TEMPLATE_LEN;

/// The name of the service that exists from first start.
pub const DEFAULT_SERVICE: &str = "default";
/// Longest code lifetime a service may set (24 h, as Twilio's upper bound).
pub const MAX_TTL_SECONDS: u32 = 86_400;
/// Most check attempts a service may allow.
pub const MAX_CHECK_ATTEMPTS: u32 = 20;

/// Send limits per recipient.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimits {
    /// Most sends (first send and resends) to one `to` within the window.
    #[serde(default = "default_sends_per_to")]
    pub sends_per_to: u32,
    /// The window, in seconds.
    #[serde(default = "default_send_window")]
    pub send_window_seconds: u32,
}

fn default_sends_per_to() -> u32 {
    5
}
fn default_send_window() -> u32 {
    600
}

impl RateLimits {
    /// The per-recipient send limit these settings make.
    pub fn send_limit(&self) -> crate::start::SendLimit {
        crate::start::SendLimit {
            count: self.sends_per_to,
            window: chrono::Duration::seconds(i64::from(self.send_window_seconds)),
        }
    }
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            sends_per_to: default_sends_per_to(),
            send_window_seconds: default_send_window(),
        }
    }
}

/// A service's settings, stored as one document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct ServiceSettings {
    /// Shown in messages as `{service}`; defaults to the name.
    pub friendly_name: Option<String>,
    /// Digits per code (4–10).
    #[schema(minimum = 4, maximum = 10)]
    pub code_length: u8,
    /// Code lifetime in seconds.
    pub ttl_seconds: u32,
    /// Wrong checks allowed before the verification locks.
    pub max_check_attempts: u32,
    /// Channels offered; the first is the default.
    pub channels: Vec<Channel>,
    /// Message templates by locale, overriding the built-in ones.
    pub templates: BTreeMap<String, String>,
    /// Locale used when a request names none.
    pub default_locale: String,
    /// Android SMS Retriever app hash line.
    pub app_hash: Option<String>,
    /// WebOTP `@domain #code` line.
    pub webotp_domain: Option<String>,
    /// When set, only numbers of these regions get codes.
    pub allowed_countries: Option<Vec<String>>,
    /// Send limits.
    pub rate_limits: RateLimits,
    /// Where events are POSTed.
    pub webhook_url: Option<String>,
    /// Numbers with fixed codes that are never delivered (E.164 → code).
    pub test_numbers: BTreeMap<String, String>,
    /// Whether the built-in templates end with the "don't share" warning; `None` keeps
    /// otpd's default (with it). Twilio's `DoNotShareWarningEnabled`.
    pub do_not_share_warning: Option<bool>,
    /// Refuse SMS to numbers the phone metadata knows as fixed lines (Twilio's
    /// `SkipSmsToLandlines`, answered with `number_type_blocked`).
    pub skip_sms_to_landlines: bool,
    /// Show the number's line type (from the phone metadata) on Twilio-style verification
    /// replies (Twilio's `LookupEnabled`).
    pub lookup_enabled: bool,
    /// Allow callers to choose the code (Twilio's `CustomCode`, 4–10 digits).
    pub custom_code_enabled: bool,
    /// Twilio's `DefaultTemplateSid` (`HJ…`), kept and shown; otpd renders its own
    /// `templates`.
    pub default_template_sid: Option<String>,
    /// Where Twilio-style status callbacks are POSTed (form body signed with
    /// `X-Twilio-Signature`).
    pub status_callback_url: Option<String>,
    /// Wrong codes per recipient or entity before checks (of every kind) are refused.
    pub lockout: LockoutPolicy,
    /// Abuse guards (geo, number type, rate limits), each `off`, `shadow` or `enforce`.
    pub guards: GuardSettings,
    /// Keyed rate limits (Twilio's Service Rate Limits; managed on `/v2`): starts name
    /// them with a key and take a token from each of their buckets for it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub keyed_rate_limits: Vec<crate::guards::keyed::KeyedLimit>,
    /// Senders per destination country (Twilio's Messaging Configurations; managed on
    /// `/v2`): the Twilio Messaging Service an SMS goes out through.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub messaging_configurations: Vec<crate::messaging::MessagingConfiguration>,
    /// Webhooks for authenticator-factor events (Twilio's Service Webhooks; managed on
    /// `/v2`), each signed with a sealed API key that no API shows.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(ignore)]
    pub factor_webhooks: Vec<crate::factor_webhook::FactorWebhook>,
    /// The relying party of the service's passkeys (WebAuthn); passkeys are off without it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passkeys: Option<crate::passkey::PasskeySettings>,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        ServiceSettings {
            friendly_name: None,
            code_length: 6,
            ttl_seconds: 600,
            max_check_attempts: 5,
            channels: vec![Channel::Sms],
            templates: BTreeMap::new(),
            default_locale: "en".into(),
            app_hash: None,
            webotp_domain: None,
            allowed_countries: None,
            rate_limits: RateLimits::default(),
            webhook_url: None,
            test_numbers: BTreeMap::new(),
            do_not_share_warning: None,
            skip_sms_to_landlines: false,
            lookup_enabled: false,
            custom_code_enabled: false,
            default_template_sid: None,
            status_callback_url: None,
            lockout: LockoutPolicy::default(),
            guards: GuardSettings::default(),
            keyed_rate_limits: Vec::new(),
            messaging_configurations: Vec::new(),
            factor_webhooks: Vec::new(),
            passkeys: None,
        }
    }
}

/// A service record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    /// `svc_…`
    pub id: String,
    /// Unique name used by the native API.
    pub name: String,
    /// Twilio SID (`VA…`), derived from the id.
    pub sid: String,
    /// Settings.
    pub settings: ServiceSettings,
    /// Webhook signing secret (`whsec_…`), when a webhook URL is set.
    pub webhook_secret: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

impl Service {
    /// The name shown in messages.
    pub fn display_name(&self) -> &str {
        self.settings.friendly_name.as_deref().unwrap_or(&self.name)
    }

    /// The service's own template of a kind (`voice`, `email`, `email_subject`, …) for a
    /// locale (`kind:locale`, then `kind:language`), if it set one.
    pub fn template_override(&self, kind: &str, locale: &str) -> Option<String> {
        let language = crate::template::language_of(locale);
        self.settings
            .templates
            .get(&format!("{kind}:{locale}"))
            .or_else(|| self.settings.templates.get(&format!("{kind}:{language}")))
            .cloned()
    }

    /// The template for a locale: the service's own (exact locale, then language), else
    /// the built-in one.
    pub fn template_for(&self, locale: &str) -> String {
        let language = crate::template::language_of(locale);
        self.settings
            .templates
            .get(locale)
            .or_else(|| self.settings.templates.get(&language))
            .cloned()
            .unwrap_or_else(|| {
                crate::template::built_in_with(
                    locale,
                    self.settings.do_not_share_warning.unwrap_or(true),
                )
            })
    }
}

/// Checks a service name: 1–64 characters of `[A-Za-z0-9_.-]`, not shaped like a SID.
pub fn validate_name(name: &str) -> Result<(), DomainError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        && crate::ids::Kind::Service.id_of_sid(name).is_none();
    if ok {
        Ok(())
    } else {
        Err(DomainError::InvalidRequest(
            "name must be 1-64 characters of letters, digits, '_', '.', '-'".into(),
        ))
    }
}

/// A partial change to settings; every present field is validated before any is applied.
#[derive(Clone, Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServicePatch {
    /// Shown in messages as `{service}`; empty clears it (the name is shown).
    pub friendly_name: Option<String>,
    /// Digits per code (4–10).
    #[schema(minimum = 4, maximum = 10)]
    pub code_length: Option<u8>,
    /// Code lifetime in seconds (1–86400).
    #[schema(minimum = 1, maximum = 86400)]
    pub ttl_seconds: Option<u32>,
    /// Wrong checks allowed (1–20).
    #[schema(minimum = 1, maximum = 20)]
    pub max_check_attempts: Option<u32>,
    /// Channels offered; the first is the default.
    pub channels: Option<Vec<Channel>>,
    /// Templates by locale; each must contain `{code}`.
    pub templates: Option<BTreeMap<String, String>>,
    /// Default locale.
    pub default_locale: Option<String>,
    /// Android SMS Retriever app hash (11 characters).
    pub app_hash: Option<String>,
    /// WebOTP domain.
    pub webotp_domain: Option<String>,
    /// ISO 3166 regions allowed.
    pub allowed_countries: Option<Vec<String>>,
    /// Send limits.
    pub rate_limits: Option<RateLimits>,
    /// Webhook target (http or https URL).
    pub webhook_url: Option<String>,
    /// Fixed codes for test numbers.
    pub test_numbers: Option<BTreeMap<String, String>>,
    /// Whether built-in templates end with the "don't share" warning.
    pub do_not_share_warning: Option<bool>,
    /// Refuse SMS to fixed-line numbers.
    pub skip_sms_to_landlines: Option<bool>,
    /// Show the line type on Twilio-style verification replies.
    pub lookup_enabled: Option<bool>,
    /// Allow caller-chosen codes.
    pub custom_code_enabled: Option<bool>,
    /// Twilio template SID (`HJ` + 32 hex), kept and shown; empty clears it.
    pub default_template_sid: Option<String>,
    /// Twilio-style status callback target (http or https URL); empty clears it.
    pub status_callback_url: Option<String>,
    /// Lockout after wrong codes (fields left out keep their defaults).
    pub lockout: Option<LockoutPolicy>,
    /// Abuse guards; replaces the whole section (fields left out take their defaults).
    pub guards: Option<GuardSettings>,
    /// The relying party of the service's passkeys (`rp_id`, `rp_name`, `origins`);
    /// `null` turns passkeys off.
    #[serde(default, deserialize_with = "passkeys_patch")]
    #[schema(value_type = Option<crate::passkey::PasskeySettings>)]
    pub passkeys: Option<Option<crate::passkey::PasskeySettings>>,
}

/// `passkeys` left out (`None`), `null` (`Some(None)`: off), or set.
fn passkeys_patch<'de, D>(d: D) -> Result<Option<Option<crate::passkey::PasskeySettings>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Option::<crate::passkey::PasskeySettings>::deserialize(d).map(Some)
}

/// Longest `friendly_name`, in characters.
pub const MAX_FRIENDLY_NAME: usize = 64;

fn invalid(msg: impl Into<String>) -> DomainError {
    DomainError::InvalidRequest(msg.into())
}

impl ServicePatch {
    /// Applies the patch to a copy of `settings`, or says which field is wrong.
    pub fn apply(self, settings: &ServiceSettings) -> Result<ServiceSettings, DomainError> {
        let mut s = settings.clone();
        if let Some(v) = self.friendly_name {
            if v.is_empty() {
                s.friendly_name = None;
            } else {
                crate::text::one_line("friendly_name", &v, MAX_FRIENDLY_NAME)?;
                s.friendly_name = Some(v);
            }
        }
        if let Some(v) = self.code_length {
            if !(MIN_CODE_LENGTH..=MAX_CODE_LENGTH).contains(&v) {
                return Err(invalid("code_length must be 4-10"));
            }
            s.code_length = v;
        }
        if let Some(v) = self.ttl_seconds {
            s.ttl_seconds = validate_ttl(v)?;
        }
        if let Some(v) = self.max_check_attempts {
            s.max_check_attempts = validate_attempts(v)?;
        }
        if let Some(v) = self.channels {
            if v.is_empty() {
                return Err(invalid("channels must not be empty"));
            }
            s.channels = v;
        }
        if let Some(v) = self.templates {
            for (key, t) in &v {
                // `fr` (every channel's text), or a per-channel override `voice:fr`,
                // `email:fr`, `whatsapp:fr`, `sms:fr`, `ussd:fr`, and `email_subject:fr`.
                let (kind, locale) = match key.split_once(':') {
                    Some((kind, locale)) => (Some(kind), locale),
                    None => (None, key.as_str()),
                };
                validate_locale(locale)?;
                let subject = kind == Some("email_subject");
                if let Some(kind) = kind.filter(|_| !subject) {
                    kind.parse::<crate::channel::Channel>().map_err(|_| {
                        invalid(format!(
                            "template key '{}': the part before ':' must be a channel or email_subject",
                            truncate(key)
                        ))
                    })?;
                }
                if subject {
                    crate::text::one_line("an email subject template", t, MAX_TEMPLATE_LEN)?;
                } else {
                    crate::text::multi_line("a template", t)?;
                }
                let needs_code = !subject;
                if subject && t.contains("{code}") {
                    return Err(invalid("an email subject must not contain {code}"));
                }
                if (needs_code && !t.contains("{code}")) || t.len() > MAX_TEMPLATE_LEN {
                    return Err(invalid(format!(
                        "template '{}' must contain {{code}} and be at most {MAX_TEMPLATE_LEN} bytes",
                        truncate(key)
                    )));
                }
            }
            s.templates = v;
        }
        if let Some(v) = self.default_locale {
            validate_locale(&v)?;
            s.default_locale = v;
        }
        if let Some(v) = self.app_hash {
            if v.is_empty() {
                s.app_hash = None;
            } else if v.len() == 11
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+/".contains(&b))
            {
                s.app_hash = Some(v);
            } else {
                return Err(invalid(
                    "app_hash must be the 11-character SMS Retriever hash",
                ));
            }
        }
        if let Some(v) = self.webotp_domain {
            if v.is_empty() {
                s.webotp_domain = None;
            } else if v.len() <= 253
                && v.contains('.')
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-".contains(&b))
            {
                s.webotp_domain = Some(v.to_ascii_lowercase());
            } else {
                return Err(invalid("webotp_domain must be a domain name"));
            }
        }
        if let Some(v) = self.allowed_countries {
            let mut list = Vec::with_capacity(v.len());
            for c in v {
                let up = c.to_ascii_uppercase();
                if up.len() != 2 || !up.bytes().all(|b| b.is_ascii_uppercase()) {
                    return Err(invalid(format!(
                        "'{}' is not an ISO 3166 country code",
                        truncate(&c)
                    )));
                }
                list.push(up);
            }
            s.allowed_countries = Some(list);
        }
        if let Some(v) = self.rate_limits {
            if v.sends_per_to == 0
                || v.sends_per_to > 1_000
                || v.send_window_seconds == 0
                || v.send_window_seconds > MAX_TTL_SECONDS
            {
                return Err(invalid(
                    "rate_limits: sends_per_to 1-1000, send_window_seconds 1-86400",
                ));
            }
            s.rate_limits = v;
        }
        if let Some(v) = self.webhook_url {
            if v.is_empty() {
                s.webhook_url = None;
            } else {
                s.webhook_url = Some(validate_http_url(v, "webhook_url")?);
            }
        }
        if let Some(v) = self.test_numbers {
            let mut map = BTreeMap::new();
            for (number, code) in v {
                let e164 = PhoneNumber::parse_possible(&number, None).map_err(|_| {
                    invalid(format!(
                        "test number '{}' must be in +E.164 form",
                        truncate(&number)
                    ))
                })?;
                OtpCode::parse(&code)
                    .map_err(|_| invalid("test number codes must be 4-10 digits"))?;
                map.insert(e164.e164().to_string(), code);
            }
            s.test_numbers = map;
        }
        if let Some(v) = self.do_not_share_warning {
            s.do_not_share_warning = Some(v);
        }
        if let Some(v) = self.skip_sms_to_landlines {
            s.skip_sms_to_landlines = v;
        }
        if let Some(v) = self.lookup_enabled {
            s.lookup_enabled = v;
        }
        if let Some(v) = self.custom_code_enabled {
            s.custom_code_enabled = v;
        }
        if let Some(v) = self.default_template_sid {
            if v.is_empty() {
                s.default_template_sid = None;
            } else if is_sid("HJ", &v) {
                s.default_template_sid = Some(v);
            } else {
                return Err(invalid(
                    "default_template_sid must be a template SID (HJ + 32 hex digits)",
                ));
            }
        }
        if let Some(v) = self.status_callback_url {
            s.status_callback_url = if v.is_empty() {
                None
            } else {
                Some(validate_http_url(v, "status_callback_url")?)
            };
        }
        if let Some(v) = self.lockout {
            s.lockout = v.validate()?;
        }
        if let Some(v) = self.guards {
            s.guards = v.validate()?;
        }
        if let Some(v) = self.passkeys {
            s.passkeys = v.map(|p| p.validate()).transpose()?;
        }
        Ok(s)
    }
}

/// Whether `v` is a Twilio-style SID: the two-letter `prefix` and 32 hex digits.
pub fn is_sid(prefix: &str, v: &str) -> bool {
    v.strip_prefix(prefix)
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Checks an outbound http(s) URL (at most 2000 characters, no whitespace). Whether its
/// host may be reached is decided where requests leave (private targets are refused there).
pub fn validate_http_url(v: String, field: &str) -> Result<String, DomainError> {
    let host = v
        .strip_prefix("https://")
        .or_else(|| v.strip_prefix("http://"))
        .map(|rest| rest.split(['/', '?', '#']).next().unwrap_or(""));
    if host.is_some_and(|h| !h.is_empty()) && v.len() <= 2_000 && !v.contains(char::is_whitespace) {
        Ok(v)
    } else {
        Err(invalid(format!("{field} must be an http(s) URL")))
    }
}

/// Checks a lifetime in seconds (1 s to 24 h).
pub fn validate_ttl(v: u32) -> Result<u32, DomainError> {
    if (1..=MAX_TTL_SECONDS).contains(&v) {
        Ok(v)
    } else {
        Err(invalid(format!("ttl_seconds must be 1-{MAX_TTL_SECONDS}")))
    }
}

/// Checks an attempt limit.
pub fn validate_attempts(v: u32) -> Result<u32, DomainError> {
    if (1..=MAX_CHECK_ATTEMPTS).contains(&v) {
        Ok(v)
    } else {
        Err(invalid(format!(
            "max_check_attempts must be 1-{MAX_CHECK_ATTEMPTS}"
        )))
    }
}

/// Checks a locale tag (`en`, `pt-BR`, `zh_Hant`).
pub fn validate_locale(v: &str) -> Result<(), DomainError> {
    let ok = (2..=16).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && v.as_bytes()[0].is_ascii_alphabetic();
    if ok {
        Ok(())
    } else {
        Err(invalid("locale must be a tag like 'en' or 'pt-BR'"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_validates_before_applying() {
        let base = ServiceSettings::default();
        let bad = ServicePatch {
            code_length: Some(3),
            ..Default::default()
        };
        assert!(bad.apply(&base).is_err());
        let bad = ServicePatch {
            templates: Some([("en".to_string(), "no code here".to_string())].into()),
            ..Default::default()
        };
        assert!(bad.apply(&base).is_err());
        let good = ServicePatch {
            code_length: Some(8),
            allowed_countries: Some(vec!["gh".into()]),
            test_numbers: Some([("+1 500 555 0006".to_string(), "123456".to_string())].into()),
            ..Default::default()
        };
        let s = good.apply(&base).unwrap();
        assert_eq!(s.code_length, 8);
        assert_eq!(s.allowed_countries, Some(vec!["GH".to_string()]));
        assert_eq!(
            s.test_numbers.get("+15005550006").map(String::as_str),
            Some("123456")
        );
    }

    #[test]
    fn twilio_settings_are_patched_and_checked() {
        let base = ServiceSettings::default();
        let s = ServicePatch {
            do_not_share_warning: Some(false),
            skip_sms_to_landlines: Some(true),
            custom_code_enabled: Some(true),
            default_template_sid: Some("HJ0123456789abcdef0123456789abcdef".into()),
            status_callback_url: Some("https://hooks.example.com/otp".into()),
            ..Default::default()
        }
        .apply(&base)
        .unwrap();
        assert_eq!(s.do_not_share_warning, Some(false));
        assert!(s.skip_sms_to_landlines && s.custom_code_enabled && !s.lookup_enabled);
        for bad in [
            ServicePatch {
                default_template_sid: Some("HJ12".into()),
                ..Default::default()
            },
            ServicePatch {
                status_callback_url: Some("ftp://x".into()),
                ..Default::default()
            },
            ServicePatch {
                status_callback_url: Some("https://".into()),
                ..Default::default()
            },
        ] {
            assert!(bad.apply(&base).is_err());
        }
        // Settings stored before these fields existed still load.
        let old: ServiceSettings = serde_json::from_str(r#"{"code_length": 7}"#).unwrap();
        assert_eq!(old.code_length, 7);
        assert!(!old.skip_sms_to_landlines && old.status_callback_url.is_none());
    }

    #[test]
    fn the_warning_flag_shapes_built_in_templates_only() {
        let now = chrono::Utc::now();
        let mut svc = Service {
            id: "svc_1".into(),
            name: "acme".into(),
            sid: "VA1".into(),
            settings: ServiceSettings::default(),
            webhook_secret: None,
            created_at: now,
            updated_at: now,
        };
        assert!(svc.template_for("en").contains("share"));
        svc.settings.do_not_share_warning = Some(false);
        assert!(!svc.template_for("en").contains("share"));
        svc.settings.templates = [("en".to_string(), "{code} share".to_string())].into();
        assert_eq!(svc.template_for("en"), "{code} share");
    }

    #[test]
    fn lockout_is_validated_and_older_settings_load_with_its_default() {
        let base = ServiceSettings::default();
        let bad = ServicePatch {
            lockout: Some(LockoutPolicy {
                max_failures: 0,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(bad.apply(&base).is_err());
        let patch: ServicePatch =
            serde_json::from_str(r#"{"lockout": {"max_failures": 3}}"#).unwrap();
        let s = patch.apply(&base).unwrap();
        assert_eq!(s.lockout.max_failures, 3);
        assert_eq!(s.lockout.duration_seconds, 900);
        // A document stored before lockout existed.
        let old: ServiceSettings = serde_json::from_str(r#"{"code_length": 8}"#).unwrap();
        assert_eq!(old.lockout, LockoutPolicy::default());
    }

    #[test]
    fn names_shaped_like_sids_are_refused() {
        assert!(validate_name("checkout").is_ok());
        assert!(validate_name("VA0123456789abcdef0123456789abcdef").is_err());
        assert!(validate_name("has space").is_err());
    }
}
