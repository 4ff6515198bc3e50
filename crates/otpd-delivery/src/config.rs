//! Delivery configuration: `[[providers]]`, `[[routes]]` and `[delivery]` tuning.

use std::collections::BTreeMap;

use otpd_core::channel::Channel;
use secrecy::SecretString;
use serde::Deserialize;

/// One `[[providers]]` entry.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Unique name, used by routes, receipts and events.
    pub name: String,
    /// Adapter kind: `console`, `http`, `smtp`, `smpp`, `twilio`, `vonage`, `arkesel`,
    /// `africastalking`, `whatsapp_cloud`, `aws_sms_voice`, `plivo`, `telnyx`, `infobip`, `sinch`, `msg91`, `termii`, `aws_ses`, `sendgrid` or `postmark`.
    pub kind: String,
    /// Endpoint of the `http` adapter; for the paid APIs, their base URL (default: the
    /// provider's own host).
    #[serde(default)]
    pub url: Option<String>,
    /// Channels this provider serves.
    #[serde(default = "all_channels")]
    pub channels: Vec<Channel>,
    /// Extra request headers of the `http` adapter (values are secrets: never logged).
    #[serde(default)]
    pub headers: BTreeMap<String, SecretString>,
    /// Request timeout.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Server host name (`smtp`, `smpp`).
    #[serde(default)]
    pub host: Option<String>,
    /// Server port (`smtp`: default 587 with STARTTLS, 465 with implicit TLS, 25 without;
    /// `smpp`: default 2775).
    #[serde(default)]
    pub port: Option<u16>,
    /// Transport security (`smtp`): `starttls` (default, required), `tls` (implicit TLS)
    /// or `none` (plain text: only for a relay on the same host or network).
    #[serde(default)]
    pub tls: Option<String>,
    /// Login name (`smtp` AUTH; the app's `username` for `africastalking`).
    #[serde(default)]
    pub username: Option<String>,
    /// Password (`smtp` AUTH, `smpp` bind; a secret: never logged).
    #[serde(default)]
    pub password: Option<SecretString>,
    /// Sender: an address (`smtp`, e.g. `Acme <no-reply@acme.example>`) or a number or
    /// sender id (`twilio`, `smpp`: the `source_addr`).
    #[serde(default)]
    pub from: Option<String>,
    /// Account id (`twilio`: the Account SID, `AC…`).
    #[serde(default)]
    pub account_sid: Option<String>,
    /// API secret (`twilio`: the Auth Token; `plivo`: the Auth Token, which also signs its
    /// callbacks; a secret: never logged).
    #[serde(default)]
    pub auth_token: Option<SecretString>,
    /// API key (`vonage`, `arkesel`, `africastalking`; `twilio`: an API key SID `SK…`,
    /// used with `api_secret` instead of the Auth Token to send).
    #[serde(default)]
    pub api_key: Option<String>,
    /// API secret (`vonage`; `twilio`: the API key's secret; a secret: never logged).
    #[serde(default)]
    pub api_secret: Option<SecretString>,
    /// WhatsApp Business phone number id (`whatsapp_cloud`).
    #[serde(default)]
    pub phone_number_id: Option<String>,
    /// Bearer token (`whatsapp_cloud`: a system-user access token; a secret).
    #[serde(default)]
    pub access_token: Option<SecretString>,
    /// App secret that signs webhooks (`whatsapp_cloud`: `X-Hub-Signature-256`; a secret).
    #[serde(default)]
    pub app_secret: Option<SecretString>,
    /// The token Meta sends back when it verifies the webhook URL (`whatsapp_cloud`:
    /// `hub.verify_token` of the `GET` subscription check; a secret).
    #[serde(default)]
    pub verify_token: Option<SecretString>,
    /// Name of the approved authentication template (`whatsapp_cloud`, `infobip`); the
    /// default template id (`msg91`).
    #[serde(default)]
    pub template: Option<String>,
    /// Shared secret that authenticates receipts of providers that sign nothing. otpd's
    /// generic JSON receipts (`http`, and any adapter without a receipt format of its own)
    /// carry it as `Authorization: Bearer <receipt_token>`; `arkesel`, `africastalking`
    /// (and `vonage` without a `signature_secret`) have it in the callback URL, as the HTTP
    /// Basic password or as `?token=`. Without it such receipts are refused. A secret:
    /// never logged.
    #[serde(default)]
    pub receipt_token: Option<SecretString>,
    /// A file holding `receipt_token` (e.g. `/run/secrets/receipts`), read at start; a
    /// missing file is a config error.
    #[serde(default)]
    pub receipt_token_file: Option<std::path::PathBuf>,
    /// The secret that signs callbacks (`vonage`: signed delivery receipts, the `sig`
    /// parameter; `sinch`: the callback secret of `x-sinch-webhook-signature`; `termii`:
    /// the secret key of `X-Termii-Signature`; a secret: never logged).
    #[serde(default)]
    pub signature_secret: Option<SecretString>,
    /// Vonage's signature method as set in its dashboard: `md5hash` (default), `md5`,
    /// `sha1`, `sha256` or `sha512` (the HMAC ones).
    #[serde(default)]
    pub signature_method: Option<String>,
    /// Vonage application id (`vonage` voice and WhatsApp: the JWT's `application_id`);
    /// the Call Control application of calls (`telnyx` voice: sent as `connection_id`).
    #[serde(default)]
    pub application_id: Option<String>,
    /// The Vonage application's RSA private key, PEM (a secret: never logged).
    #[serde(default)]
    pub private_key: Option<SecretString>,
    /// A file holding the Vonage application's private key, PEM (instead of `private_key`).
    #[serde(default)]
    pub private_key_file: Option<String>,
    /// Caller id of voice calls (`vonage`: a Vonage number, digits), when it differs from
    /// `from`.
    #[serde(default)]
    pub voice_from: Option<String>,
    /// The WhatsApp Business number messages come from (`vonage`, `infobip`), when it
    /// differs from `from`.
    #[serde(default)]
    pub whatsapp_from: Option<String>,
    /// A directory of recorded voice prompts (`arkesel` voice: `intro.wav`, `0.wav` …
    /// `9.wav`, optional `again.wav`, and per-locale subdirectories; see
    /// docs/delivery.md).
    #[serde(default)]
    pub voice_clips: Option<String>,
    /// A PEM file of extra CA certificates to trust (`smtp`: a private relay's CA), on
    /// top of the system's roots.
    #[serde(default)]
    pub tls_ca_file: Option<String>,
    /// URL polled with `GET` to judge the provider's health: a non-2xx reply or no reply
    /// counts as a failure of its circuit breaker; a 2xx reply while the circuit is open
    /// lets the half-open probe through.
    #[serde(default)]
    pub health_check_url: Option<String>,
    /// Seconds between health checks (default 30).
    #[serde(default)]
    pub health_check_interval_seconds: Option<u64>,
    /// File holding `password` (a secret, e.g. `/run/secrets/smsc`; `smpp`). Without
    /// `password` and `password_file` the `smpp` adapter reads the environment variable
    /// `OTPD_PROVIDER_<NAME>_PASSWORD` or `OTPD_PROVIDER_<NAME>_PASSWORD_FILE`.
    #[serde(default)]
    pub password_file: Option<std::path::PathBuf>,
    /// SMPP login (`smpp` bind: `system_id`, at most 15 characters).
    #[serde(default)]
    pub system_id: Option<String>,
    /// SMPP `system_type` of the bind (`smpp`; empty unless the SMSC wants one).
    #[serde(default)]
    pub system_type: Option<String>,
    /// Type of number of the sender address (`smpp`; default: 1 international for a
    /// number, 5 alphanumeric for a sender name).
    #[serde(default)]
    pub source_ton: Option<u8>,
    /// Numbering plan of the sender address (`smpp`; default: 1 ISDN for a number, 0 for
    /// a sender name).
    #[serde(default)]
    pub source_npi: Option<u8>,
    /// Type of number of recipients (`smpp`; default 1, international).
    #[serde(default)]
    pub dest_ton: Option<u8>,
    /// Numbering plan of recipients (`smpp`; default 1, ISDN/E.164).
    #[serde(default)]
    pub dest_npi: Option<u8>,
    /// Most `submit_sm` awaiting their response at once on the session (`smpp`; default 10).
    #[serde(default)]
    pub window_size: Option<u32>,
    /// Most `submit_sm` per second, each segment counting (`smpp`; default 50: the
    /// throughput the carrier granted).
    #[serde(default)]
    pub max_per_second: Option<u32>,
    /// Seconds between `enquire_link` keep-alives on an idle session (`smpp`; default 30).
    #[serde(default)]
    pub enquire_link_seconds: Option<u64>,
    /// Time allowed to connect and bind (`smpp`; default 5000 ms). `timeout_ms` bounds the
    /// wait for each `submit_sm_resp`.
    #[serde(default)]
    pub bind_timeout_ms: Option<u64>,
    /// Longest pause between reconnection attempts after the bind drops (`smpp`; default
    /// 30 s; the pause starts at 250 ms and doubles).
    #[serde(default)]
    pub reconnect_max_seconds: Option<u64>,
    /// Twilio Messaging Service (`twilio`: `MG…`): messages are sent with
    /// `MessagingServiceSid` instead of `From` (US A2P 10DLC campaigns, sender pools).
    #[serde(default)]
    pub messaging_service_sid: Option<String>,
    /// Twilio Content template of WhatsApp messages (`twilio`: `HX…`, an approved
    /// WhatsApp authentication template whose variable `1` is the code). Required for
    /// `whatsapp`: Twilio refuses business-initiated free-form WhatsApp text (error 63016).
    #[serde(default)]
    pub content_sid: Option<String>,
    /// Per-locale Content templates (`twilio`: `{ fr = "HX…", "pt-BR" = "HX…" }`), tried
    /// for the message's locale, then its language, before `content_sid`.
    #[serde(default)]
    pub content_sids: BTreeMap<String, String>,
    /// A Content template for SMS too (`twilio`: `HX…`, variable `1` the code); SMS is
    /// sent as free text without it.
    #[serde(default)]
    pub sms_content_sid: Option<String>,
    /// The languages the WhatsApp `template` is approved in (`whatsapp_cloud`, `vonage`,
    /// `infobip`:
    /// Meta's codes, e.g. `["en_US", "fr", "pt_BR"]`). A message's locale is mapped to the
    /// first of `ll_RR`, `ll` found here, else to the first entry. Without it the locale
    /// is mapped to Meta's documented codes, falling back to `en_US`.
    #[serde(default)]
    pub template_languages: Vec<String>,
    /// How an SMSC's message ids are compared (`smpp`): `auto` (default: as given, else
    /// the hex reading of one matched against the decimal reading of the other), `exact`,
    /// `hex_to_decimal` (`submit_sm_resp` gives hex, receipts decimal) or
    /// `decimal_to_hex` (the reverse).
    #[serde(default)]
    pub message_id_format: Option<String>,
    /// How the session binds (`smpp`): `transceiver` (default, one connection) or
    /// `transmitter_receiver` (two: a transmitter for sends, a receiver for receipts).
    #[serde(default)]
    pub bind_mode: Option<String>,
    /// The `data_coding` of texts that fit GSM 03.38 (`smpp`): `gsm7` (default,
    /// data_coding 0), `ia5` (1, ASCII only) or `latin1` (3), for SMSCs that read 0 as
    /// Latin-1. Other texts are always UCS-2 (8).
    #[serde(default)]
    pub data_coding: Option<String>,
    /// A file holding the DKIM private key (`smtp`: PEM, RSA or Ed25519); with
    /// `dkim_selector`, every email is DKIM-signed for the sender's domain.
    #[serde(default)]
    pub dkim_private_key_file: Option<std::path::PathBuf>,
    /// The DKIM selector (`smtp`: the `s=` of the signature; the public key is published at
    /// `<selector>._domainkey.<domain>`).
    #[serde(default)]
    pub dkim_selector: Option<String>,
    /// Plivo Auth ID (`plivo`: `MA…` or `SA…`; with `auth_token`).
    #[serde(default)]
    pub auth_id: Option<String>,
    /// The public key that signs webhooks (`telnyx`: Ed25519, base64, from the Mission
    /// Control portal; `sendgrid`: the Event Webhook's verification key, base64 DER).
    #[serde(default)]
    pub public_key: Option<String>,
    /// A Telnyx messaging profile (`telnyx`: `messaging_profile_id`; it may choose the
    /// sender instead of `from`).
    #[serde(default)]
    pub messaging_profile_id: Option<String>,
    /// Sinch service plan id (`sinch`: the SMS API's `{service_plan_id}`).
    #[serde(default)]
    pub service_plan_id: Option<String>,
    /// Per-locale templates (`msg91`: `{ en = "<MSG91 template id>", hi = "…" }`, tried for
    /// the message's locale, then its language, before `template`).
    #[serde(default)]
    pub templates: BTreeMap<String, String>,
    /// The template variable that receives the code (`msg91`: default `OTP`, for a
    /// template written `… ##OTP## …`).
    #[serde(default)]
    pub template_variable: Option<String>,
    /// The principal entity id registered on India's DLT (`msg91`).
    #[serde(default)]
    pub dlt_entity_id: Option<String>,
    /// The DLT template id of each template (`msg91`: `{ "<MSG91 template id>" =
    /// "<19-digit DLT template id>" }`); every template used needs one.
    #[serde(default)]
    pub dlt_template_ids: BTreeMap<String, String>,
    /// The SMS route (`termii`: `dnd`, the transactional route and the default, or
    /// `generic`).
    #[serde(default)]
    pub route: Option<String>,
    /// The message stream of emails (`postmark`: default `outbound`, the transactional
    /// stream).
    #[serde(default)]
    pub message_stream: Option<String>,
    /// Region of the API (`aws_sms_voice`: e.g. `us-east-1`; `sinch`: `us` (default),
    /// `eu`, `au`, `br` or `ca`).
    #[serde(default)]
    pub region: Option<String>,
    /// AWS access key id (`aws_sms_voice`: an IAM user's key allowed
    /// `sms-voice:SendTextMessage` and `sms-voice:SendVoiceMessage`).
    #[serde(default)]
    pub access_key_id: Option<String>,
    /// AWS secret access key (`aws_sms_voice`; a secret: never logged).
    #[serde(default)]
    pub secret_access_key: Option<SecretString>,
    /// The configuration set whose event destination reports deliveries
    /// (`aws_sms_voice`: `ConfigurationSetName`).
    #[serde(default)]
    pub configuration_set: Option<String>,
    /// The voice of calls (`aws_sms_voice`: an Amazon Polly `VoiceId` such as `JOANNA`;
    /// default: a voice for the message's locale).
    #[serde(default)]
    pub voice_id: Option<String>,
    /// The SNS topic whose messages are believed as delivery events (`aws_sms_voice`:
    /// `arn:aws:sns:REGION:ACCOUNT:NAME`); without it, no receipt is.
    #[serde(default)]
    pub sns_topic_arn: Option<String>,
    /// A URL prefix that SNS signing certificates and subscribe URLs must start with,
    /// instead of `https://sns.REGION.amazonaws.com/` (`aws_sms_voice`: an SNS-compatible
    /// service or a local stand-in).
    #[serde(default)]
    pub sns_url_prefix: Option<String>,
    /// The public URL of this provider's call-script endpoint
    /// (`https://otp.example.com/v1/voice/NAME`, no query): `plivo` calls fetch what they
    /// say from it when answered, and its requests' signatures are checked over it.
    #[serde(default)]
    pub answer_url: Option<String>,
    /// The public URL of this provider's receipts endpoint
    /// (`https://otp.example.com/v1/receipts/NAME`), given to the provider as its status
    /// callback and used to check the callbacks' signatures.
    #[serde(default)]
    pub status_callback_url: Option<String>,
}

fn all_channels() -> Vec<Channel> {
    Channel::ALL.to_vec()
}

fn default_timeout_ms() -> u64 {
    5_000
}

/// One `[[routes]]` entry: which providers serve a channel, in order.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// The channel.
    pub channel: Channel,
    /// Only numbers of these regions (ISO 3166); all when absent.
    #[serde(default)]
    pub countries: Option<Vec<String>>,
    /// Provider names, tried in order.
    pub providers: Vec<String>,
    /// Seconds to wait for a delivery receipt before trying the next provider (default:
    /// `[delivery.receipt_timeouts]` for the channel).
    #[serde(default)]
    pub receipt_timeout_seconds: Option<u64>,
}

/// `[delivery]`: retry and lease tuning of the outbox worker.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Attempts with one provider before moving on (transient failures only).
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt, with full jitter.
    pub retry_base_ms: u64,
    /// Longest retry delay.
    pub retry_max_ms: u64,
    /// How long a claimed job stays with its worker; after that another worker takes it.
    pub lease_seconds: u64,
    /// Jobs handled at once.
    pub workers: usize,
    /// Longest sleep between outbox polls when idle (new sends wake workers at once).
    pub poll_interval_ms: u64,
    /// Failures within `breaker_window_seconds` that open a provider's circuit.
    pub breaker_failures: u32,
    /// The circuit breaker's rolling window.
    pub breaker_window_seconds: u64,
    /// How long an open circuit skips its provider before a half-open probe.
    pub breaker_open_seconds: u64,
    /// Default wait for a delivery receipt per channel, when the route sets none.
    pub receipt_timeouts: ReceiptTimeouts,
}

/// `[delivery.receipt_timeouts]`: seconds to wait for a delivery receipt before the next
/// provider or channel gets the same code (a route's `receipt_timeout_seconds` wins).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReceiptTimeouts {
    /// SMS (default 30 s).
    pub sms: u64,
    /// Voice calls (default 60 s).
    pub voice: u64,
    /// WhatsApp (default 30 s).
    pub whatsapp: u64,
    /// Email (default 60 s).
    pub email: u64,
    /// USSD (default 120 s: the user reads the instructions, then dials the service
    /// code; the held code waits that long).
    pub ussd: u64,
}

impl Default for ReceiptTimeouts {
    fn default() -> Self {
        ReceiptTimeouts {
            sms: 30,
            voice: 60,
            whatsapp: 30,
            email: 60,
            ussd: 120,
        }
    }
}

impl ReceiptTimeouts {
    /// The default wait for a channel.
    pub fn for_channel(&self, channel: Channel) -> std::time::Duration {
        std::time::Duration::from_secs(match channel {
            Channel::Sms => self.sms,
            Channel::Voice => self.voice,
            Channel::Whatsapp => self.whatsapp,
            Channel::Email => self.email,
            Channel::Ussd => self.ussd,
        })
    }
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            max_attempts: 5,
            retry_base_ms: 500,
            retry_max_ms: 60_000,
            lease_seconds: 30,
            workers: 4,
            poll_interval_ms: 1_000,
            breaker_failures: crate::breaker::DEFAULT_FAILURES,
            breaker_window_seconds: crate::breaker::DEFAULT_WINDOW.as_secs(),
            breaker_open_seconds: crate::breaker::DEFAULT_OPEN_FOR.as_secs(),
            receipt_timeouts: ReceiptTimeouts::default(),
        }
    }
}

impl DeliveryConfig {
    /// Checks the values for sense.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_attempts == 0 || self.workers == 0 || self.lease_seconds == 0 {
            return Err("delivery.max_attempts, delivery.workers and delivery.lease_seconds must be at least 1".into());
        }
        if self.retry_base_ms == 0 || self.retry_max_ms < self.retry_base_ms {
            return Err("delivery.retry_base_ms must be ≥ 1 and ≤ delivery.retry_max_ms".into());
        }
        if self.breaker_failures == 0
            || self.breaker_window_seconds == 0
            || self.breaker_open_seconds == 0
        {
            return Err("delivery.breaker_failures, delivery.breaker_window_seconds and delivery.breaker_open_seconds must be at least 1".into());
        }
        Ok(())
    }

    /// The circuit breaker policy these settings give.
    pub fn breaker_policy(&self) -> crate::breaker::BreakerPolicy {
        crate::breaker::BreakerPolicy {
            failures: self.breaker_failures,
            window: std::time::Duration::from_secs(self.breaker_window_seconds),
            open_for: std::time::Duration::from_secs(self.breaker_open_seconds),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Issue 21: a USSD code is pulled by a person who reads the instructions and dials the
    // service code; 30 s was shorter than that.
    #[test]
    fn a_held_ussd_code_waits_two_minutes_by_default() {
        let t = ReceiptTimeouts::default();
        assert_eq!(
            t.for_channel(Channel::Ussd),
            std::time::Duration::from_secs(120)
        );
        assert_eq!(
            t.for_channel(Channel::Sms),
            std::time::Duration::from_secs(30)
        );
    }
}
