//! The `arkesel` provider: SMS and voice through Arkesel's API v2 (Ghana and West Africa),
//! and its delivery webhooks.
//!
//! **SMS.**
//! `POST {url}/api/v2/sms/send` (default `https://sms.arkesel.com`), header
//! `api-key: <api_key>`, JSON `{"sender", "message", "recipients": ["233…"],
//! "callback_url"?}` (numbers in international digits, no `+`). A reply
//! `{"status": "success", "data": [{"recipient", "id"}]}` is accepted (the `id` names the
//! message); 408, 429, 5xx and connection errors are transient; other statuses (401 bad
//! key, 402 insufficient balance, 422 invalid sender or numbers) are permanent, as is a
//! 2xx reply without `"status": "success"`.
//!
//! **Voice.** Arkesel's voice API plays an audio file; it reads no text. (Its separate
//! OTP API generates and checks *its own* codes, so otpd cannot use it: otpd's code is
//! the one it hashed.) otpd therefore assembles the call's audio from recorded prompts
//! (`voice_clips`, see [`crate::voice_clips`]: the intro, then the digits one by one,
//! twice) and posts it as `multipart/form-data` to `POST {url}/api/v2/sms/voice/send`
//! with the `api-key` header: a `voice_file` part (`otp.wav`, `audio/wav`) and one
//! `recipients[]` field (international digits, no `+`). The reply is read as the SMS
//! one's: `{"status": "success", "data": …}` accepted (the message named by
//! `data.campaign_id`, `data.id` or `data[0].id`, whichever is there), the same statuses
//! transient or permanent. Arkesel documents no receipts for voice: unless a webhook
//! arrives, the voice hop's receipt wait runs out and the route moves on.
//!
//! Delivery webhooks come to the `callback_url` with the message's `sms_id` (or `id`) and
//! `status` (in the query string, a form or JSON): `DELIVERED` is delivered; `FAILED`,
//! `UNDELIVERED`, `REJECTED`, `EXPIRED` failed; anything else (`SENT`, `SUBMITTED`, …)
//! intermediate. Arkesel signs nothing, so a webhook is believed only with the operator's
//! `receipt_token` in the URL ([`super::callback`]).

use async_trait::async_trait;
use otpd_core::channel::Channel;
use secrecy::{ExposeSecret, SecretString};

use super::{ApiReply, callback, credential_header, http_client, json_str};
use crate::config::ProviderConfig;
use crate::provider::{
    Accepted, OutboundMessage, ParsedReceipt, Provider, ProviderError, ReceiptError,
    ReceiptRequest, ReceiptStatus,
};
use crate::voice_clips::VoiceClips;

/// Arkesel's host, when `url` is not set.
pub const DEFAULT_BASE_URL: &str = "https://sms.arkesel.com";

/// Sends SMS and voice calls through Arkesel.
pub struct ArkeselProvider {
    name: String,
    channels: Vec<Channel>,
    endpoint: String,
    voice_endpoint: String,
    voice_clips: Option<VoiceClips>,
    sender: String,
    callback: Option<String>,
    receipt_token: Option<SecretString>,
    client: reqwest::Client,
}

impl ArkeselProvider {
    /// From its config entry: `api_key` (or `api_secret`) and `from` (the sender id, at
    /// most 11 characters) are required; the `voice` channel needs `voice_clips`.
    pub fn new(config: &ProviderConfig) -> Result<Self, String> {
        let name = &config.name;
        let need = |what: &str| format!("provider '{name}': kind arkesel needs {what}");
        if config
            .channels
            .iter()
            .any(|c| !matches!(c, Channel::Sms | Channel::Voice))
        {
            return Err(format!(
                "provider '{name}': kind arkesel serves only channels \"sms\" and \"voice\""
            ));
        }
        let voice_clips = if config.channels.contains(&Channel::Voice) {
            let dir = config
                .voice_clips
                .as_ref()
                .ok_or_else(|| need("voice_clips (a directory of recorded prompts) for voice"))?;
            Some(
                VoiceClips::load(std::path::Path::new(dir))
                    .map_err(|e| format!("provider '{name}': {e}"))?,
            )
        } else {
            None
        };
        let key = config
            .api_secret
            .as_ref()
            .map(|s| s.expose_secret().to_string())
            .or_else(|| config.api_key.clone())
            .ok_or_else(|| need("api_key"))?;
        let sender = config.from.clone().ok_or_else(|| need("from"))?;
        if sender.is_empty() || sender.chars().count() > 11 {
            return Err(format!(
                "provider '{name}': the Arkesel sender id is 1 to 11 characters"
            ));
        }
        let headers = credential_header(config, "api-key", &key)?;
        let base = config
            .url
            .clone()
            .unwrap_or_else(|| DEFAULT_BASE_URL.into());
        let base = base.trim_end_matches('/');
        Ok(ArkeselProvider {
            name: name.clone(),
            channels: config.channels.clone(),
            endpoint: format!("{base}/api/v2/sms/send"),
            voice_endpoint: format!("{base}/api/v2/sms/voice/send"),
            voice_clips,
            sender,
            callback: config.status_callback_url.clone(),
            receipt_token: config.receipt_token.clone(),
            client: http_client(config, headers)?,
        })
    }

    /// Places a voice call playing the code's audio.
    async fn call(&self, m: &OutboundMessage) -> Result<Accepted, ProviderError> {
        let clips = self.voice_clips.as_ref().ok_or_else(|| {
            ProviderError::Permanent("this Arkesel provider has no voice clips".into())
        })?;
        let wav = clips
            .render(&m.code, &m.locale)
            .map_err(|e| ProviderError::Permanent(e.to_string()))?;
        let audio = reqwest::multipart::Part::bytes(wav.to_vec())
            .file_name("otp.wav")
            .mime_str("audio/wav")
            .map_err(|e| ProviderError::Permanent(e.to_string()))?;
        let form = reqwest::multipart::Form::new()
            .part("voice_file", audio)
            .text("recipients[]", m.to.trim_start_matches('+').to_string());
        let reply = ApiReply::fetch(self.client.post(&self.voice_endpoint).multipart(form)).await?;
        accepted(
            &reply,
            "call",
            &["/data/campaign_id", "/data/id", "/data/0/id"],
        )
    }
}

/// Arkesel's answer to a send (SMS or call): a 2xx with `"status": "success"` is accepted,
/// named by the first id found at `id_pointers`; other statuses map as for every HTTP
/// provider, and a 2xx without `success` is permanent.
fn accepted(reply: &ApiReply, what: &str, id_pointers: &[&str]) -> Result<Accepted, ProviderError> {
    if !reply.status.is_success() {
        return Err(reply.error("Arkesel", "/code"));
    }
    if json_str(reply.json.as_ref(), "/status").as_deref() != Some("success") {
        return Err(ProviderError::Permanent(format!(
            "Arkesel did not accept the {what}"
        )));
    }
    Ok(Accepted::Queued {
        provider_message_id: id_pointers
            .iter()
            .find_map(|p| json_str(reply.json.as_ref(), p)),
    })
}

#[async_trait]
impl Provider for ArkeselProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn channels(&self) -> &[Channel] {
        &self.channels
    }

    async fn send(&self, m: &OutboundMessage) -> Result<Accepted, ProviderError> {
        if m.channel == Channel::Voice {
            return self.call(m).await;
        }
        let mut body = serde_json::json!({
            "sender": self.sender,
            "message": m.body.as_str(),
            "recipients": [m.to.trim_start_matches('+')],
        });
        if let Some(cb) = &self.callback {
            body["callback_url"] = cb.as_str().into();
        }
        let reply = ApiReply::fetch(self.client.post(&self.endpoint).json(&body)).await?;
        accepted(&reply, "message", &["/data/0/id"])
    }

    fn parse_receipt(
        &self,
        request: &ReceiptRequest<'_>,
    ) -> Option<Result<ParsedReceipt, ReceiptError>> {
        Some(
            callback::check_token(self.receipt_token.as_ref(), request)
                .and_then(|()| delivery_webhook(&callback::params(request)?)),
        )
    }
}

/// An Arkesel delivery webhook's message id and status.
fn delivery_webhook(params: &[(String, String)]) -> Result<ParsedReceipt, ReceiptError> {
    let id = callback::get(params, "sms_id")
        .filter(|v| !v.is_empty())
        .map_or_else(|| callback::require(params, "id"), Ok)?;
    let raw = callback::require(params, "status")?;
    let status = match raw.to_ascii_uppercase().as_str() {
        "DELIVERED" | "DELIVRD" => ReceiptStatus::Delivered,
        "FAILED" | "UNDELIVERED" | "UNDELIV" | "REJECTED" | "EXPIRED" => ReceiptStatus::Failed,
        _ => ReceiptStatus::Pending,
    };
    Ok(ParsedReceipt {
        message_id: id.to_string(),
        status,
        error: (status == ReceiptStatus::Failed)
            .then(|| format!("Arkesel {}", raw.chars().take(40).collect::<String>())),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::providers::testing::{FakeApi, message};

    fn config(url: &str) -> ProviderConfig {
        ProviderConfig {
            name: "ark".into(),
            kind: "arkesel".into(),
            url: Some(url.into()),
            channels: vec![Channel::Sms],
            timeout_ms: 2000,
            api_key: Some("ark-key-1".into()),
            from: Some("Acme".into()),
            status_callback_url: Some("https://otp.example.com/v1/receipts/ark?token=tok-1".into()),
            receipt_token: Some("tok-1".to_string().into()),
            ..Default::default()
        }
    }

    async fn fake() -> (FakeApi, ArkeselProvider) {
        let f = FakeApi::start(
            200,
            json!({"status": "success", "data": [{"recipient": "233544919953",
                   "id": "9b752841-7ee7-4d40-b4fe-768bfb1da4f0"}]}),
        )
        .await;
        let p = ArkeselProvider::new(&config(&f.url)).unwrap();
        (f, p)
    }

    fn sms() -> OutboundMessage {
        message(Channel::Sms, "+233544919953", "Your code is 123456.", "en")
    }

    #[tokio::test]
    async fn posts_the_documented_json_with_the_api_key_header() {
        let (f, p) = fake().await;
        assert_eq!(
            p.send(&sms()).await.unwrap(),
            Accepted::Queued {
                provider_message_id: Some("9b752841-7ee7-4d40-b4fe-768bfb1da4f0".into())
            }
        );
        let seen = f.last();
        assert_eq!(seen.method, "POST");
        assert_eq!(seen.path, "/api/v2/sms/send");
        assert_eq!(seen.header("api-key"), "ark-key-1");
        assert_eq!(
            seen.json(),
            json!({"sender": "Acme", "message": "Your code is 123456.",
                   "recipients": ["233544919953"],
                   "callback_url": "https://otp.example.com/v1/receipts/ark?token=tok-1"})
        );
    }

    #[tokio::test]
    async fn replies_map_to_transient_or_permanent() {
        let (f, p) = fake().await;
        for (http, transient) in [
            (401, false),
            (402, false),
            (422, false),
            (429, true),
            (500, true),
            (503, true),
        ] {
            f.reply(http, json!({"status": "error", "message": "x"}));
            let err = p.send(&sms()).await.unwrap_err();
            assert_eq!(
                matches!(err, ProviderError::Transient(_)),
                transient,
                "{http}"
            );
            assert!(!err.to_string().contains("ark-key-1"));
        }
        f.reply(200, json!({"status": "error"}));
        assert!(matches!(
            p.send(&sms()).await,
            Err(ProviderError::Permanent(_))
        ));
    }

    /// A voice-capable provider over synthetic clips (see `voice_clips::tests`).
    async fn voice_fake(clips: &std::path::Path) -> (FakeApi, ArkeselProvider) {
        crate::voice_clips::tests::write_clips(clips, 40, true);
        let f = FakeApi::start(
            200,
            json!({"status": "success", "data": {"campaign_id": "c-77"}}),
        )
        .await;
        let mut c = config(&f.url);
        c.channels = vec![Channel::Sms, Channel::Voice];
        c.voice_clips = Some(clips.display().to_string());
        (f.clone(), ArkeselProvider::new(&c).unwrap())
    }

    #[tokio::test]
    async fn a_call_posts_the_spoken_code_as_a_wav_file() {
        let dir = tempfile::tempdir().unwrap();
        let (f, p) = voice_fake(dir.path()).await;
        let call = message(Channel::Voice, "+233544919953", "Your code is 1 2 3", "en");
        assert_eq!(
            p.send(&call).await.unwrap(),
            Accepted::Queued {
                provider_message_id: Some("c-77".into())
            }
        );
        let seen = f.last();
        assert_eq!(seen.method, "POST");
        assert_eq!(seen.path, "/api/v2/sms/voice/send");
        assert_eq!(seen.header("api-key"), "ark-key-1");
        assert!(
            seen.header("content-type")
                .starts_with("multipart/form-data; boundary=")
        );
        let parts = seen.multipart().await;
        let names: Vec<_> = parts.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["voice_file", "recipients[]"]);
        assert_eq!(parts[0].file_name.as_deref(), Some("otp.wav"));
        assert_eq!(parts[0].content_type.as_deref(), Some("audio/wav"));
        // The code of `message()` is 123456: read out digit by digit, twice.
        let digits = [1001, 1002, 1003, 1004, 1005, 1006];
        let expected: Vec<i32> = std::iter::once(100)
            .chain(digits)
            .chain(std::iter::once(200))
            .chain(digits)
            .collect();
        assert_eq!(crate::voice_clips::tests::spoken(&parts[0].bytes), expected);
        assert_eq!(&parts[1].bytes[..], b"233544919953");
        // The text of the message is not what is sent: only the clips speak.
        assert!(!String::from_utf8_lossy(&seen.body).contains("Your code"));
    }

    #[tokio::test]
    async fn call_replies_map_like_sms_replies() {
        let dir = tempfile::tempdir().unwrap();
        let (f, p) = voice_fake(dir.path()).await;
        let call = message(Channel::Voice, "+233544919953", "", "en");
        for (http, transient) in [
            (401, false),
            (402, false),
            (422, false),
            (429, true),
            (500, true),
        ] {
            f.reply(http, json!({"status": "error", "message": "x"}));
            let err = p.send(&call).await.unwrap_err();
            assert_eq!(
                matches!(err, ProviderError::Transient(_)),
                transient,
                "{http}"
            );
        }
        f.reply(
            200,
            json!({"status": "error", "message": "Insufficient balance"}),
        );
        assert!(matches!(
            p.send(&call).await,
            Err(ProviderError::Permanent(_))
        ));
        f.reply(200, json!({"status": "success", "data": [{"id": "v-1"}]}));
        assert_eq!(
            p.send(&call).await.unwrap(),
            Accepted::Queued {
                provider_message_id: Some("v-1".into())
            }
        );
    }

    #[test]
    fn voice_needs_a_usable_clip_directory() {
        let mut c = config("http://127.0.0.1:9");
        c.channels = vec![Channel::Voice];
        let err = ArkeselProvider::new(&c).err().unwrap();
        assert!(err.contains("voice_clips"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        c.voice_clips = Some(dir.path().display().to_string());
        let err = ArkeselProvider::new(&c).err().unwrap();
        assert!(err.contains("intro.wav"), "{err}");
        c.channels = vec![Channel::Email];
        assert!(ArkeselProvider::new(&c).is_err());
    }

    fn parse(p: &ArkeselProvider, query: &str, body: &str) -> Result<ParsedReceipt, ReceiptError> {
        let h = reqwest::header::HeaderMap::new();
        p.parse_receipt(&ReceiptRequest {
            headers: &h,
            query,
            body: body.as_bytes(),
            now: chrono::Utc::now(),
        })
        .unwrap()
    }

    #[test]
    fn delivery_webhooks_need_the_token_and_map_statuses() {
        let p = ArkeselProvider::new(&config("http://127.0.0.1:9")).unwrap();
        let id = "9b752841-7ee7-4d40-b4fe-768bfb1da4f0";
        let r = parse(&p, &format!("token=tok-1&sms_id={id}&status=DELIVERED"), "").unwrap();
        assert_eq!(
            (r.message_id.as_str(), r.status),
            (id, ReceiptStatus::Delivered)
        );
        let body: Value = json!({"sms_id": id, "status": "FAILED"});
        let r = parse(&p, "token=tok-1", &body.to_string()).unwrap();
        assert_eq!(r.status, ReceiptStatus::Failed);
        assert_eq!(r.error.as_deref(), Some("Arkesel FAILED"));
        let r = parse(&p, "token=tok-1", &format!("id={id}&status=SUBMITTED")).unwrap();
        assert_eq!(r.status, ReceiptStatus::Pending);
        assert_eq!(
            parse(&p, &format!("sms_id={id}&status=DELIVERED"), ""),
            Err(ReceiptError::Forged)
        );
        assert_eq!(
            parse(&p, &format!("token=tok-2&sms_id={id}&status=DELIVERED"), ""),
            Err(ReceiptError::Forged)
        );
        assert!(matches!(
            parse(&p, "token=tok-1&status=DELIVERED", ""),
            Err(ReceiptError::Malformed(_))
        ));
        let mut c = config("http://127.0.0.1:9");
        c.receipt_token = None;
        let p = ArkeselProvider::new(&c).unwrap();
        assert_eq!(
            parse(&p, &format!("token=tok-1&sms_id={id}&status=DELIVERED"), ""),
            Err(ReceiptError::Forged)
        );
    }
}
