//! The `smtp` provider: sends email verifications through an SMTP server (lettre).
//!
//! Transport security is `starttls` (default: STARTTLS required, port 587), `tls`
//! (implicit TLS, port 465) or `none` (plain text, for a relay on the same host); AUTH
//! with `username`/`password` when given. The server's certificate must verify against
//! the system's CA roots, plus the certificates of `tls_ca_file` when set (a private
//! relay's own CA); there is deliberately no switch that accepts any certificate. Each
//! message is `multipart/alternative` with the plain-text and HTML parts, and its
//! `Message-ID` is otpd's message id at the sender's domain (`<dlv_…@acme.example>`, RFC
//! 5322 §3.6.4), so a retried send is recognisable as the same message.
//!
//! With `dkim_private_key_file` and `dkim_selector` every message is DKIM-signed (RFC
//! 6376, lettre's `dkim`) for the domain of `from`, `relaxed/relaxed`, over `From`, `To`,
//! `Subject`, `Date`, `Message-ID` and `MIME-Version` (and the body): an RSA key as PKCS#1
//! PEM (`-----BEGIN RSA PRIVATE KEY-----`, `rsa-sha256`) or an Ed25519 key as the base64
//! of its 32-byte seed (`ed25519-sha256`, RFC 8463). The public key goes in DNS at
//! `<selector>._domainkey.<domain>`.
//!
//! An SMTP server that accepts the message (250) takes responsibility for it: that counts
//! as delivered (mail has no delivery receipts otpd could wait for). 4xx replies,
//! connection errors and timeouts are transient; 5xx replies and bad addresses permanent.

use std::time::Duration;

use async_trait::async_trait;
use lettre::message::dkim::{
    DkimCanonicalization, DkimCanonicalizationType, DkimConfig, DkimSigningAlgorithm,
    DkimSigningKey,
};
use lettre::message::header::HeaderName;
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
    dkim: Option<DkimConfig>,
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
        let dkim = dkim_config(config, &from)?;
        Ok(SmtpProvider {
            name: name.clone(),
            channels: config.channels.clone(),
            from,
            dkim,
            transport: builder.build(),
        })
    }
}

/// The headers a DKIM signature covers. Not `Content-Type`: lettre folds it (the multipart
/// boundary) in a way its relaxed canonicalization does not reproduce, so verifiers
/// (mailauth) reject signatures over it; the body hash covers the body anyway.
const DKIM_HEADERS: [&str; 6] = [
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
];

/// The DKIM signing setup of `dkim_private_key_file` and `dkim_selector`, for the domain
/// of `from`; `None` without them.
fn dkim_config(config: &ProviderConfig, from: &Mailbox) -> Result<Option<DkimConfig>, String> {
    let name = &config.name;
    let (path, selector) = match (&config.dkim_private_key_file, &config.dkim_selector) {
        (None, None) => return Ok(None),
        (Some(path), Some(selector)) => (path, selector),
        _ => {
            return Err(format!(
                "provider '{name}': dkim_private_key_file and dkim_selector go together"
            ));
        }
    };
    if selector.is_empty()
        || !selector
            .split('.')
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
    {
        return Err(format!(
            "provider '{name}': dkim_selector must be a DNS label (letters, digits, '-')"
        ));
    }
    let key = super::read_secret(path)
        .map_err(|e| format!("provider '{name}': dkim_private_key_file: {e}"))?;
    let key = key.expose_secret().trim();
    let (algorithm, material) = if key.contains("-----BEGIN RSA PRIVATE KEY-----") {
        (DkimSigningAlgorithm::Rsa, key.to_string())
    } else if key.contains("-----BEGIN") {
        return Err(format!(
            "provider '{name}': dkim_private_key_file must hold an RSA key as PKCS#1 PEM (BEGIN RSA PRIVATE KEY; `openssl rsa -in key.pem -traditional` converts one) or an Ed25519 seed in base64"
        ));
    } else {
        (DkimSigningAlgorithm::Ed25519, key.to_string())
    };
    let signing = DkimSigningKey::new(&material, algorithm).map_err(|_| {
        format!(
            "provider '{name}': dkim_private_key_file {} is not a usable DKIM key",
            path.display()
        )
    })?;
    Ok(Some(DkimConfig::new(
        selector.clone(),
        from.email.domain().to_ascii_lowercase(),
        signing,
        DKIM_HEADERS
            .iter()
            .copied()
            .map(HeaderName::new_from_ascii_str)
            .collect(),
        DkimCanonicalization {
            header: DkimCanonicalizationType::Relaxed,
            body: DkimCanonicalizationType::Relaxed,
        },
    )))
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

/// The `Message-ID` of otpd's message `id`: `<id@domain of the sender>`.
fn message_id(id: &str, from: &Mailbox) -> String {
    format!("<{id}@{}>", from.email.domain().to_ascii_lowercase())
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
        let mut email = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .message_id(Some(message_id(&m.message_id, &self.from)))
            .multipart(body)
            .map_err(|e| ProviderError::Permanent(format!("message: {e}")))?;
        if let Some(dkim) = &self.dkim {
            email.sign(dkim);
        }
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

    #[test]
    fn the_message_id_is_at_the_senders_domain() {
        let from: Mailbox = "Acme <no-reply@Mail.Acme.example>".parse().unwrap();
        assert_eq!(message_id("dlv_1", &from), "<dlv_1@mail.acme.example>");
    }

    #[tokio::test]
    async fn dkim_needs_a_selector_and_a_usable_key() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config();
        c.dkim_selector = Some("otpd".into());
        assert!(SmtpProvider::new(&c).err().unwrap().contains("go together"));
        let key = dir.path().join("dkim.key");
        c.dkim_private_key_file = Some(key.clone());
        assert!(
            SmtpProvider::new(&c)
                .err()
                .unwrap()
                .contains("dkim_private_key_file")
        );
        std::fs::write(
            &key,
            "-----BEGIN PRIVATE KEY-----\nMC4CAQ==\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        assert!(SmtpProvider::new(&c).err().unwrap().contains("PKCS#1"));
        // An Ed25519 seed (RFC 8463's test key, section A.2).
        std::fs::write(&key, "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=\n").unwrap();
        let p = SmtpProvider::new(&c).unwrap();
        assert!(p.dkim.is_some());
        c.dkim_selector = Some("bad selector".into());
        assert!(SmtpProvider::new(&c).is_err());
    }

    // RFC 8463 appendix A: the Ed25519 key "brisbane" of football.example.com; the
    // signature lettre adds names the domain, selector and algorithm and verifies with
    // the published key (the e2e test verifies an RSA signature with dkimpy).
    #[tokio::test]
    async fn messages_are_signed_for_the_senders_domain() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("dkim.key");
        std::fs::write(&key, "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=").unwrap();
        let mut c = config();
        c.from = Some("Joe <joe@football.example.com>".into());
        c.dkim_selector = Some("brisbane".into());
        c.dkim_private_key_file = Some(key);
        let p = SmtpProvider::new(&c).unwrap();
        let mut m = Message::builder()
            .from(p.from.clone())
            .to("jdoe@example.com".parse().unwrap())
            .subject("Your code")
            .message_id(Some(message_id("dlv_1", &p.from)))
            .body("123456".to_string())
            .unwrap();
        m.sign(p.dkim.as_ref().unwrap());
        let text = String::from_utf8(m.formatted()).unwrap();
        let sig = text
            .lines()
            .skip_while(|l| !l.starts_with("DKIM-Signature:"))
            .take_while(|l| {
                l.starts_with("DKIM-Signature:") || l.starts_with(' ') || l.starts_with('\t')
            })
            .collect::<String>();
        for part in [
            "a=ed25519-sha256",
            "d=football.example.com",
            "s=brisbane",
            "c=relaxed/relaxed",
        ] {
            assert!(sig.contains(part), "{part} in {sig}");
        }
        assert!(
            text.contains("Message-ID: <dlv_1@football.example.com>"),
            "{text}"
        );
    }
}
