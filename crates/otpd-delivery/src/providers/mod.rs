//! Provider adapters, one module each, built from `[[providers]]` entries.
//!
//! The paid-API adapters share the small rules here: how a client is built (timeout, no
//! redirects, no proxy, secret default headers), how a transport error or an HTTP status maps to a
//! transient or permanent [`ProviderError`], and how a receipt callback of a provider that
//! signs nothing is authenticated ([`callback`]).

pub mod africastalking;
pub mod arkesel;
pub mod aws;
pub mod callback;
pub mod console;
pub mod http;
pub mod infobip;
pub mod msg91;
pub mod plivo;
pub mod postmark;
pub mod sendgrid;
pub mod sinch;
pub mod smpp;
pub mod smtp;
pub mod telnyx;
pub mod termii;
pub mod twilio;
pub mod vonage;
pub mod whatsapp_cloud;

#[cfg(test)]
pub(crate) mod testing;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use secrecy::{ExposeSecret, SecretString};

use crate::config::ProviderConfig;
use crate::provider::{Provider, ProviderError};

/// A config entry with the secrets it names by file read in: `receipt_token_file` becomes
/// `receipt_token` (setting both is an error; so is a file that cannot be read).
pub fn resolve_secret_files(config: &ProviderConfig) -> Result<ProviderConfig, String> {
    let mut resolved = config.clone();
    if let Some(path) = &config.receipt_token_file {
        if config.receipt_token.is_some() {
            return Err(format!(
                "provider '{}': set receipt_token or receipt_token_file, not both",
                config.name
            ));
        }
        let token = read_secret(path)
            .map_err(|e| format!("provider '{}': receipt_token_file: {e}", config.name))?;
        if token.expose_secret().is_empty() {
            return Err(format!(
                "provider '{}': receipt_token_file {} is empty",
                config.name,
                path.display()
            ));
        }
        resolved.receipt_token = Some(token);
    }
    Ok(resolved)
}

/// A secret file's content without its trailing newline (the error never shows it).
pub(crate) fn read_secret(path: &Path) -> Result<SecretString, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {}", path.display(), e.kind()))?;
    Ok(SecretString::from(
        text.trim_end_matches(['\r', '\n']).to_string(),
    ))
}

/// Builds the adapter a config entry names (its secret files already read: see
/// [`resolve_secret_files`]).
pub fn build(config: &ProviderConfig) -> Result<Arc<dyn Provider>, String> {
    match config.kind.as_str() {
        "console" => Ok(Arc::new(console::ConsoleProvider::new(config))),
        "http" => Ok(Arc::new(http::HttpProvider::new(config)?)),
        "smtp" => Ok(Arc::new(smtp::SmtpProvider::new(config)?)),
        "smpp" => Ok(Arc::new(smpp::SmppProvider::new(config)?)),
        "twilio" => Ok(Arc::new(twilio::TwilioProvider::new(config)?)),
        "africastalking" => Ok(Arc::new(africastalking::AfricasTalkingProvider::new(
            config,
        )?)),
        "arkesel" => Ok(Arc::new(arkesel::ArkeselProvider::new(config)?)),
        "vonage" => Ok(Arc::new(vonage::VonageProvider::new(config)?)),
        "whatsapp_cloud" => Ok(Arc::new(whatsapp_cloud::WhatsappCloudProvider::new(
            config,
        )?)),
        "aws_sms_voice" => Ok(Arc::new(aws::AwsSmsVoiceProvider::new(config)?)),
        "aws_ses" => Ok(Arc::new(aws::ses::AwsSesProvider::new(config)?)),
        "sendgrid" => Ok(Arc::new(sendgrid::SendgridProvider::new(config)?)),
        "postmark" => Ok(Arc::new(postmark::PostmarkProvider::new(config)?)),
        "plivo" => Ok(Arc::new(plivo::PlivoProvider::new(config)?)),
        "telnyx" => Ok(Arc::new(telnyx::TelnyxProvider::new(config)?)),
        "infobip" => Ok(Arc::new(infobip::InfobipProvider::new(config)?)),
        "sinch" => Ok(Arc::new(sinch::SinchProvider::new(config)?)),
        "msg91" => Ok(Arc::new(msg91::Msg91Provider::new(config)?)),
        "termii" => Ok(Arc::new(termii::TermiiProvider::new(config)?)),
        other => Err(format!(
            "provider '{}': unknown kind '{other}' (available: console, http, smtp, smpp, twilio, vonage, arkesel, africastalking, whatsapp_cloud, aws_sms_voice, plivo, telnyx, infobip, sinch, msg91, termii, aws_ses, sendgrid, postmark)",
            config.name
        )),
    }
}

/// The HTTP client of an adapter: the entry's `timeout_ms` for connecting and for the
/// whole request, redirects refused (a provider API never redirects a send), no proxy
/// (`HTTP_PROXY`, `HTTPS_PROXY` and `ALL_PROXY` in the environment are ignored: messages
/// and credentials go straight to the configured host), and `headers` (marked sensitive,
/// so never printed) on every request.
pub fn http_client(config: &ProviderConfig, headers: HeaderMap) -> Result<reqwest::Client, String> {
    let timeout = Duration::from_millis(config.timeout_ms);
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .no_proxy()
        .default_headers(headers)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("provider '{}': {e}", config.name))
}

/// Headers carrying a credential (`api-key: …`), marked sensitive so that they are
/// never printed; a value that is not a valid header is a config error.
pub fn credential_header(
    config: &ProviderConfig,
    name: &'static str,
    value: &str,
) -> Result<HeaderMap, String> {
    let mut value = reqwest::header::HeaderValue::from_str(value)
        .map_err(|_| format!("provider '{}': bad {name}", config.name))?;
    value.set_sensitive(true);
    let mut headers = HeaderMap::new();
    headers.insert(name, value);
    Ok(headers)
}

/// A request that got no HTTP answer (connection refused, timeout, TLS, a body cut off):
/// always transient. The text never names the URL (it may hold an account id).
pub fn transport_error(e: reqwest::Error) -> ProviderError {
    ProviderError::Transient(format!("request failed: {}", e.without_url()))
}

/// Whether an HTTP status is worth retrying: 408, 429 and every 5xx.
pub fn transient_status(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
}

/// A non-2xx reply as an error: `"{who} HTTP {status}{detail}"`, transient when
/// [`transient_status`] says so, else permanent (the provider refused this message).
pub fn status_error(who: &str, status: StatusCode, detail: &str) -> ProviderError {
    let msg = format!("{who} HTTP {}{detail}", status.as_u16());
    if transient_status(status) {
        ProviderError::Transient(msg)
    } else {
        ProviderError::Permanent(msg)
    }
}

/// A provider API's answer: its status and its JSON body, when it had one.
pub struct ApiReply {
    /// The HTTP status.
    pub status: StatusCode,
    /// The body as JSON (`None` when empty or not JSON).
    pub json: Option<serde_json::Value>,
}

impl ApiReply {
    /// Sends `request` and reads the whole answer; no answer at all is a transient error
    /// ([`transport_error`]).
    pub async fn fetch(request: reqwest::RequestBuilder) -> Result<ApiReply, ProviderError> {
        let reply = request.send().await.map_err(transport_error)?;
        let status = reply.status();
        let json = reply.json().await.ok();
        Ok(ApiReply { status, json })
    }

    /// For a 2xx: accepted, named by the string at `id_pointer` (`/sid`).
    pub fn accepted(&self, id_pointer: &str) -> Option<crate::provider::Accepted> {
        self.status
            .is_success()
            .then(|| crate::provider::Accepted::Queued {
                provider_message_id: json_str(self.json.as_ref(), id_pointer),
            })
    }

    /// The provider's numeric error code at `pointer` (`/error/code`).
    pub fn code(&self, pointer: &str) -> Option<i64> {
        self.json
            .as_ref()
            .and_then(|j| j.pointer(pointer))
            .and_then(|v| v.as_i64())
    }

    /// The error a non-2xx answer means ([`status_error`]), naming the provider's code
    /// at `code_pointer` when there is one.
    pub fn error(&self, who: &str, code_pointer: &str) -> ProviderError {
        let detail = self
            .code(code_pointer)
            .map(|c| format!(" code {c}"))
            .unwrap_or_default();
        status_error(who, self.status, &detail)
    }
}

/// A string field of a JSON reply by pointer (`/messages/0/id`), for provider ids.
pub fn json_str(json: Option<&serde_json::Value>, pointer: &str) -> Option<String> {
    json.and_then(|j| j.pointer(pointer))
        .and_then(|v| v.as_str())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_split_into_transient_and_permanent() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(transient_status(StatusCode::from_u16(s).unwrap()), "{s}");
        }
        for s in [400, 401, 403, 404, 409, 422] {
            assert!(!transient_status(StatusCode::from_u16(s).unwrap()), "{s}");
        }
        assert_eq!(
            status_error("Acme", StatusCode::BAD_REQUEST, " code 7"),
            ProviderError::Permanent("Acme HTTP 400 code 7".into())
        );
    }
}
