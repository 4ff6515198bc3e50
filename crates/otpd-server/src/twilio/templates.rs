//! `GET /v2/Templates` and `TemplateSid`: otpd's built-in per-locale message templates in
//! Twilio's shape (`HJ…` SIDs, `translations` by language), and the template a
//! verification may choose with `TemplateSid` on create.
//!
//! otpd has two built-in templates: its default message with the "don't share" sentence,
//! and the same without it (Twilio's `DoNotShareWarningEnabled=false`), each translated in
//! [`BUILT_IN_LANGUAGES`]. `TemplateSid` picks one of them for that verification's SMS,
//! in its locale, instead of the service's own template; an unknown SID is Twilio's 60228,
//! and a template on another channel its 60408. A service's own `templates` (set on
//! `/v1/services`) are not listed here: they are the service's default message.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use otpd_core::channel::Channel;
use otpd_core::template::{BUILT_IN_LANGUAGES, built_in_with};
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::errors::{TwilioError, TwilioErrorBody, TwilioResult};
use super::form::Params;
use super::views::{ACCOUNT_SID, Page, base_url};
use super::{Paging, TwilioPrincipal};
use crate::state::AppState;

/// Twilio's "Template was not found".
pub const TEMPLATE_NOT_FOUND: u32 = 60228;
/// Twilio's "TemplateSid is only supported for the SMS channel".
pub const TEMPLATE_SMS_ONLY: u32 = 60408;

/// One built-in template: SID, name, and whether it carries the "don't share" sentence.
struct BuiltIn {
    sid: &'static str,
    friendly_name: &'static str,
    warning: bool,
}

/// The built-in templates (SIDs fixed: `HJ` + "otpd" in hex + a number).
const BUILT_IN: &[BuiltIn] = &[
    BuiltIn {
        sid: "HJ6f747064000000000000000000000001",
        friendly_name: "otpd default",
        warning: true,
    },
    BuiltIn {
        sid: "HJ6f747064000000000000000000000002",
        friendly_name: "otpd default without warning",
        warning: false,
    },
];

/// A template (`verify.v2.verification_template`).
#[derive(Serialize, utoipa::ToSchema, Debug)]
pub struct TwTemplate {
    /// `HJ…`
    pub sid: String,
    /// otpd has no accounts: always the same.
    pub account_sid: String,
    /// The template's name.
    pub friendly_name: String,
    /// Channels it can be chosen for (`sms`).
    pub channels: Vec<String>,
    /// By language: `text` (otpd's placeholders `{service}`, `{code}`, `{minutes}`),
    /// `locale`, `status` (`approved`), `is_default_translation`.
    #[schema(value_type = Object)]
    pub translations: Value,
}

impl TwTemplate {
    fn of(t: &BuiltIn) -> Self {
        let mut translations = Map::new();
        for language in BUILT_IN_LANGUAGES {
            translations.insert(
                (*language).to_string(),
                json!({
                    "text": built_in_with(language, t.warning),
                    "locale": language,
                    "status": "approved",
                    "is_default_translation": *language == "en",
                }),
            );
        }
        TwTemplate {
            sid: t.sid.to_string(),
            account_sid: ACCOUNT_SID.to_string(),
            friendly_name: t.friendly_name.to_string(),
            channels: vec!["sms".to_string()],
            translations: Value::Object(translations),
        }
    }
}

/// The message option of a `TemplateSid` for a verification on `channel`: whether the
/// chosen built-in text carries the "don't share" sentence.
pub fn chosen(sid: &str, channel: Channel) -> TwilioResult<bool> {
    let t = BUILT_IN
        .iter()
        .find(|t| t.sid.eq_ignore_ascii_case(sid))
        .ok_or_else(|| {
            TwilioError::new(
                axum::http::StatusCode::BAD_REQUEST,
                TEMPLATE_NOT_FOUND,
                "Template was not found: TemplateSid names no template (GET /v2/Templates lists them)",
            )
        })?;
    if channel != Channel::Sms {
        return Err(TwilioError::new(
            axum::http::StatusCode::BAD_REQUEST,
            TEMPLATE_SMS_ONLY,
            "TemplateSid is only supported for the SMS channel",
        ));
    }
    Ok(t.warning)
}

/// List message templates.
#[utoipa::path(
    get, path = "/v2/Templates", tag = "twilio-compatible",
    params(
        ("FriendlyName" = Option<String>, Query, description = "Only the template of this name"),
        ("PageSize" = Option<u32>, Query, description = "1–1000, default 50"),
        ("Page" = Option<u64>, Query, description = "Page number, from 0"),
        ("PageToken" = Option<String>, Query, description = "Token from `next_page_url`"),
    ),
    responses(
        (status = 200, description = "A page of templates (`templates`, `meta`)", body = Object),
        (status = "4XX", description = "Refused", body = TwilioErrorBody),
    ),
    security(("basic" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    TwilioPrincipal(_principal): TwilioPrincipal,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> TwilioResult<Json<Value>> {
    let mut p = Params::from_query(query.as_deref())?;
    let name = p.take("FriendlyName");
    let paging = Paging::take(&mut p)?;
    p.finish(&[])?;
    let matching: Vec<&BuiltIn> = BUILT_IN
        .iter()
        .filter(|t| name.as_deref().is_none_or(|n| t.friendly_name == n))
        .collect();
    let start = usize::try_from(paging.offset)
        .unwrap_or(usize::MAX)
        .min(matching.len());
    let end = start
        .saturating_add(paging.page_size as usize)
        .min(matching.len());
    let items: Vec<TwTemplate> = matching[start..end]
        .iter()
        .map(|t| TwTemplate::of(t))
        .collect();
    let page = Page {
        key: "templates",
        list_url: format!("{}/v2/Templates", base_url(&state.config, &headers)),
        filters: name
            .map(|n| ("FriendlyName".to_string(), n))
            .into_iter()
            .collect(),
        page: paging.page,
        page_size: paging.page_size,
        has_more: end < matching.len(),
    };
    Ok(Json(
        page.wrap(serde_json::to_value(items).unwrap_or_default()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_sids_are_twilio_template_sids_and_choose_the_warning() {
        for t in BUILT_IN {
            assert!(t.sid.len() == 34 && t.sid.starts_with("HJ"));
            assert!(t.sid[2..].bytes().all(|b| b.is_ascii_hexdigit()));
        }
        assert!(chosen(BUILT_IN[0].sid, Channel::Sms).unwrap());
        assert!(!chosen(BUILT_IN[1].sid, Channel::Sms).unwrap());
        let e = chosen("HJ00000000000000000000000000000000", Channel::Sms).unwrap_err();
        assert_eq!((e.status().as_u16(), e.code()), (400, 60228));
        let e = chosen(BUILT_IN[0].sid, Channel::Voice).unwrap_err();
        assert_eq!(e.code(), 60408);
        let t = TwTemplate::of(&BUILT_IN[1]);
        assert!(
            t.translations["fr"]["text"]
                .as_str()
                .unwrap()
                .starts_with("Votre code")
        );
    }
}
