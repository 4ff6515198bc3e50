//! The `smtp` provider: sends email verifications through an SMTP server (lettre).
//!
//! Transport security is `starttls` (default: STARTTLS required, port 587), `tls`
//! (implicit TLS, port 465) or `none` (plain text, for a relay on the same host); AUTH
//! with `username`/`password` when given. The server's certificate must verify against
//! the system's CA roots, plus the certificates of `tls_ca_file` when set (a private
//! relay's own CA); there is deliberately no switch that accepts any certificate. Each message is `multipart/alternative` with
//! the plain-text and HTML parts, and its `Message-ID` is derived from otpd's message id,
//! so a retried send is recognisable as the same message.
//!
//! An SMTP server that accepts the message (250) takes responsibility for it: that counts
//! as delivered (mail has no delivery receipts otpd could wait for). 4xx replies,
//! connection errors and timeouts are transient; 5xx replies and bad addresses permanent.

use std::time::Duration;

use async_trait::async_trait;
use lettre::message::{Mailbox, MultiPart, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use otpd_core::channel::Channel;
use secrecy::ExposeSecret;

use crate::config::ProviderConfig;
use crate::provider::{Accepted, OutboundMessage, Provider, ProviderError};

/// Sends email through an SMTP server.
pub struct SmtpProvider {
    name: String,
    channels: Vec<Channel>,
    from: Mailbox,
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl SmtpProvider {
    /// From its config entry: `host` and `from` are required.
    pub fn new(config: &ProviderConfig) -> Result<Self, String> {
        let name = &config.name;
        let host = config
            .host
            .as_deref()
            .ok_or_else(|| format!("provider '{name}': kind smtp needs host"))?;
        let from: Mailbox = config
            .from
            .as_deref()
            .ok_or_else(|| format!("provider '{name}': kind smtp needs from"))?
            .parse()
            .map_err(|_| format!("provider '{name}': from is not an email address"))?;
        if config.channels.iter().any(|c| *c != Channel::Email) {
            return Err(format!(
                "provider '{name}': kind smtp serves only channels = [\"email\"]"
            ));
        }
        let tls = || tls_parameters(config, host);
        let mut builder = match config.tls.as_deref().unwrap_or("starttls") {
            "starttls" => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
                .port(lettre::transport::smtp::SUBMISSION_PORT)
                .tls(Tls::Required(tls()?)),
            "tls" => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
                .port(lettre::transport::smtp::SUBMISSIONS_PORT)
                .tls(Tls::Wrapper(tls()?)),
            "none" if config.tls_ca_file.is_some() => {
                return Err(format!(
                    "provider '{name}': tls_ca_file needs tls = \"starttls\" or \"tls\""
                ));
            }
            "none" => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
            other => {
                return Err(format!(
                    "provider '{name}': tls must be starttls, tls or none (not '{other}')"
                ));
            }
        };
        if let Some(port) = config.port {
            builder = builder.port(port);
        }
        builder = builder.timeout(Some(Duration::from_millis(config.timeout_ms)));
        match (&config.username, &config.password) {
            (Some(user), Some(password)) => {
                builder = builder.credentials(Credentials::new(
                    user.clone(),
                    password.expose_secret().to_string(),
                ));
            }
            (None, None) => {}
            _ => {
                return Err(format!(
                    "provider '{name}': username and password go together"
                ));
            }
        }
        Ok(SmtpProvider {
            name: name.clone(),
            channels: config.channels.clone(),
            from,
            transport: builder.build(),
        })
    }
}

/// TLS for `host`: the system's roots, plus the certificates in `tls_ca_file`.
fn tls_parameters(config: &ProviderConfig, host: &str) -> Result<TlsParameters, String> {
    let name = &config.name;
    let mut builder = TlsParameters::builder(host.to_string());
    if let Some(path) = &config.tls_ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| format!("provider '{name}': tls_ca_file {path}: {e}"))?;
        if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
            return Err(format!(
                "provider '{name}': tls_ca_file {path} holds no PEM certificate"
            ));
        }
        let certs = Certificate::from_pem(&pem)
            .map_err(|_| format!("provider '{name}': tls_ca_file {path} is not valid PEM"))?;
        builder = builder.add_root_certificate(certs);
    }
    builder
        .build()
        .map_err(|e| format!("provider '{name}': TLS: {e}"))
}

/// Maps a lettre error: 4xx and transport trouble are transient, 5xx permanent.
fn classify(e: &lettre::transport::smtp::Error) -> ProviderError {
    let code = e.status().map(|c| c.to_string()).unwrap_or_default();
    let msg = if code.is_empty() {
        "SMTP transport error".to_string()
    } else {
        format!("SMTP {code}")
    };
    if e.is_permanent() {
        ProviderError::Permanent(msg)
    } else {
        ProviderError::Transient(msg)
    }
}

#[async_trait]
impl Provider for SmtpProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn channels(&self) -> &[Channel] {
        &self.channels
    }

    async fn send(&self, m: &OutboundMessage) -> Result<Accepted, ProviderError> {
        let to: Mailbox =
            m.to.parse()
                .map_err(|_| ProviderError::Permanent("not an email address".into()))?;
        let subject = m.subject.clone().unwrap_or_default();
        let plain = m.body.as_str().to_string();
        let body = match &m.html {
            Some(html) => MultiPart::alternative_plain_html(plain, html.as_str().to_string()),
            None => MultiPart::mixed().singlepart(
                lettre::message::SinglePart::builder()
                    .header(ContentType::TEXT_PLAIN)
                    .body(plain),
            ),
        };
        let email = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .message_id(Some(format!("<{}@otpd>", m.message_id)))
            .multipart(body)
            .map_err(|e| ProviderError::Permanent(format!("message: {e}")))?;
        match self.transport.send(email).await {
            Ok(_) => Ok(Accepted::Delivered {
                provider_message_id: None,
            }),
            Err(e) => Err(classify(&e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A throwaway self-signed certificate (its key was discarded).
    const TEST_CA: &str = include_str!("../../tests/fixtures/test_ca.pem");

    fn config() -> ProviderConfig {
        ProviderConfig {
            name: "mail".into(),
            kind: "smtp".into(),
            channels: vec![Channel::Email],
            timeout_ms: 1000,
            host: Some("smtp.example.com".into()),
            from: Some("Acme <no-reply@acme.example>".into()),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn needs_host_from_email_only_and_a_known_tls_mode() {
        assert!(SmtpProvider::new(&config()).is_ok());
        let mut c = config();
        c.host = None;
        assert!(SmtpProvider::new(&c).err().unwrap().contains("host"));
        let mut c = config();
        c.from = Some("not an address".into());
        assert!(SmtpProvider::new(&c).is_err());
        let mut c = config();
        c.channels = vec![Channel::Sms];
        assert!(SmtpProvider::new(&c).is_err());
        let mut c = config();
        c.tls = Some("maybe".into());
        assert!(SmtpProvider::new(&c).is_err());
        let mut c = config();
        c.username = Some("u".into());
        assert!(SmtpProvider::new(&c).is_err(), "a user without a password");
        for mode in ["starttls", "tls", "none"] {
            let mut c = config();
            c.tls = Some(mode.into());
            c.port = Some(2525);
            assert!(SmtpProvider::new(&c).is_ok(), "{mode}");
        }
    }

    #[tokio::test]
    async fn an_extra_ca_file_must_exist_hold_a_certificate_and_go_with_tls() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config();
        c.tls_ca_file = Some(dir.path().join("missing.pem").display().to_string());
        assert!(SmtpProvider::new(&c).err().unwrap().contains("missing.pem"));
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        c.tls_ca_file = Some(junk.display().to_string());
        assert!(
            SmtpProvider::new(&c)
                .err()
                .unwrap()
                .contains("no PEM certificate")
        );
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, TEST_CA).unwrap();
        c.tls_ca_file = Some(ca.display().to_string());
        for mode in ["starttls", "tls"] {
            c.tls = Some(mode.into());
            assert!(SmtpProvider::new(&c).is_ok(), "{mode}");
        }
        c.tls = Some("none".into());
        assert!(
            SmtpProvider::new(&c).is_err(),
            "a CA file with plain text is a mistake"
        );
    }
}
