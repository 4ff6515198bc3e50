//! The generic `http` provider: POSTs the message as JSON to a configured URL.
//!
//! Body: `{"message_id", "verification_id", "to", "channel", "body", "locale"}` (email adds
//! `subject` and `html`). Any 2xx
//! accepts the message; a JSON reply with `"status": "delivered"` is a delivery receipt.
//! 408, 429 and 5xx (and timeouts, connection errors) are transient; other statuses are
//! permanent for this provider.

use async_trait::async_trait;
use otpd_core::channel::Channel;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use secrecy::ExposeSecret;
use serde::Serialize;

use super::{ApiReply, http_client, json_str, status_error};
use crate::config::ProviderConfig;
use crate::provider::{Accepted, OutboundMessage, Provider, ProviderError};

/// POSTs messages to an HTTP endpoint.
pub struct HttpProvider {
    name: String,
    channels: Vec<Channel>,
    url: String,
    client: reqwest::Client,
}

#[derive(Serialize)]
struct Body<'a> {
    message_id: &'a str,
    verification_id: &'a str,
    to: &'a str,
    channel: Channel,
    body: &'a str,
    locale: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    html: Option<&'a str>,
}

impl HttpProvider {
    /// From its config entry; checks the URL and headers.
    pub fn new(config: &ProviderConfig) -> Result<Self, String> {
        let name = &config.name;
        let url = config
            .url
            .clone()
            .ok_or_else(|| format!("provider '{name}': kind http needs url"))?;
        reqwest::Url::parse(&url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| format!("provider '{name}': url must be an http(s) URL"))?;
        let mut headers = HeaderMap::new();
        for (k, v) in &config.headers {
            let key = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| format!("provider '{name}': bad header name '{k}'"))?;
            let mut value = HeaderValue::from_str(v.expose_secret())
                .map_err(|_| format!("provider '{name}': bad value for header '{k}'"))?;
            value.set_sensitive(true);
            headers.insert(key, value);
        }
        let client = http_client(config, headers)?;
        Ok(HttpProvider {
            name: name.clone(),
            channels: config.channels.clone(),
            url,
            client,
        })
    }
}

#[async_trait]
impl Provider for HttpProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn channels(&self) -> &[Channel] {
        &self.channels
    }

    async fn send(&self, m: &OutboundMessage) -> Result<Accepted, ProviderError> {
        let body = Body {
            message_id: &m.message_id,
            verification_id: &m.verification_id,
            to: &m.to,
            channel: m.channel,
            body: &m.body,
            locale: &m.locale,
            subject: m.subject.as_deref(),
            html: m.html.as_deref().map(String::as_str),
        };
        let reply = ApiReply::fetch(self.client.post(&self.url).json(&body)).await?;
        if !reply.status.is_success() {
            return Err(status_error("provider", reply.status, ""));
        }
        let provider_message_id = json_str(reply.json.as_ref(), "/id");
        Ok(
            if json_str(reply.json.as_ref(), "/status").as_deref() == Some("delivered") {
                Accepted::Delivered {
                    provider_message_id,
                }
            } else {
                Accepted::Queued {
                    provider_message_id,
                }
            },
        )
    }
}
