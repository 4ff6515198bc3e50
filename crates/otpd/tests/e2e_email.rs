//! Email delivery end to end: the real binary sends a verification through the `smtp`
//! provider to a real SMTP server (aiosmtpd from PyPI, `tests/peers/smtp_server.py`) with
//! AUTH, and the code in the received mail checks.
//!
//! The server runs under the Python named by `OTPD_PY` (with
//! `tests/requirements-test.txt` installed). Without it the test prints "skipped: …" and
//! passes, unless `OTPD_REQUIRE_PEERS=1` (as in `.ci/run`) makes it fail.

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

impl SmtpPeer {
    async fn start(py: &str, user: &str, password: &str) -> SmtpPeer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/smtp_server.py");
        let mut child = Command::new(py)
            .args([script, &port.to_string(), user, password])
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
