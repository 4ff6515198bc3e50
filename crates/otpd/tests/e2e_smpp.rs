//! SMS over SMPP end to end: the real binary binds to a real SMSC — the server of the npm
//! package `smpp` (`tests/peers/smpp/smsc.js`, installed by `npm ci` there) — and sends
//! through the `smpp` provider: a short GSM-7 message, a long UCS-2 message in
//! concatenated segments, delivery receipts (`deliver_sm`) moving deliveries to
//! `delivered` or `failed` (then the next provider gets the same code), and a reconnect
//! after the SMSC restarts. The tests print `measured: …` lines (`--no-capture`).
//!
//! Without node or the installed package the tests print "skipped: …" and pass, unless
//! `OTPD_REQUIRE_PEERS=1` (as in `.ci/run`) makes them fail.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

const SYSTEM_ID: &str = "otpd";
const PASSWORD: &str = "smpp-pw1";

/// The peer's folder.
fn peer_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/smpp")
}

/// Whether node and the installed `smpp` package are there; prints "skipped: …" when not
/// (a failure when `OTPD_REQUIRE_PEERS=1`).
fn peer_available() -> bool {
    let required = std::env::var("OTPD_REQUIRE_PEERS").is_ok_and(|v| v == "1");
    let skip = |why: &str| {
        assert!(!required, "OTPD_REQUIRE_PEERS=1 but {why}");
        println!("skipped: {why}; run `npm ci` in crates/otpd/tests/peers/smpp");
        false
    };
    let node = std::process::Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !node {
        return skip("node is not installed");
    }
    if !peer_dir().join("node_modules/smpp/package.json").is_file() {
        return skip("the npm package smpp is not installed");
    }
    true
}

/// A free TCP port on loopback.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The local SMSC: a node process and the JSON lines it records.
struct Smsc {
    port: u16,
    log: PathBuf,
    lines: Lines<BufReader<ChildStdout>>,
    child: Child,
}

impl Smsc {
    /// Starts the SMSC on `port`, recording to `log`, with extra arguments of smsc.js.
    async fn start(port: u16, log: &Path, extra: &[&str]) -> Smsc {
        let mut child = Command::new("node")
            .arg(peer_dir().join("smsc.js"))
            .args(["--port", &port.to_string(), "--system-id", SYSTEM_ID])
            .args(["--password", PASSWORD, "--log"])
            .arg(log)
            .args(extra)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start node smsc.js");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let ready = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("SMSC ready in time")
            .expect("read")
            .expect("a line");
        assert_eq!(ready, format!("READY {port}"));
        Smsc {
            port,
            log: log.to_path_buf(),
            lines,
            child,
        }
    }

    /// Waits for the next `BOUND` line (a bind the SMSC accepted).
    async fn bound(&mut self, timeout: Duration) {
        let line = tokio::time::timeout(timeout, self.lines.next_line())
            .await
            .expect("a bind in time")
            .expect("read")
            .expect("a line");
        assert_eq!(line, format!("BOUND {SYSTEM_ID}"));
    }

    /// Every record so far.
    fn records(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits until `count` `submit_sm` to `destination` were received; returns them.
    async fn submits_to(&self, destination: &str, count: usize) -> Vec<Value> {
        let deadline = Instant::now() + DELIVERY_TIMEOUT;
        loop {
            let got: Vec<Value> = self
                .records()
                .into_iter()
                .filter(|r| r["command"] == "submit_sm" && r["destination_addr"] == destination)
                .collect();
            if got.len() >= count {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {count} submit_sm to {destination}: {got:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the SMSC has logged a record that `matches` (what otpd sent is logged
    /// when the peer has read it, which may be after otpd has recorded its own side).
    async fn wait_record(&self, what: &str, matches: impl Fn(&Value) -> bool) {
        let deadline = Instant::now() + DELIVERY_TIMEOUT;
        while !self.records().iter().any(&matches) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the SMSC (SIGKILL: every session drops at once).
    async fn kill(mut self) {
        self.child.kill().await.expect("kill the SMSC");
    }
}

/// The `[[providers]]` entry of the SMSC, plus `more` lines.
fn smpp_provider(port: u16, more: &str) -> String {
    format!(
        "[[providers]]\nname = \"smsc\"\nkind = \"smpp\"\nhost = \"127.0.0.1\"\nport = {port}\n\
         system_id = \"{SYSTEM_ID}\"\npassword = \"{PASSWORD}\"\nsystem_type = \"otp\"\n\
         from = \"+15005550006\"\nchannels = [\"sms\"]\nwindow_size = 8\nmax_per_second = 200\n\
         enquire_link_seconds = 5\nbind_timeout_ms = 1000\nreconnect_max_seconds = 1\n{more}\n"
    )
}

/// Where the harness's http provider (`sink`) stands.
#[derive(Clone, Copy, PartialEq)]
enum SinkRole {
    /// It serves voice only: every SMS goes to the SMSC.
    VoiceOnly,
    /// `[[routes]]` sms → smsc, then sink.
    Backup,
}

/// An SMSC, a sink, and an otpd using them; the directory outlives the server.
struct Rig {
    dir: TestDir,
    smsc: Smsc,
    sink: Sink,
    otpd: OtpdProcess,
}

impl Rig {
    /// Starts the SMSC with `smsc_args`, the sink, and otpd (config changed by `tune`).
    async fn start(smsc_args: &[&str], sink_role: SinkRole, tune: impl FnOnce(&mut Config)) -> Rig {
        let dir = TestDir::new();
        let port = free_port();
        let smsc = Smsc::start(port, &dir.path().join("smsc.jsonl"), smsc_args).await;
        let sink = Sink::start().await;
        let mut config = Config::for_sink(&sink);
        config.extra_toml = smpp_provider(port, "");
        if sink_role == SinkRole::VoiceOnly {
            config.channels = vec!["voice".into()];
        } else {
            config.channels = vec!["sms".into()];
            config.extra_toml +=
                "[[routes]]\nchannel = \"sms\"\nproviders = [\"smsc\", \"sink\"]\n";
        }
        tune(&mut config);
        let otpd = OtpdProcess::start(&dir, &config).await;
        Rig {
            dir,
            smsc,
            sink,
            otpd,
        }
    }
}

/// The event types of a verification.
async fn event_types(otpd: &OtpdProcess, id: &str) -> Vec<String> {
    let events = otpd.get(&format!("/v1/events?verification={id}")).await;
    events.body["events"]
        .as_array()
        .expect("events array")
        .iter()
        .map(|e| e["type"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The first run of `len` ASCII digits in `text`.
fn digits_in(text: &str, len: usize) -> Option<String> {
    text.split(|c: char| !c.is_ascii_digit())
        .find(|run| run.len() == len)
        .map(str::to_string)
}

/// Checks a code as the user would.
async fn assert_code_approves(otpd: &OtpdProcess, id: &str, code: &str) {
    let checked = otpd.check(&json!({"id": id, "code": code})).await;
    checked.assert_status(200, "check");
    assert_eq!(checked.body["status"], "approved", "{:?}", checked.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_gsm7_sms_arrives_and_its_receipt_marks_it_delivered() {
    if !peer_available() {
        return;
    }
    let Rig {
        mut smsc,
        otpd,
        dir: _dir,
        sink: _sink,
    } = Rig::start(&[], SinkRole::VoiceOnly, |_| {}).await;
    smsc.bound(READY_TIMEOUT).await;

    let to = "+14155550181";
    let started = Instant::now();
    let id = otpd.send_ok(&json!({"to": to})).await.id();
    let submits = smsc.submits_to("14155550181", 1).await;
    let submitted = started.elapsed();
    let v = wait_verification(&otpd, &id, "delivered", |v| {
        v["deliveries"][0]["status"] == "delivered"
    })
    .await;
    let delivered = started.elapsed();
    println!(
        "measured: short SMS: POST → submit_sm at the SMSC {} ms; POST → receipt applied (delivered) {} ms",
        submitted.as_millis(),
        delivered.as_millis()
    );

    let s = &submits[0];
    assert_eq!(submits.len(), 1, "one segment");
    assert_eq!(s["data_coding"], 0, "GSM 03.38 default alphabet");
    assert_eq!(s["esm_class"], 0, "no UDH");
    assert_eq!(s["registered_delivery"], 1, "a receipt was asked for");
    assert_eq!(s["source_addr"], "15005550006");
    assert_eq!(
        (s["source_addr_ton"].as_u64(), s["source_addr_npi"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(
        (s["dest_addr_ton"].as_u64(), s["dest_addr_npi"].as_u64()),
        (Some(1), Some(1))
    );
    let text = s["text"].as_str().expect("decoded text");
    let code = extract_code(text).expect("the code in the SMS");
    // Unpacked septets: the code's digits are their ASCII codes in GSM 03.38 too.
    let hex = s["short_message_hex"].as_str().unwrap();
    let code_hex: String = code.bytes().map(|b| format!("{b:02x}")).collect();
    assert!(hex.contains(&code_hex), "{hex}");
    assert_eq!(hex.len() / 2, text.chars().count(), "one octet per septet");

    assert_eq!(v["deliveries"][0]["provider"], "smsc");
    let types = event_types(&otpd, &id).await;
    assert!(
        types.contains(&"verification.delivered".to_string()),
        "{types:?}"
    );
    let binds: Vec<Value> = smsc
        .records()
        .into_iter()
        .filter(|r| r["command"] == "bind_transceiver")
        .collect();
    assert_eq!(binds.len(), 1, "one session for the process: {binds:?}");
    assert_eq!(binds[0]["interface_version"], 0x34, "SMPP 3.4");
    assert_eq!(binds[0]["system_type"], "otp");
    smsc.wait_record("otpd's answer to the receipt", |r| {
        r["command"] == "deliver_sm_resp" && r["command_status"] == 0
    })
    .await;
    assert_code_approves(&otpd, &id, &code).await;
    assert!(
        !otpd
            .output()
            .iter()
            .any(|l| l.contains(PASSWORD) || l.contains(&code)),
        "neither the bind password nor the code is logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_ucs2_sms_arrives_as_concatenated_segments() {
    if !peer_available() {
        return;
    }
    let Rig {
        mut smsc,
        otpd,
        dir: _dir,
        sink: _sink,
    } = Rig::start(&[], SinkRole::VoiceOnly, |_| {}).await;
    smsc.bound(READY_TIMEOUT).await;
    let template = "رمز التحقق الخاص بك لدى {service} هو {code}. \
                    لا تشارك هذا الرمز مع أي شخص، حتى لو ادعى أنه من فريق الدعم. \
                    ينتهي صلاحية الرمز خلال {minutes} دقائق 🔐";
    otpd.create_service(&json!({"name": "souq", "templates": {"sms:ar": template}}))
        .await;

    let to = "+14155550182";
    let started = Instant::now();
    let id = otpd
        .send_ok(&json!({"to": to, "service": "souq", "locale": "ar"}))
        .await
        .id();
    let first = smsc.submits_to("14155550182", 1).await;
    let total =
        u64::from_str_radix(&first[0]["udh_hex"].as_str().expect("a UDH")[8..10], 16).unwrap();
    let mut segments = smsc.submits_to("14155550182", total as usize).await;
    let all_submitted = started.elapsed();
    assert!((2..=3).contains(&total), "2–3 segments, got {total}");
    assert_eq!(segments.len() as u64, total);

    // Each segment: UCS-2, the UDH indicator, `05 00 03 ref total seq` at the start of the
    // bytes, at most 140 octets.
    let reference = &first[0]["udh_hex"].as_str().unwrap()[6..8];
    segments.sort_by_key(|s| s["udh_hex"].as_str().unwrap()[10..12].to_string());
    for (i, s) in segments.iter().enumerate() {
        assert_eq!(s["data_coding"], 8, "UCS-2");
        assert_eq!(
            s["esm_class"].as_u64().unwrap() & 0x40,
            0x40,
            "UDH indicator"
        );
        let udh = s["udh_hex"].as_str().unwrap();
        assert_eq!(udh, format!("050003{reference}{total:02x}{:02x}", i + 1));
        let hex = s["short_message_hex"].as_str().unwrap();
        assert!(hex.starts_with(udh));
        assert!(hex.len() / 2 <= 140, "{} octets", hex.len() / 2);
    }
    let text: String = segments
        .iter()
        .map(|s| s["text"].as_str().unwrap())
        .collect();
    let code = digits_in(&text, 6).expect("the code in the reassembled text");
    let expected = template
        .replace("{service}", "souq")
        .replace("{code}", &code)
        .replace("{minutes}", "10");
    assert_eq!(
        text, expected,
        "the segments reassemble to the rendered text"
    );

    let v = wait_verification(&otpd, &id, "delivered", |v| {
        v["deliveries"][0]["status"] == "delivered"
    })
    .await;
    println!(
        "measured: {total}-segment UCS-2 SMS: POST → all submit_sm {} ms; POST → delivered {} ms",
        all_submitted.as_millis(),
        started.elapsed().as_millis()
    );
    assert_eq!(v["deliveries"].as_array().unwrap().len(), 1);
    assert_code_approves(&otpd, &id, &code).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_receipt_hands_the_same_code_to_the_next_provider() {
    if !peer_available() {
        return;
    }
    let to = "+14155550183";
    let Rig {
        mut smsc,
        sink,
        otpd,
        dir: _dir,
    } = Rig::start(&["--fail-to", "14155550183"], SinkRole::Backup, |c| {
        c.extra_toml += "receipt_timeout_seconds = 30\n";
    })
    .await;
    smsc.bound(READY_TIMEOUT).await;

    let id = otpd.send_ok(&json!({"to": to})).await.id();
    let submits = smsc.submits_to("14155550183", 1).await;
    let at_smsc = Instant::now();
    let smpp_code = extract_code(submits[0]["text"].as_str().unwrap()).expect("code");
    let backup = sink.wait_for_to(to, 1, DELIVERY_TIMEOUT).await;
    let failover = at_smsc.elapsed();
    println!(
        "measured: SMPP failure receipt (UNDELIV) → the next provider had the same code {} ms after the submit_sm",
        failover.as_millis()
    );
    assert!(
        failover < Duration::from_secs(5),
        "long before the 30 s receipt timeout"
    );
    let backup_code = extract_code(backup[0]["body"].as_str().unwrap()).expect("code");
    assert_eq!(backup_code, smpp_code, "the same code");

    let v = wait_verification(&otpd, &id, "two deliveries", |v| {
        v["deliveries"].as_array().is_some_and(|d| d.len() == 2)
    })
    .await;
    assert_eq!(v["deliveries"][0]["provider"], "smsc");
    assert_eq!(v["deliveries"][0]["status"], "failed");
    assert!(
        v["deliveries"][0]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("UNDELIV"),
        "{v}"
    );
    assert_eq!(v["deliveries"][1]["provider"], "sink");
    let types = event_types(&otpd, &id).await;
    assert!(
        types.contains(&"verification.delivery_failed".to_string()),
        "{types:?}"
    );
    assert_code_approves(&otpd, &id, &smpp_code).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_destination_is_a_permanent_error_and_fails_over_at_once() {
    if !peer_available() {
        return;
    }
    let to = "+14155550184";
    let Rig {
        mut smsc,
        sink,
        otpd,
        dir: _dir,
    } = Rig::start(&["--reject", "14155550184=11"], SinkRole::Backup, |_| {}).await; // ESME_RINVDSTADR
    smsc.bound(READY_TIMEOUT).await;
    let id = otpd.send_ok(&json!({"to": to})).await.id();
    sink.wait_for_to(to, 1, DELIVERY_TIMEOUT).await;
    assert_eq!(
        smsc.submits_to("14155550184", 1).await.len(),
        1,
        "not retried"
    );
    let v = otpd.verification(&id).await.body;
    assert_eq!(v["deliveries"][0]["provider"], "sink", "{v}");
    assert!(otpd.output_contains("SMSC answered ESME_RINVDSTADR (0x0000000B)"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otpd_reconnects_when_the_smsc_restarts_and_delivers() {
    if !peer_available() {
        return;
    }
    let Rig {
        dir,
        mut smsc,
        otpd,
        sink: _sink,
    } = Rig::start(&[], SinkRole::VoiceOnly, |_| {}).await;
    let (port, log) = (smsc.port, dir.path().join("smsc.jsonl"));
    smsc.bound(READY_TIMEOUT).await;
    let id = otpd.send_ok(&json!({"to": "+14155550185"})).await.id();
    wait_verification(&otpd, &id, "delivered", |v| {
        v["deliveries"][0]["status"] == "delivered"
    })
    .await;

    // The SMSC goes away; a send during the outage is retried, not lost: once its first
    // attempt has failed (no session within the bind timeout), it is still pending and
    // its delivery waits for the next attempt.
    smsc.kill().await;
    let id = otpd.send_ok(&json!({"to": "+14155550186"})).await.id();
    let tagged = format!("verification_id={id}");
    otpd.wait_for_output_matching(
        "a retry of the send during the outage",
        DELIVERY_TIMEOUT,
        |l| l.contains(&tagged) && l.contains("transient delivery failure; will retry"),
    )
    .await;
    let v = otpd.verification(&id).await.body;
    assert_eq!(v["status"], "pending");
    assert_ne!(v["deliveries"][0]["status"], "failed", "{v}");

    let restarted = Instant::now();
    let mut smsc = Smsc::start(port, &log, &[]).await;
    smsc.bound(Duration::from_secs(10)).await;
    let rebound = restarted.elapsed();
    let submits = smsc.submits_to("14155550186", 1).await;
    let resent = restarted.elapsed();
    wait_verification(&otpd, &id, "delivered after the restart", |v| {
        v["deliveries"][0]["status"] == "delivered"
    })
    .await;
    println!(
        "measured: SMSC restarted → otpd bound again {} ms, the queued SMS submitted {} ms, delivered {} ms",
        rebound.as_millis(),
        resent.as_millis(),
        restarted.elapsed().as_millis()
    );
    let code = extract_code(submits[0]["text"].as_str().unwrap()).expect("code");
    assert_code_approves(&otpd, &id, &code).await;
    assert!(otpd.output_contains("SMPP session lost"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_never_binds_and_sends_fail_over() {
    if !peer_available() {
        return;
    }
    let Rig {
        smsc,
        sink,
        otpd,
        dir: _dir,
    } = Rig::start(&[], SinkRole::Backup, |c| {
        c.delivery.max_attempts = 2;
        c.extra_toml = c.extra_toml.replace(PASSWORD, "wrong-pw");
    })
    .await;
    otpd.send_ok(&json!({"to": "+14155550187"})).await;
    sink.wait_for_to("+14155550187", 1, DELIVERY_TIMEOUT).await;
    let binds: Vec<Value> = smsc
        .records()
        .into_iter()
        .filter(|r| r["command"] == "bind_transceiver")
        .collect();
    assert!(!binds.is_empty());
    assert!(
        binds.iter().all(|b| b["command_status"] == 0x0E),
        "ESME_RINVPASWD: {binds:?}"
    );
    assert!(otpd.output_contains("ESME_RINVPASWD"));
    assert!(
        !otpd.output().iter().any(|l| l.contains("wrong-pw")),
        "the password is not logged"
    );
}

/// Adds provider keys to the SMSC's `[[providers]]` entry of `config`.
fn with_provider_keys(config: &mut Config, keys: &str) {
    config.extra_toml = config.extra_toml.replacen(
        "reconnect_max_seconds = 1\n",
        &format!("reconnect_max_seconds = 1\n{keys}\n"),
        1,
    );
}

// SMPP 3.4 leaves message_id's format to the SMSC (§5.2.23), and many SMSCs answer
// submit_sm_resp with a hex id while the receipt's `id:` and receipted_message_id carry its
// decimal reading (Kannel's `msg-id-type` documents these combinations). The peer does the
// same with --hex-ids: `0A1B2C3D` in the response, `169552957` in the receipt. Before
// otpd normalised ids this delivery stayed `sent` until its receipt timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hex_submit_id_matches_its_decimal_receipt_id() {
    if !peer_available() {
        return;
    }
    let Rig {
        mut smsc,
        otpd,
        dir: _dir,
        sink: _sink,
    } = Rig::start(&["--hex-ids"], SinkRole::VoiceOnly, |_| {}).await;
    smsc.bound(READY_TIMEOUT).await;
    let id = otpd.send_ok(&json!({"to": "+14155550186"})).await.id();
    let submits = smsc.submits_to("14155550186", 1).await;
    let hex_id = submits[0]["message_id"].as_str().unwrap().to_string();
    assert_eq!(hex_id.len(), 8, "{hex_id}");
    let v = wait_verification(&otpd, &id, "delivered", |v| {
        v["deliveries"][0]["status"] == "delivered"
    })
    .await;
    assert_eq!(v["deliveries"][0]["provider"], "smsc");
    let decimal = u64::from_str_radix(&hex_id, 16).unwrap().to_string();
    smsc.wait_record(
        &format!("the receipt's answer naming the decimal reading {decimal}"),
        |r| r["command"] == "deliver_sm_resp" && r["receipted_message_id"] == decimal.as_str(),
    )
    .await;
}

// A long message is one delivery with one receipt per segment (3GPP TS 23.040 §9.2.3.24.1
// concatenation; each submit_sm gets its own message_id and receipt). Segment 1 delivered
// and segment 2 undeliverable is an undelivered code: the delivery fails and the next
// provider gets the same code (before, the first segment's DELIVRD alone counted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_sms_with_an_undelivered_segment_fails_over() {
    if !peer_available() {
        return;
    }
    let to = "+14155550187";
    let Rig {
        mut smsc,
        sink,
        otpd,
        dir: _dir,
    } = Rig::start(&["--fail-later-segments"], SinkRole::Backup, |c| {
        c.extra_toml += "receipt_timeout_seconds = 30\n";
    })
    .await;
    smsc.bound(READY_TIMEOUT).await;
    let template = format!(
        "Your {{service}} code is {{code}}. {}",
        "Keep it to yourself. ".repeat(9)
    );
    otpd.create_service(&json!({"name": "longco", "templates": {"sms:en": template}}))
        .await;
    let id = otpd
        .send_ok(&json!({"to": to, "service": "longco"}))
        .await
        .id();
    let first = smsc.submits_to("14155550187", 2).await;
    assert!(first[0]["udh_hex"].is_string(), "a concatenated message");
    let backup = sink.wait_for_to(to, 1, DELIVERY_TIMEOUT).await;
    assert!(extract_code(backup[0]["body"].as_str().unwrap()).is_some());
    let v = wait_verification(&otpd, &id, "two deliveries", |v| {
        v["deliveries"].as_array().is_some_and(|d| d.len() == 2)
    })
    .await;
    assert_eq!(v["deliveries"][0]["provider"], "smsc");
    assert_eq!(v["deliveries"][0]["status"], "failed", "{v}");
    assert_eq!(v["deliveries"][1]["provider"], "sink");
}

/// A throwaway CA and a certificate it issued for 127.0.0.1: (CA, chain, key) paths.
fn smsc_certificates(dir: &Path) -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "otpd smpps test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let server = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
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
        write("smsc.pem", server.pem()),
        write("smsc.key", key.serialize_pem()),
    )
}

// smpps: SMPP over TLS from the first byte (node-smpp's TLS server, its `ssmpp:` transport),
// with the SMSC's certificate trusted through tls_ca_file; and the split binds of SMPP 3.4
// §4.1 (bind_transmitter for submit_sm, bind_receiver for deliver_sm) instead of one
// transceiver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smpps_with_transmitter_and_receiver_binds_delivers() {
    if !peer_available() {
        return;
    }
    let certs_dir = TestDir::new();
    let (ca, chain, key) = smsc_certificates(certs_dir.path());
    let Rig {
        mut smsc,
        otpd,
        dir: _dir,
        sink: _sink,
    } = Rig::start(&["--tls", &chain, &key], SinkRole::VoiceOnly, |c| {
        with_provider_keys(
            c,
            &format!("tls = \"tls\"\ntls_ca_file = {ca:?}\nbind_mode = \"transmitter_receiver\""),
        );
    })
    .await;
    smsc.bound(READY_TIMEOUT).await;
    smsc.bound(READY_TIMEOUT).await;
    let id = otpd.send_ok(&json!({"to": "+14155550188"})).await.id();
    smsc.submits_to("14155550188", 1).await;
    wait_verification(&otpd, &id, "delivered", |v| {
        v["deliveries"][0]["status"] == "delivered"
    })
    .await;
    let binds: Vec<String> = smsc
        .records()
        .into_iter()
        .filter(|r| {
            r["command"]
                .as_str()
                .is_some_and(|c| c.starts_with("bind_"))
        })
        .map(|r| {
            assert_eq!(r["tls"], true);
            r["command"].as_str().unwrap().to_string()
        })
        .collect();
    let mut sorted = binds.clone();
    sorted.sort();
    assert_eq!(sorted, ["bind_receiver", "bind_transmitter"], "{binds:?}");
}

// Without the CA the SMSC's certificate does not verify: no bind, sends fail over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smpps_refuses_an_smsc_whose_certificate_does_not_verify() {
    if !peer_available() {
        return;
    }
    let certs_dir = TestDir::new();
    let (_ca, chain, key) = smsc_certificates(certs_dir.path());
    let Rig {
        smsc,
        otpd,
        dir: _dir,
        sink: _sink,
    } = Rig::start(&["--tls", &chain, &key], SinkRole::VoiceOnly, |c| {
        with_provider_keys(c, "tls = \"tls\"");
    })
    .await;
    // Two connection attempts end in the TLS handshake (otpd gives up on each, and tries
    // again): none of them got as far as a bind.
    otpd.wait_for_output_matching("a second failed TLS handshake", DELIVERY_TIMEOUT, |l| {
        l.contains("SMPP connect/bind failed")
            && l.contains("TLS handshake")
            && l.contains("attempt=2")
    })
    .await;
    assert!(
        !smsc.records().iter().any(|r| r["command"]
            .as_str()
            .is_some_and(|c| c.starts_with("bind_"))),
        "no bind over an unverified TLS connection"
    );
}
