//! Email delivery end to end: the real binary sends a verification through the `smtp`
//! provider to a real SMTP server (aiosmtpd from PyPI, `tests/peers/smtp_server.py`) with
//! AUTH, and the code in the received mail checks — in plain text, over STARTTLS and over
//! implicit TLS. The TLS server's certificate is issued by a CA made for the test (rcgen)
//! and trusted through the provider's `tls_ca_file`; without it otpd refuses the server.
//!
//! The server runs under the Python named by `OTPD_PY` (with
//! `tests/requirements-test.txt` installed). Without it the test prints "skipped: …" and
//! passes, unless `OTPD_REQUIRE_PEERS=1` (as in `.ci/run`) makes it fail.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// The local SMTP server and the lines it prints.
struct SmtpPeer {
    port: u16,
    lines: Lines<BufReader<ChildStdout>>,
    _child: Child,
}

/// The Python with aiosmtpd, or `None` after printing "skipped: …" (a failure when
/// `OTPD_REQUIRE_PEERS=1`).
fn python_with_aiosmtpd() -> Option<String> {
    let required = std::env::var("OTPD_REQUIRE_PEERS").is_ok_and(|v| v == "1");
    let skip = |why: &str| {
        assert!(!required, "OTPD_REQUIRE_PEERS=1 but {why}");
        println!("skipped: {why}; set OTPD_PY to a python with tests/requirements-test.txt");
        None
    };
    let Ok(py) = std::env::var("OTPD_PY") else {
        return skip("OTPD_PY is not set");
    };
    let ok = std::process::Command::new(&py)
        .args(["-c", "import aiosmtpd"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        return skip("OTPD_PY has no aiosmtpd");
    }
    Some(py)
}

/// A throwaway CA and a server certificate it issued for `localhost` and `127.0.0.1`,
/// written as PEM files into `dir`: (CA certificate, server chain, server key).
fn issue_certificates(dir: &std::path::Path) -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "otpd e2e test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let server =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    (
        write("ca.pem", ca_cert.pem()),
        write("server.pem", server.pem()),
        write("server.key", key.serialize_pem()),
    )
}

impl SmtpPeer {
    async fn start(py: &str, user: &str, password: &str) -> SmtpPeer {
        Self::start_with(py, user, password, &[]).await
    }

    /// Starts the server with extra arguments (`MODE CERT KEY`).
    async fn start_with(py: &str, user: &str, password: &str, tls: &[&str]) -> SmtpPeer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/smtp_server.py");
        let mut child = Command::new(py)
            .args([script, &port.to_string(), user, password])
            .args(tls)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the SMTP server");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("SMTP server ready in time")
            .expect("read")
            .expect("a line");
        assert_eq!(ready, "READY");
        SmtpPeer {
            port,
            lines,
            _child: child,
        }
    }

    /// The next message the server received.
    async fn next_message(&mut self) -> Value {
        let line = tokio::time::timeout(DELIVERY_TIMEOUT, self.lines.next_line())
            .await
            .expect("a message in time")
            .expect("read")
            .expect("a line");
        serde_json::from_str(&line).expect("JSON line")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_verification_goes_through_a_real_smtp_server() {
    let Some(py) = python_with_aiosmtpd() else {
        return;
    };
    let mut smtp = SmtpPeer::start(&py, "otpd", "s3cret-smtp-pass").await;
    let dir = TestDir::new();
    let sink = Sink::start().await;
    let mut config = Config::for_sink(&sink);
    config.channels = vec!["sms".into()];
    config.extra_toml = format!(
        "[[providers]]\nname = \"mail\"\nkind = \"smtp\"\nhost = \"127.0.0.1\"\nport = {}\n\
         tls = \"none\"\nusername = \"otpd\"\npassword = \"s3cret-smtp-pass\"\n\
         from = \"Acme <no-reply@acme.example>\"\nchannels = [\"email\"]\n",
        smtp.port
    );
    let otpd = OtpdProcess::start(&dir, &config).await;
    let sent = otpd
        .send_ok(&json!({"to": "alice@example.com", "channel": "email"}))
        .await;
    let id = sent.id();
    let mail = smtp.next_message().await;
    assert_eq!(mail["auth_user"], "otpd", "AUTH was used");
    assert_eq!(mail["mail_from"], "no-reply@acme.example");
    assert_eq!(mail["rcpt_tos"], json!(["alice@example.com"]));
    let data = mail["data"].as_str().unwrap();
    assert!(
        data.contains("Subject: Your default verification code"),
        "{data}"
    );
    assert!(data.contains("multipart/alternative"), "{data}");
    assert!(data.contains("text/plain") && data.contains("text/html"));
    assert!(data.contains("Message-ID: <dlv_"), "{data}");
    let code = extract_code(data).expect("the code in the plain-text part");
    assert!(data.contains(&format!(">{code}</p>")), "the HTML part");
    assert!(
        !otpd.output_contains("s3cret-smtp-pass"),
        "no password in logs"
    );
    let v = otpd.verification(&id).await;
    let deadline = std::time::Instant::now() + DELIVERY_TIMEOUT;
    let mut v = v.body;
    while v["deliveries"][0]["status"] != "delivered" {
        assert!(std::time::Instant::now() < deadline, "{v}");
        tokio::time::sleep(Duration::from_millis(25)).await;
        v = otpd.verification(&id).await.body;
    }
    assert_eq!(v["deliveries"][0]["provider"], "mail");
    otpd.check(&json!({"id": id, "code": code}))
        .await
        .assert_status(200, "check")
        .assert_success("approved");
    assert!(
        sink.attempts().is_empty(),
        "email never goes to the SMS sink"
    );
}

/// The `[[providers]]` entry of an smtp provider `mail` at `port` with `extra` keys.
fn mail_provider(port: u16, extra: &str) -> String {
    format!(
        "[[providers]]\nname = \"mail\"\nkind = \"smtp\"\nhost = \"localhost\"\nport = {port}\n\
         username = \"otpd\"\npassword = \"s3cret-smtp-pass\"\n\
         from = \"Acme <no-reply@acme.example>\"\nchannels = [\"email\"]\n{extra}"
    )
}

/// Sends an email verification through `otpd`, reads the mail `smtp` received, checks
/// its code and returns the mail.
async fn verify_by_email(otpd: &OtpdProcess, smtp: &mut SmtpPeer) -> Value {
    let id = otpd
        .send_ok(&json!({"to": "bob@example.com", "channel": "email"}))
        .await
        .id();
    let mail = smtp.next_message().await;
    assert_eq!(mail["auth_user"], "otpd", "AUTH was used");
    let code = extract_code(mail["data"].as_str().unwrap()).expect("a code in the mail");
    otpd.check(&json!({"id": id, "code": code}))
        .await
        .assert_status(200, "check");
    assert!(!otpd.output_contains("s3cret-smtp-pass"));
    mail
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_goes_over_starttls_and_implicit_tls_with_auth_to_a_server_of_a_private_ca() {
    let Some(py) = python_with_aiosmtpd() else {
        return;
    };
    let certs = tempfile::tempdir().unwrap();
    let (ca, chain, key) = issue_certificates(certs.path());
    for mode in ["starttls", "tls"] {
        let mut smtp =
            SmtpPeer::start_with(&py, "otpd", "s3cret-smtp-pass", &[mode, &chain, &key]).await;
        let dir = TestDir::new();
        let sink = Sink::start().await;
        let mut config = Config::for_sink(&sink);
        config.channels = vec!["sms".into()];
        config.extra_toml = mail_provider(
            smtp.port,
            &format!("tls = {mode:?}\ntls_ca_file = {ca:?}\n"),
        );
        let otpd = OtpdProcess::start(&dir, &config).await;
        let mail = verify_by_email(&otpd, &mut smtp).await;
        assert!(
            mail["tls"]
                .as_str()
                .is_some_and(|v| v.starts_with("TLSv1.")),
            "{mode}: the mail came over TLS: {mail}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_certificate_is_not_trusted_gets_nothing() {
    let Some(py) = python_with_aiosmtpd() else {
        return;
    };
    let certs = tempfile::tempdir().unwrap();
    let (_, chain, key) = issue_certificates(certs.path());
    let mut smtp =
        SmtpPeer::start_with(&py, "otpd", "s3cret-smtp-pass", &["starttls", &chain, &key]).await;
    let dir = TestDir::new();
    let sink = Sink::start().await;
    let mut config = Config::for_sink(&sink);
    config.channels = vec!["sms".into()];
    config.delivery.max_attempts = 2;
    // STARTTLS against the system's roots only: the test CA is unknown.
    config.extra_toml = mail_provider(smtp.port, "tls = \"starttls\"\n");
    let otpd = OtpdProcess::start(&dir, &config).await;
    let id = otpd
        .send_ok(&json!({"to": "carol@example.com", "channel": "email"}))
        .await
        .id();
    let deadline = std::time::Instant::now() + DELIVERY_TIMEOUT;
    loop {
        let v = otpd.verification(&id).await.body;
        if v["deliveries"][0]["status"] == "failed" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(300), smtp.lines.next_line())
            .await
            .is_err(),
        "no mail reached the untrusted server"
    );
}

/// mailauth's verdict on the DKIM signatures of `message` (tests/peers/dkim), with the
/// TXT record `txt` published for `selector._domainkey.domain`; `None` (after "skipped: …")
/// when node or the package is missing and peers are not required.
fn mailauth_verify(message: &str, selector: &str, domain: &str, txt: &str) -> Option<Value> {
    use std::io::Write;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/dkim");
    if !dir.join("node_modules/mailauth/package.json").is_file() {
        let required = std::env::var("OTPD_REQUIRE_PEERS").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "OTPD_REQUIRE_PEERS=1 but mailauth is not installed"
        );
        println!("skipped: run `npm ci` in crates/otpd/tests/peers/dkim");
        return None;
    }
    let mut child = std::process::Command::new("node")
        .arg(dir.join("dkim_verify.js"))
        .args([selector, domain, txt])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node dkim_verify.js");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(message.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    Some(serde_json::from_slice(&out.stdout).expect("JSON"))
}

// Issue 21, item 9: the Message-ID is at the sender's domain (RFC 5322 §3.6.4: a unique id
// "on the right of the @" naming the generating host's domain), and with a DKIM key every
// mail is signed for that domain (RFC 6376) — the signature verified by mailauth, an
// independent implementation, against the public key as DNS would publish it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_is_dkim_signed_for_the_senders_domain_with_its_message_id() {
    let Some(py) = python_with_aiosmtpd() else {
        return;
    };
    let dir = TestDir::new();
    let key = dir.path().join("dkim.pem");
    let made = std::process::Command::new("openssl")
        .args(["genrsa", "-traditional", "-out"])
        .arg(&key)
        .arg("2048")
        .stderr(Stdio::null())
        .status();
    if !made.is_ok_and(|s| s.success()) {
        assert!(
            std::env::var("OTPD_REQUIRE_PEERS").is_err(),
            "openssl is needed to make the test's DKIM key"
        );
        println!("skipped: no openssl to make a DKIM key");
        return;
    }
    let public = std::process::Command::new("openssl")
        .args(["rsa", "-pubout", "-outform", "DER", "-in"])
        .arg(&key)
        .stderr(Stdio::null())
        .output()
        .unwrap()
        .stdout;
    use base64::Engine;
    let txt = format!(
        "v=DKIM1; k=rsa; p={}",
        base64::engine::general_purpose::STANDARD.encode(public)
    );
    let mut smtp = SmtpPeer::start(&py, "otpd", "s3cret-smtp-pass").await;
    let sink = Sink::start().await;
    let mut config = Config::for_sink(&sink);
    config.channels = vec!["sms".into()];
    config.extra_toml = format!(
        "[[providers]]\nname = \"mail\"\nkind = \"smtp\"\nhost = \"127.0.0.1\"\nport = {}\n\
         tls = \"none\"\nusername = \"otpd\"\npassword = \"s3cret-smtp-pass\"\n\
         from = \"Acme <no-reply@acme.example>\"\nchannels = [\"email\"]\n\
         dkim_selector = \"otpd2026\"\ndkim_private_key_file = {:?}\n",
        smtp.port,
        key.display().to_string()
    );
    let otpd = OtpdProcess::start(&dir, &config).await;
    let id = otpd
        .send_ok(&json!({"to": "carol@example.com", "channel": "email"}))
        .await
        .id();
    let mail = smtp.next_message().await;
    let data = mail["data"].as_str().unwrap();
    let _ = id;
    assert!(
        data.lines()
            .any(|l| l.starts_with("Message-ID: <dlv_") && l.ends_with("@acme.example>")),
        "{data}"
    );
    assert!(data.contains("DKIM-Signature:"), "{data}");
    let Some(results) = mailauth_verify(data, "otpd2026", "acme.example", &txt) else {
        return;
    };
    assert_eq!(results[0]["result"], "pass", "{results}");
    assert_eq!(results[0]["domain"], "acme.example");
    assert_eq!(results[0]["selector"], "otpd2026");
    assert_eq!(results[0]["algo"], "rsa-sha256");
    // Another key in DNS: the signature does not verify.
    let other_key = dir.path().join("other.pem");
    std::process::Command::new("openssl")
        .args(["genrsa", "-traditional", "-out"])
        .arg(&other_key)
        .arg("2048")
        .stderr(Stdio::null())
        .status()
        .unwrap();
    let other_public = std::process::Command::new("openssl")
        .args(["rsa", "-pubout", "-outform", "DER", "-in"])
        .arg(&other_key)
        .stderr(Stdio::null())
        .output()
        .unwrap()
        .stdout;
    let other_txt = format!(
        "v=DKIM1; k=rsa; p={}",
        base64::engine::general_purpose::STANDARD.encode(other_public)
    );
    let other = mailauth_verify(data, "otpd2026", "acme.example", &other_txt);
    if let Some(other) = other {
        assert_ne!(other[0]["result"], "pass", "{other}");
    }
}
