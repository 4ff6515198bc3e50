//! The JSON shapes the native API returns.

use chrono::{DateTime, SecondsFormat, Utc};
use otpd_core::apikey::{ApiKey, Role};
use otpd_core::channel::Channel;
use otpd_core::event::Event;
use otpd_core::ids::Kind;
use otpd_core::service::{Service, ServiceSettings};
use otpd_core::verification::{DeliveryStatus, Status, Verification};
use serde::Serialize;
use utoipa::ToSchema;

/// RFC 3339 in UTC with millisecond precision (`2026-11-22T10:00:00.000Z`).
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// One delivery of a code.
#[derive(Serialize, ToSchema)]
pub struct DeliveryView {
    /// `dlv_…`, the message id given to the provider.
    pub id: String,
    /// Channel.
    pub channel: Channel,
    /// Provider (`test` for test keys).
    pub provider: String,
    /// `queued`, `sent`, `delivered`, `failed` or `skipped`.
    pub status: DeliveryStatus,
    /// Provider attempts made.
    pub attempts: u32,
    /// Last error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Last change.
    pub at: String,
}

/// A verification.
#[derive(Serialize, ToSchema)]
pub struct VerificationView {
    /// `ver_…`
    pub id: String,
    /// The same verification's Twilio SID (`VE…`).
    pub sid: String,
    /// Service name.
    pub service: String,
    /// Service SID (`VA…`).
    pub service_sid: String,
    /// Recipient (E.164 or email).
    pub to: String,
    /// Channel of the latest send.
    pub channel: Channel,
    /// `pending`, `approved`, `canceled`, `expired`, `max_attempts_reached` or `failed`.
    pub status: Status,
    /// End of the code's life.
    pub expires_at: String,
    /// Created.
    pub created_at: String,
    /// Last change.
    pub updated_at: String,
    /// Checks allowed.
    pub max_check_attempts: u32,
    /// Checks made.
    pub check_attempts: u32,
    /// Locale of the messages.
    pub locale: String,
    /// Started with a test key.
    pub test: bool,
    /// Caller metadata.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    /// The application user, when the verification was started with one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity: Option<String>,
    /// Deliveries in order.
    pub deliveries: Vec<DeliveryView>,
}

impl VerificationView {
    /// The view of a verification at `now`.
    pub fn of(v: &Verification, now: DateTime<Utc>) -> Self {
        VerificationView {
            sid: Kind::Verification.sid_of(&v.id),
            id: v.id.clone(),
            service: v.service_name.clone(),
            service_sid: Kind::Service.sid_of(&v.service_id),
            to: v.to.clone(),
            channel: v.channel,
            status: v.status_at(now),
            expires_at: timestamp(v.expires_at),
            created_at: timestamp(v.created_at),
            updated_at: timestamp(v.updated_at),
            max_check_attempts: v.max_check_attempts,
            check_attempts: v.check_attempts,
            locale: v.locale.clone(),
            test: v.test,
            metadata: v.metadata.clone(),
            entity: v.entity.clone(),
            deliveries: v
                .deliveries
                .iter()
                .map(|d| DeliveryView {
                    id: d.id.clone(),
                    channel: d.channel,
                    provider: d.provider.clone(),
                    status: d.status,
                    attempts: d.attempts,
                    error: d.error.clone(),
                    at: timestamp(d.updated_at),
                })
                .collect(),
        }
    }
}

/// The reply to a check.
#[derive(Serialize, ToSchema)]
pub struct CheckView {
    /// Whether the code was right.
    pub valid: bool,
    /// Checks left (present while pending).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remaining_attempts: Option<u32>,
    /// The verification after the check.
    #[serde(flatten)]
    pub verification: VerificationView,
}

/// A message recorded for a test key.
#[derive(Serialize, ToSchema)]
pub struct MessageView {
    /// `msg_…`
    pub id: String,
    /// The delivery it stands for.
    pub delivery_id: String,
    /// Channel.
    pub channel: Channel,
    /// Recipient.
    pub to: String,
    /// The text as it would have been sent.
    pub body: String,
    /// When recorded.
    pub created_at: String,
}

/// Messages recorded for a test-mode verification.
#[derive(Serialize, ToSchema)]
pub struct MessageList {
    /// Oldest first.
    pub messages: Vec<MessageView>,
}

/// A service: its identity and its settings.
#[derive(Serialize, ToSchema)]
pub struct ServiceView {
    /// `svc_…`
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Twilio SID (`VA…`).
    pub sid: String,
    /// The settings (`friendly_name` null means the name is shown in messages).
    #[serde(flatten)]
    pub settings: ServiceSettings,
    /// Webhook signing secret; only in the replies to create and rotate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
    /// Created.
    pub created_at: String,
    /// Last change.
    pub updated_at: String,
}

impl ServiceView {
    /// The view of a service (its webhook secret only when given).
    pub fn of(s: &Service, webhook_secret: Option<String>) -> Self {
        ServiceView {
            id: s.id.clone(),
            name: s.name.clone(),
            sid: s.sid.clone(),
            // Factor webhooks are managed (and shown) on `/v2` only: they hold a sealed key.
            settings: ServiceSettings {
                factor_webhooks: Vec::new(),
                ..s.settings.clone()
            },
            webhook_secret,
            created_at: timestamp(s.created_at),
            updated_at: timestamp(s.updated_at),
        }
    }
}

/// Services.
#[derive(Serialize, ToSchema)]
pub struct ServiceList {
    /// By name.
    pub services: Vec<ServiceView>,
}

/// An API key (never its secret, except `key` right after creation).
#[derive(Serialize, ToSchema)]
pub struct KeyView {
    /// `key_…`
    pub id: String,
    /// Label.
    pub name: String,
    /// `admin` or `verify`.
    pub role: Role,
    /// Test mode.
    pub test: bool,
    /// Service ids it is limited to (all when null).
    pub services: Option<Vec<String>>,
    /// Last four characters of the key.
    pub hint: String,
    /// Created.
    pub created_at: String,
    /// Revoked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    /// The key itself: only in the reply to create. Store it now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl KeyView {
    /// The view of a key record.
    pub fn of(k: &ApiKey, secret: Option<String>) -> Self {
        KeyView {
            id: k.id.clone(),
            name: k.name.clone(),
            role: k.role,
            test: k.test,
            services: k.services.clone(),
            hint: k.hint.clone(),
            created_at: timestamp(k.created_at),
            revoked_at: k.revoked_at.map(timestamp),
            key: secret,
        }
    }
}

/// API keys.
#[derive(Serialize, ToSchema)]
pub struct KeyList {
    /// Newest first.
    pub keys: Vec<KeyView>,
}

/// An event.
#[derive(Serialize, ToSchema)]
pub struct EventView {
    /// `evt_…`
    pub id: String,
    /// Kind, e.g. `verification.approved`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The verification concerned.
    pub verification_id: Option<String>,
    /// The service concerned (id).
    pub service_id: Option<String>,
    /// Details (numbers masked, never a code).
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    /// When.
    pub created_at: String,
    /// The API key whose call caused it (`key_…` or `master`); null for otpd's own work
    /// (deliveries, expiry, retention).
    pub key_id: Option<String>,
    /// The `x-request-id` of that call.
    pub request_id: Option<String>,
    /// The end user's IP: `client_ip` as given, else the address the call came from.
    pub client_ip: Option<String>,
}

impl EventView {
    /// The view of an event.
    pub fn of(e: &Event) -> Self {
        EventView {
            id: e.id.clone(),
            kind: e.kind.clone(),
            verification_id: e.verification_id.clone(),
            service_id: e.service_id.clone(),
            data: e.data.clone(),
            created_at: timestamp(e.created_at),
            key_id: e.actor.key_id.clone(),
            request_id: e.actor.request_id.clone(),
            client_ip: e.actor.client_ip.clone(),
        }
    }
}

/// A page of events.
#[derive(Serialize, ToSchema)]
pub struct EventList {
    /// Oldest first.
    pub events: Vec<EventView>,
    /// Opaque: pass as `after` for the next page; null at the end.
    pub next_cursor: Option<String>,
}
