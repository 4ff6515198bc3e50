//! The JSON shapes of Twilio Verify v2, built from otpd's records: snake_case fields, SIDs
//! with their prefixes, dates as `2015-07-30T20:00:00Z`, and absolute `url`/`links` on the
//! host the client called (or `public_url`), because the SDKs follow them as given.

use axum::http::HeaderMap;
use axum::http::header::HOST;
use chrono::{DateTime, SecondsFormat, Utc};
use otpd_core::channel::Channel;
use otpd_core::ids::Kind;
use otpd_core::recipient::{LineType, PhoneNumber};
use otpd_core::service::Service;
use otpd_core::store::DeliveryRecord;
use otpd_core::verification::{DeliveryStatus, Status, Verification};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::config::Config;

/// otpd has no accounts: every reply carries this one, valid-looking account SID.
pub const ACCOUNT_SID: &str = "AC00000000000000000000000000000000";

/// Longest Host header used to build URLs.
const MAX_HOST: usize = 255;

/// A date as Twilio's JSON shows it (`2015-07-30T20:00:00Z`, the form the SDKs parse).
pub fn twilio_date(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Twilio's name of an otpd channel (`voice` is Twilio's `call`).
pub fn channel_name(c: Channel) -> &'static str {
    match c {
        Channel::Voice => "call",
        other => other.as_str(),
    }
}

/// The otpd channel of a Twilio channel name (`sna` and `auto` are not offered).
pub fn parse_channel(s: &str) -> Option<Channel> {
    match s {
        "sms" => Some(Channel::Sms),
        "call" => Some(Channel::Voice),
        "email" => Some(Channel::Email),
        "whatsapp" => Some(Channel::Whatsapp),
        _ => None,
    }
}

/// The base URL for `url` and `links`: `public_url` when configured, else `http://` and
/// the request's Host (when it looks like a host), else the listen address.
pub fn base_url(config: &Config, headers: &HeaderMap) -> String {
    if let Some(url) = &config.public_url {
        return url.trim_end_matches('/').to_string();
    }
    let host = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= MAX_HOST
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b))
        })
        .unwrap_or(&config.listen);
    format!("http://{host}")
}

/// One send of a code (`send_code_attempts[]`).
#[derive(Serialize, ToSchema)]
pub struct SendCodeAttempt {
    /// `VL…`, the attempt (an otpd delivery).
    pub attempt_sid: String,
    /// Channel.
    pub channel: String,
    /// When it was queued.
    pub time: String,
}

/// A Verification resource.
#[derive(Serialize, ToSchema)]
pub struct TwVerification {
    /// `VE…`
    pub sid: String,
    /// `VA…`
    pub service_sid: String,
    /// Always [`ACCOUNT_SID`].
    pub account_sid: String,
    /// Recipient (E.164 or email).
    pub to: String,
    /// `sms`, `call`, `email` or `whatsapp` (`ussd` for native USSD verifications).
    pub channel: String,
    /// `pending`, `approved`, `canceled`, `max_attempts_reached`, `expired` or `failed`.
    pub status: String,
    /// Legacy: whether it is approved.
    pub valid: bool,
    /// Line type from the phone metadata when the service has `lookup_enabled`, else `{}`.
    #[schema(value_type = Object)]
    pub lookup: Value,
    /// Always null (PSD2 is not supported).
    pub amount: Option<String>,
    /// Always null (PSD2 is not supported).
    pub payee: Option<String>,
    /// Every send of the code.
    pub send_code_attempts: Vec<SendCodeAttempt>,
    /// Created.
    pub date_created: String,
    /// Last change.
    pub date_updated: String,
    /// Always null (silent network auth is not supported).
    #[schema(value_type = Option<Object>)]
    pub sna: Option<Value>,
    /// This resource.
    pub url: String,
}

/// The `lookup` object: the carrier type the phone metadata can tell, nothing invented.
fn lookup(service: &Service, to: &str) -> Value {
    if !service.settings.lookup_enabled || to.contains('@') {
        return json!({});
    }
    let kind = PhoneNumber::parse_possible(to, None)
        .ok()
        .and_then(|p| match p.line_type() {
            LineType::Mobile => Some("mobile"),
            LineType::FixedLine => Some("landline"),
            LineType::Voip => Some("voip"),
            LineType::FixedLineOrMobile | LineType::Unknown => None,
            other => Some(other.as_str()),
        });
    json!({"carrier": {"mobile_country_code": null, "mobile_network_code": null,
                       "name": null, "type": kind, "error_code": null}})
}

/// The `url` of a verification.
pub fn verification_url(base: &str, v: &Verification) -> String {
    format!(
        "{base}/v2/Services/{}/Verifications/{}",
        Kind::Service.sid_of(&v.service_id),
        Kind::Verification.sid_of(&v.id)
    )
}

impl TwVerification {
    /// The Twilio view of a verification of `service` at `now`.
    pub fn of(v: &Verification, service: &Service, base: &str, now: DateTime<Utc>) -> Self {
        let status = v.status_at(now);
        TwVerification {
            sid: Kind::Verification.sid_of(&v.id),
            service_sid: Kind::Service.sid_of(&v.service_id),
            account_sid: ACCOUNT_SID.into(),
            to: v.to.clone(),
            channel: channel_name(v.channel).into(),
            status: status.as_str().into(),
            valid: status == Status::Approved,
            lookup: lookup(service, &v.to),
            amount: None,
            payee: None,
            send_code_attempts: v
                .deliveries
                .iter()
                .map(|d| SendCodeAttempt {
                    attempt_sid: Kind::Delivery.sid_of(&d.id),
                    channel: channel_name(d.channel).into(),
                    time: twilio_date(d.created_at),
                })
                .collect(),
            date_created: twilio_date(v.created_at),
            date_updated: twilio_date(v.updated_at),
            sna: None,
            url: verification_url(base, v),
        }
    }
}

/// A VerificationCheck resource.
#[derive(Serialize, ToSchema)]
pub struct TwVerificationCheck {
    /// `VE…` of the verification checked.
    pub sid: String,
    /// `VA…`
    pub service_sid: String,
    /// Always [`ACCOUNT_SID`].
    pub account_sid: String,
    /// Recipient.
    pub to: String,
    /// Channel.
    pub channel: String,
    /// `approved` (right code) or `pending` (wrong code, attempts left).
    pub status: String,
    /// Whether the code was right.
    pub valid: bool,
    /// Always null.
    pub amount: Option<String>,
    /// Always null.
    pub payee: Option<String>,
    /// Always empty.
    pub sna_attempts_error_codes: Vec<Value>,
    /// Created.
    pub date_created: String,
    /// Last change.
    pub date_updated: String,
}

impl TwVerificationCheck {
    /// The reply to a check, from the verification after it.
    pub fn of(v: &Verification, now: DateTime<Utc>) -> Self {
        let status = v.status_at(now);
        TwVerificationCheck {
            sid: Kind::Verification.sid_of(&v.id),
            service_sid: Kind::Service.sid_of(&v.service_id),
            account_sid: ACCOUNT_SID.into(),
            to: v.to.clone(),
            channel: channel_name(v.channel).into(),
            status: status.as_str().into(),
            valid: status == Status::Approved,
            amount: None,
            payee: None,
            sna_attempts_error_codes: Vec::new(),
            date_created: twilio_date(v.created_at),
            date_updated: twilio_date(v.updated_at),
        }
    }
}

/// A Service resource.
#[derive(Serialize, ToSchema)]
pub struct TwService {
    /// `VA…`
    pub sid: String,
    /// Always [`ACCOUNT_SID`].
    pub account_sid: String,
    /// The name shown in messages.
    pub friendly_name: String,
    /// Digits per code.
    pub code_length: u8,
    /// Whether replies carry the metadata line type.
    pub lookup_enabled: bool,
    /// Always false.
    pub psd2_enabled: bool,
    /// Whether SMS to landlines is refused (60205).
    pub skip_sms_to_landlines: bool,
    /// Always false (no DTMF gate on calls).
    pub dtmf_input_required: bool,
    /// Always null.
    pub tts_name: Option<String>,
    /// Whether built-in messages end with the "don't share" warning.
    pub do_not_share_warning_enabled: bool,
    /// Whether `CustomCode` is allowed.
    pub custom_code_enabled: bool,
    /// Push factors are not supported: all null / false.
    #[schema(value_type = Object)]
    pub push: Value,
    /// The settings of new `/v2` TOTP factors: Twilio's defaults, which otpd's are too.
    #[schema(value_type = Object)]
    pub totp: Value,
    /// Kept and shown (`HJ…`); otpd renders its own templates.
    pub default_template_sid: Option<String>,
    /// WhatsApp sender settings are not supported: null members.
    #[schema(value_type = Object)]
    pub whatsapp: Value,
    /// Passkeys are not supported.
    #[schema(value_type = Option<Object>)]
    pub passkeys: Option<Value>,
    /// Always false.
    pub verify_event_subscription_enabled: bool,
    /// Created.
    pub date_created: String,
    /// Last change.
    pub date_updated: String,
    /// This resource.
    pub url: String,
    /// The sub-resources otpd serves.
    #[schema(value_type = Object)]
    pub links: Value,
    /// otpd extension: the service's native name (`/v1/services/{name}`).
    pub otpd_name: String,
    /// otpd extension: where Twilio-style status callbacks go (`OtpdStatusCallback`).
    pub otpd_status_callback: Option<String>,
}

impl TwService {
    /// The Twilio view of a service.
    pub fn of(s: &Service, base: &str) -> Self {
        let url = format!("{base}/v2/Services/{}", s.sid);
        TwService {
            sid: s.sid.clone(),
            account_sid: ACCOUNT_SID.into(),
            friendly_name: s.display_name().to_string(),
            code_length: s.settings.code_length,
            lookup_enabled: s.settings.lookup_enabled,
            psd2_enabled: false,
            skip_sms_to_landlines: s.settings.skip_sms_to_landlines,
            dtmf_input_required: false,
            tts_name: None,
            do_not_share_warning_enabled: s.settings.do_not_share_warning.unwrap_or(true),
            custom_code_enabled: s.settings.custom_code_enabled,
            push: json!({"include_date": false, "apn_credential_sid": null, "fcm_credential_sid": null}),
            totp: json!({"issuer": s.display_name(), "time_step": 30, "code_length": 6, "skew": 1}),
            default_template_sid: s.settings.default_template_sid.clone(),
            whatsapp: json!({"msg_service_sid": null, "from": null}),
            passkeys: None,
            verify_event_subscription_enabled: false,
            date_created: twilio_date(s.created_at),
            date_updated: twilio_date(s.updated_at),
            links: json!({
                "verifications": format!("{url}/Verifications"),
                "verification_checks": format!("{url}/VerificationCheck"),
            }),
            url,
            otpd_name: s.name.clone(),
            otpd_status_callback: s.settings.status_callback_url.clone(),
        }
    }
}

/// A Verification Attempt resource (an otpd delivery).
#[derive(Serialize, ToSchema)]
pub struct TwAttempt {
    /// `VL…`
    pub sid: String,
    /// Always [`ACCOUNT_SID`].
    pub account_sid: String,
    /// `VA…`
    pub service_sid: String,
    /// `VE…`
    pub verification_sid: String,
    /// Queued.
    pub date_created: String,
    /// Last change.
    pub date_updated: String,
    /// `converted` when the verification was approved, else `unconverted`.
    pub conversion_status: String,
    /// Channel.
    pub channel: String,
    /// Always null (otpd does not price messages).
    #[schema(value_type = Option<Object>)]
    pub price: Option<Value>,
    /// `to`, `status` (`confirmed`, `unconfirmed`, `expired`), `message_status`, `country`,
    /// and the otpd `provider`.
    #[schema(value_type = Object)]
    pub channel_data: Value,
    /// This resource.
    pub url: String,
}

/// Twilio's message status of a delivery status.
fn message_status(s: DeliveryStatus) -> &'static str {
    match s {
        DeliveryStatus::Queued => "queued",
        DeliveryStatus::Sent => "sent",
        DeliveryStatus::Delivered => "delivered",
        DeliveryStatus::Failed => "failed",
        DeliveryStatus::Skipped => "canceled",
    }
}

impl TwAttempt {
    /// The Twilio view of a delivery at `now`.
    pub fn of(r: &DeliveryRecord, base: &str, now: DateTime<Utc>) -> Self {
        let status = if r.verification_status == Status::Pending && now >= r.verification_expires_at
        {
            Status::Expired
        } else {
            r.verification_status
        };
        let converted = status == Status::Approved;
        let data_status = match status {
            Status::Approved => "confirmed",
            Status::Expired => "expired",
            _ => "unconfirmed",
        };
        let country = PhoneNumber::parse_possible(&r.to, None)
            .ok()
            .and_then(|p| p.region().map(str::to_string));
        let sid = Kind::Delivery.sid_of(&r.delivery.id);
        TwAttempt {
            url: format!("{base}/v2/Attempts/{sid}"),
            sid,
            account_sid: ACCOUNT_SID.into(),
            service_sid: Kind::Service.sid_of(&r.service_id),
            verification_sid: Kind::Verification.sid_of(&r.verification_id),
            date_created: twilio_date(r.delivery.created_at),
            date_updated: twilio_date(r.delivery.updated_at),
            conversion_status: if converted {
                "converted"
            } else {
                "unconverted"
            }
            .into(),
            channel: channel_name(r.delivery.channel).into(),
            price: None,
            channel_data: json!({
                "to": r.to,
                "status": data_status,
                "message_status": message_status(r.delivery.status),
                "error_code": null,
                "country": country,
                "provider": r.delivery.provider,
            }),
        }
    }
}

/// A page of a list, in Twilio's envelope: the items under `key`, and `meta` with
/// absolute page URLs that repeat the filters.
pub struct Page {
    /// The list's key (`services`, `attempts`).
    pub key: &'static str,
    /// Base URL and path of the list (`http://host/v2/Services`).
    pub list_url: String,
    /// Filters to repeat in the page URLs, as given.
    pub filters: Vec<(String, String)>,
    /// Page number.
    pub page: u64,
    /// Page size.
    pub page_size: u32,
    /// Whether another page follows.
    pub has_more: bool,
}

impl Page {
    fn url(&self, page: u64, token: bool) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.filters {
            q.append_pair(k, v);
        }
        q.append_pair("PageSize", &self.page_size.to_string());
        q.append_pair("Page", &page.to_string());
        if token && page > 0 {
            q.append_pair("PageToken", &page_token(page * u64::from(self.page_size)));
        }
        format!("{}?{}", self.list_url, q.finish())
    }

    /// The envelope around `items`.
    pub fn wrap(&self, items: Value) -> Value {
        json!({
            self.key: items,
            "meta": {
                "page": self.page,
                "page_size": self.page_size,
                "first_page_url": self.url(0, false),
                "previous_page_url": (self.page > 0).then(|| self.url(self.page - 1, true)),
                "next_page_url": self.has_more.then(|| self.url(self.page + 1, true)),
                "url": self.url(self.page, true),
                "key": self.key,
            }
        })
    }
}

/// A page of `items`, cut as `paging` asks, each shown in Twilio's shape by `view`, under
/// `key` (a list without filters).
pub fn paged<S, T: Serialize>(
    items: &[S],
    view: impl Fn(&S) -> T,
    paging: &super::Paging,
    key: &'static str,
    list_url: String,
) -> Value {
    let start = usize::try_from(paging.offset).unwrap_or(usize::MAX);
    let shown: Vec<T> = items
        .iter()
        .skip(start)
        .take(paging.page_size as usize)
        .map(view)
        .collect();
    let page = Page {
        key,
        list_url,
        filters: Vec::new(),
        page: paging.page,
        page_size: paging.page_size,
        has_more: items.len() > start.saturating_add(paging.page_size as usize),
    };
    page.wrap(serde_json::to_value(shown).unwrap_or_default())
}

/// Prefix of otpd's page tokens (`PT` + the offset of the page).
const PAGE_TOKEN_PREFIX: &str = "PT";

/// The token of the page starting at `offset`.
pub fn page_token(offset: u64) -> String {
    format!("{PAGE_TOKEN_PREFIX}{offset}")
}

/// The offset in a page token, if it is one of otpd's.
pub fn page_token_offset(token: &str) -> Option<u64> {
    token.strip_prefix(PAGE_TOKEN_PREFIX)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_channels_and_page_urls_have_twilio_forms() {
        let t = DateTime::parse_from_rfc3339("2015-07-30T20:00:00.123Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(twilio_date(t), "2015-07-30T20:00:00Z");
        assert_eq!(channel_name(Channel::Voice), "call");
        assert_eq!(parse_channel("call"), Some(Channel::Voice));
        assert_eq!(parse_channel("sna"), None);
        let page = Page {
            key: "attempts",
            list_url: "http://h/v2/Attempts".into(),
            filters: vec![("ChannelData.To".into(), "+1415".into())],
            page: 1,
            page_size: 2,
            has_more: true,
        };
        let v = page.wrap(json!([]));
        assert_eq!(v["meta"]["key"], "attempts");
        assert_eq!(
            v["meta"]["next_page_url"],
            "http://h/v2/Attempts?ChannelData.To=%2B1415&PageSize=2&Page=2&PageToken=PT4"
        );
        assert_eq!(
            v["meta"]["first_page_url"],
            "http://h/v2/Attempts?ChannelData.To=%2B1415&PageSize=2&Page=0"
        );
        assert_eq!(page_token_offset("PT4"), Some(4));
        assert_eq!(page_token_offset("PA4"), None);
    }
}
