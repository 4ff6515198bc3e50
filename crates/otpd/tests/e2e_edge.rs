//! End-to-end tests of otpd's network edge, against the real binary:
//!
//! - HTTPS by otpd itself (rustls): HTTP/1.1 and HTTP/2 by ALPN, `Strict-Transport-Security`,
//!   the certificate reloaded on SIGHUP while an open connection keeps working;
//! - plain HTTP beyond loopback only with `OTPD_TLS__TERMINATED_BY_PROXY=true`;
//! - `/metrics` beyond loopback only with its token;
//! - `X-Forwarded-For` read from the right, so a client-written entry does not move the
//!   per-IP rate limit;
//! - slow and idle clients: the header-read, idle and TLS handshake timeouts and the
//!   connection limit.
//!
//! A "non-loopback" server binds 0.0.0.0 on a free port; requests only ever go to
//! 127.0.0.1.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Config, OtpdProcess, SendReply, Sink, TestDir, free_port};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// A throwaway CA (named `ca_name`) and a server certificate it issued for `localhost` and
/// `127.0.0.1`, written into `dir` as `<prefix>-ca.pem`, `<prefix>-cert.pem`,
/// `<prefix>-key.pem`.
fn issue(dir: &Path, prefix: &str, ca_name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, ca_name);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let server =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
    let write = |name: &str, text: String| {
        let path = dir.join(format!("{prefix}-{name}"));
        std::fs::write(&path, text).unwrap();
        path
    };
    (
        write("ca.pem", ca_cert.pem()),
        write("cert.pem", server.pem()),
        write("key.pem", key.serialize_pem()),
    )
}

/// An HTTPS client trusting only `ca`.
fn https_client(ca: &Path, http1_only: bool) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap();
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .timeout(Duration::from_secs(10));
    if http1_only {
        builder = builder.http1_only();
    }
    builder.build().unwrap()
}

/// Runs `otpd serve` in `dir` with `config` and `env`, expecting it to refuse to start:
/// returns its stderr.
fn refused_start(dir: &TestDir, config: &Config, env: &[(&str, &str)]) -> String {
    std::fs::write(dir.config_path(), config.to_toml()).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_otpd"))
        .arg("serve")
        .arg("--config")
        .arg(dir.config_path())
        .current_dir(dir.path())
        .env_remove("OTPD_CONFIG")
        .env_remove("OTPD_REDIS_URL")
        .env_remove("OTPD_SECRET")
        .env("OTPD_DATABASE_URL", dir.database_url())
        .env("OTPD_MASTER_KEY", dir.master_key())
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "otpd started although it should refuse: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "a refusal exits non-zero");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `http://127.0.0.1:PORT` for a server that printed `http://0.0.0.0:PORT`.
fn loopback_url(otpd: &OtpdProcess) -> String {
    otpd.base_url().replace("0.0.0.0", "127.0.0.1")
}

/// `GET /healthz` on a raw kept-alive connection; returns the response head and body.
async fn raw_healthz(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    read_response(stream).await
}

/// Reads one HTTP/1.1 response with a Content-Length.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .expect("a response in time")
            .unwrap();
        assert!(n > 0, "connection closed mid-response: {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return text;
            }
        }
    }
}

/// Waits (up to `within`) for the server to close `stream`; returns how long it took.
/// Anything the server writes before closing (e.g. a 408) is read and ignored.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Duration {
    let started = Instant::now();
    let mut chunk = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(
            tokio::time::Instant::from_std(started + within),
            stream.read(&mut chunk),
        )
        .await
        {
            Err(_) => panic!("the connection was still open after {within:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => continue,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Item: HTTPS
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_serves_http1_and_http2_with_hsts_and_reloads_its_certificate_on_sighup() {
    let dir = TestDir::new();
    let sink = Sink::start().await;
    let (ca1, cert1, key1) = issue(dir.path(), "one", "otpd e2e CA one");
    let (ca2, cert2, key2) = issue(dir.path(), "two", "otpd e2e CA two");
    let cert = dir.path().join("tls-cert.pem");
    let key = dir.path().join("tls-key.pem");
    std::fs::copy(&cert1, &cert).unwrap();
    std::fs::copy(&key1, &key).unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let otpd = OtpdProcess::start_with_env(
        &dir,
        &Config::for_sink(&sink),
        &[
            ("OTPD_LISTEN", &listen),
            ("OTPD_TLS__CERT_FILE", cert.to_str().unwrap()),
            ("OTPD_TLS__KEY_FILE", key.to_str().unwrap()),
        ],
    )
    .await;
    assert_eq!(otpd.base_url(), format!("https://127.0.0.1:{port}"));
    let url = |path: &str| format!("https://127.0.0.1:{port}{path}");

    // HTTP/1.1 and HTTP/2 (ALPN), each with HSTS.
    let h1 = https_client(&ca1, true);
    let reply = h1.get(url("/healthz")).send().await.unwrap();
    assert_eq!(reply.status(), 200);
    assert_eq!(reply.version(), reqwest::Version::HTTP_11);
    assert_eq!(
        reply.headers()["strict-transport-security"],
        "max-age=31536000"
    );
    let h2 = https_client(&ca1, false);
    let reply = h2
        .post(url("/v1/verifications"))
        .bearer_auth(dir.master_key())
        .json(&json!({"to": "+14155550100"}))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.version(), reqwest::Version::HTTP_2);
    assert_eq!(reply.status(), 201, "{:?}", reply.text().await);
    let reply = h2.get(url("/healthz")).send().await.unwrap();
    assert!(reply.headers().contains_key("strict-transport-security"));

    // Plain HTTP on the TLS port gets no answer.
    let plain = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    assert!(
        plain
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .is_err()
    );

    // A renewal: new files in place, then SIGHUP.
    let replace = |from: &Path, to: &Path| {
        let tmp = to.with_extension("new");
        std::fs::copy(from, &tmp).unwrap();
        std::fs::rename(&tmp, to).unwrap();
    };
    replace(&cert2, &cert);
    replace(&key2, &key);
    let status = Command::new("kill")
        .args(["-HUP", &otpd.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // New connections see the new certificate…
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let fresh = https_client(&ca2, true);
        match fresh.get(url("/healthz")).send().await {
            Ok(r) if r.status() == 200 => break,
            other => {
                assert!(
                    Instant::now() < deadline,
                    "the new certificate was not served after SIGHUP: {other:?}\n{}",
                    otpd.output().join("\n")
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    assert!(
        https_client(&ca1, true)
            .get(url("/healthz"))
            .send()
            .await
            .is_err(),
        "a new connection no longer gets the old certificate"
    );
    // …while the HTTP/2 connection opened before the reload keeps working (a new one
    // from this client, trusting CA one only, would fail).
    let reply = h2.get(url("/healthz")).send().await.unwrap();
    assert_eq!(reply.status(), 200);
    assert_eq!(reply.version(), reqwest::Version::HTTP_2);
    assert!(otpd.output_contains("TLS certificate and key reloaded"));

    // A broken renewal keeps the last good certificate.
    std::fs::write(&cert, "not a certificate").unwrap();
    Command::new("kill")
        .args(["-HUP", &otpd.pid().to_string()])
        .status()
        .unwrap();
    otpd.wait_for_output(
        "SIGHUP: TLS reload failed; the previous certificate stays in force",
        Duration::from_secs(10),
    )
    .await;
    let reply = https_client(&ca2, true)
        .get(url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_beyond_loopback_needs_the_proxy_flag() {
    let dir = TestDir::new();
    let sink = Sink::start().await;
    let config = Config::for_sink(&sink);
    let listen = format!("0.0.0.0:{}", free_port());
    let stderr = refused_start(
        &dir,
        &config,
        &[
            ("OTPD_LISTEN", &listen),
            ("OTPD_METRICS__BEARER_TOKEN", "scrape-token-1234"),
        ],
    );
    assert!(
        stderr.contains("refusing plain HTTP on 0.0.0.0"),
        "{stderr}"
    );
    assert!(stderr.contains("OTPD_TLS__CERT_FILE"), "{stderr}");
    assert!(
        stderr.contains("OTPD_TLS__TERMINATED_BY_PROXY=true"),
        "{stderr}"
    );

    // Behind a declared TLS proxy it starts; session cookies are then Secure.
    let otpd = OtpdProcess::start_with_env(
        &dir,
        &config,
        &[
            ("OTPD_LISTEN", "0.0.0.0:0"),
            ("OTPD_TLS__TERMINATED_BY_PROXY", "true"),
            ("OTPD_METRICS__BEARER_TOKEN", "scrape-token-1234"),
        ],
    )
    .await;
    let base = loopback_url(&otpd);
    let reply = otpd
        .client()
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    assert!(
        !reply.headers().contains_key("strict-transport-security"),
        "HSTS is the TLS proxy's to send"
    );

    // Loopback stays the zero-config default (every other test runs so).
    let dir = TestDir::new();
    let local = OtpdProcess::start(&dir, &config).await;
    local.get("/healthz").await.assert_status(200, "loopback");
}

// ---------------------------------------------------------------------------------------
// Item: /metrics beyond loopback
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_beyond_loopback_need_a_token() {
    let dir = TestDir::new();
    let sink = Sink::start().await;
    let config = Config::for_sink(&sink);
    let listen = format!("0.0.0.0:{}", free_port());
    let stderr = refused_start(
        &dir,
        &config,
        &[
            ("OTPD_LISTEN", &listen),
            ("OTPD_TLS__TERMINATED_BY_PROXY", "true"),
        ],
    );
    assert!(stderr.contains("/metrics would be open"), "{stderr}");
    assert!(stderr.contains("OTPD_METRICS__BEARER_TOKEN"), "{stderr}");
    assert!(stderr.contains("OTPD_METRICS__ENABLED=false"), "{stderr}");

    let token = "scrape-token-5678";
    let otpd = OtpdProcess::start_with_env(
        &dir,
        &config,
        &[
            ("OTPD_LISTEN", "0.0.0.0:0"),
            ("OTPD_TLS__TERMINATED_BY_PROXY", "true"),
            ("OTPD_METRICS__BEARER_TOKEN", token),
        ],
    )
    .await;
    let metrics = format!("{}/metrics", loopback_url(&otpd));
    let without = otpd.client().get(&metrics).send().await.unwrap();
    assert_eq!(without.status(), 401);
    let wrong = otpd
        .client()
        .get(&metrics)
        .bearer_auth("not-the-token")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let with = otpd
        .client()
        .get(&metrics)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(with.status(), 200);

    // Metrics off: no token needed.
    let dir = TestDir::new();
    let off = OtpdProcess::start_with_env(
        &dir,
        &config,
        &[
            ("OTPD_LISTEN", "0.0.0.0:0"),
            ("OTPD_TLS__TERMINATED_BY_PROXY", "true"),
            ("OTPD_METRICS__ENABLED", "false"),
        ],
    )
    .await;
    let reply = off
        .client()
        .get(format!("{}/metrics", loopback_url(&off)))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 404);
}

// ---------------------------------------------------------------------------------------
// Item: client IP from X-Forwarded-For
// ---------------------------------------------------------------------------------------

/// Sends as the master key with an `X-Forwarded-For` header.
async fn send_forwarded(otpd: &OtpdProcess, to: &str, xff: &str) -> common::Reply {
    otpd.request(reqwest::Method::POST, "/v1/verifications")
        .header("x-forwarded-for", xff)
        .json(&json!({"to": to, "service": "proxied"}))
        .reply()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoofed_leftmost_forwarded_for_entry_does_not_escape_the_per_ip_limit() {
    let (_dir, _sink, otpd) = common::start_with_sink().await;
    otpd.create_service(&json!({
        "name": "proxied",
        "guards": {"rate_limits": {
            "trust_forwarded_for": true,
            "send": {"per_ip": {"count": 2, "period_seconds": 600}}
        }}
    }))
    .await;
    // The proxy (one hop, the default) appended the real client 203.0.113.7; the client
    // wrote a different address of its own in front each time.
    for (n, spoofed) in ["1.1.1.1", "2.2.2.2"].iter().enumerate() {
        send_forwarded(
            &otpd,
            &format!("+1415555020{n}"),
            &format!("{spoofed}, 203.0.113.7"),
        )
        .await
        .assert_status(201, "within the limit");
    }
    send_forwarded(&otpd, "+14155550209", "3.3.3.3, 203.0.113.7")
        .await
        .assert_problem(429, "rate_limited", "same real client, new spoofed entry");
    // Another real client is its own subject.
    send_forwarded(&otpd, "+14155550209", "3.3.3.3, 198.51.100.9")
        .await
        .assert_status(201, "another client");
    let list = otpd.get("/v1/services/proxied/decisions?limit=4").await;
    let ips: Vec<&str> = list.body["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["client_ip"].as_str())
        .collect();
    assert!(
        ips.iter()
            .all(|ip| *ip == "203.0.113.7" || *ip == "198.51.100.9"),
        "{list:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_proxy_cidrs_pick_the_rightmost_untrusted_address() {
    let dir = TestDir::new();
    let sink = Sink::start().await;
    let mut config = Config::for_sink(&sink);
    // The test connects from 127.0.0.1: that is the trusted proxy next to otpd.
    config.extra_toml = "[http]\ntrusted_proxies = [\"127.0.0.0/8\", \"10.0.0.0/8\"]\n".into();
    let otpd = OtpdProcess::start(&dir, &config).await;
    otpd.create_service(&json!({
        "name": "proxied",
        "guards": {"rate_limits": {
            "trust_forwarded_for": true,
            "send": {"per_ip": {"count": 1, "period_seconds": 600}}
        }}
    }))
    .await;
    send_forwarded(&otpd, "+14155550210", "6.6.6.6, 203.0.113.7, 10.0.0.5")
        .await
        .assert_status(201, "first");
    send_forwarded(&otpd, "+14155550211", "7.7.7.7, 203.0.113.7, 10.1.1.1")
        .await
        .assert_problem(429, "rate_limited", "same client through other proxies");
    let list = otpd.get("/v1/services/proxied/decisions?limit=2").await;
    assert_eq!(
        list.body["decisions"][0]["client_ip"], "203.0.113.7",
        "{list:?}"
    );

    // Proxies configured, but the TCP peer (127.0.0.1) is not one: the header is ignored.
    let dir = TestDir::new();
    config.extra_toml = "[http]\ntrusted_proxies = [\"10.0.0.0/8\"]\n".into();
    let otpd = OtpdProcess::start(&dir, &config).await;
    otpd.create_service(&json!({
        "name": "proxied",
        "guards": {"rate_limits": {
            "trust_forwarded_for": true,
            "send": {"per_ip": {"count": 1, "period_seconds": 600}}
        }}
    }))
    .await;
    for n in 0..2 {
        send_forwarded(&otpd, &format!("+1415555022{n}"), "203.0.113.7")
            .await
            .assert_status(201, "an untrusted peer's header names no client");
    }
    let list = otpd.get("/v1/services/proxied/decisions?limit=2").await;
    assert!(list.body["decisions"][0]["client_ip"].is_null(), "{list:?}");
}

// ---------------------------------------------------------------------------------------
// Item: slow and idle clients
// ---------------------------------------------------------------------------------------

async fn start_with_http(extra: &str) -> (TestDir, Sink, OtpdProcess) {
    let dir = TestDir::new();
    let sink = Sink::start().await;
    let mut config = Config::for_sink(&sink);
    config.extra_toml = format!("[http]\n{extra}\n");
    let otpd = OtpdProcess::start(&dir, &config).await;
    (dir, sink, otpd)
}

fn addr(otpd: &OtpdProcess) -> String {
    otpd.base_url().trim_start_matches("http://").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_header_is_cut_off_after_the_header_read_timeout() {
    let (_dir, _sink, otpd) =
        start_with_http("header_read_timeout_ms = 1000\nidle_timeout_ms = 30000").await;
    let mut stream = TcpStream::connect(addr(&otpd)).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .await
        .unwrap();
    let took = closed_within(&mut stream, Duration::from_secs(8)).await;
    assert!(took >= Duration::from_millis(800), "{took:?}");

    // A client that sends its header in time is served.
    let mut ok = TcpStream::connect(addr(&otpd)).await.unwrap();
    assert!(raw_healthz(&mut ok).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let (_dir, _sink, otpd) =
        start_with_http("header_read_timeout_ms = 30000\nidle_timeout_ms = 1000").await;
    let mut stream = TcpStream::connect(addr(&otpd)).await.unwrap();
    assert!(raw_healthz(&mut stream).await.starts_with("HTTP/1.1 200"));
    // Kept alive: a second request on the same connection is served.
    assert!(raw_healthz(&mut stream).await.starts_with("HTTP/1.1 200"));
    let took = closed_within(&mut stream, Duration::from_secs(8)).await;
    assert!(took >= Duration::from_millis(800), "{took:?}");
    // A connection that never sends a byte goes the same way.
    let mut silent = TcpStream::connect(addr(&otpd)).await.unwrap();
    closed_within(&mut silent, Duration::from_secs(8)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_wait_until_one_closes() {
    let (_dir, _sink, otpd) = start_with_http("max_connections = 2").await;
    let mut a = TcpStream::connect(addr(&otpd)).await.unwrap();
    let mut b = TcpStream::connect(addr(&otpd)).await.unwrap();
    assert!(raw_healthz(&mut a).await.starts_with("HTTP/1.1 200"));
    assert!(raw_healthz(&mut b).await.starts_with("HTTP/1.1 200"));
    // A third waits: no answer while both slots are held.
    let mut c = TcpStream::connect(addr(&otpd)).await.unwrap();
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut byte = [0u8; 1];
    assert!(
        tokio::time::timeout(Duration::from_millis(1500), c.read(&mut byte))
            .await
            .is_err(),
        "the third connection was served beyond the limit"
    );
    // One closes: the waiting one is served.
    drop(a);
    let reply = read_response(&mut c).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(raw_healthz(&mut b).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_tls_handshake_is_cut_off() {
    let dir = TestDir::new();
    let sink = Sink::start().await;
    let (_ca, cert, key) = issue(dir.path(), "hs", "otpd e2e CA handshake");
    let mut config = Config::for_sink(&sink);
    config.extra_toml = "[http]\ntls_handshake_timeout_ms = 1000\nidle_timeout_ms = 30000\n".into();
    let otpd = OtpdProcess::start_with_env(
        &dir,
        &config,
        &[
            ("OTPD_TLS__CERT_FILE", cert.to_str().unwrap()),
            ("OTPD_TLS__KEY_FILE", key.to_str().unwrap()),
        ],
    )
    .await;
    let addr = otpd.base_url().trim_start_matches("https://").to_string();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // Half a ClientHello record header, then nothing.
    stream.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    let took = closed_within(&mut stream, Duration::from_secs(8)).await;
    assert!(took >= Duration::from_millis(800), "{took:?}");
}
