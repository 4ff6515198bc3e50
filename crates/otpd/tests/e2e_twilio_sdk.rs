//! The official Twilio SDKs against the real otpd binary: the `twilio` package from PyPI
//! (`tests/sdk/python/test_twilio_sdk.py`, unittest) and the `twilio` package from npm
//! (`tests/sdk/node/twilio_sdk.test.mjs`, node's test runner). Each test starts otpd with
//! the HTTP sink provider (and private callback targets allowed, for the status-callback
//! receiver the suites run on loopback), then runs the suite with `OTPD_BASE_URL`,
//! `OTPD_API_KEY` and `OTPD_SINK_URL` in its environment.
//!
//! Interpreters and packages come from `.ci/run`: `OTPD_PY` (a Python with `twilio`
//! installed) and `OTPD_NODE_SDK_DIR` (a directory with `node_modules/twilio`; default:
//! `tests/sdk/node`). When one is missing the test prints `skipped: …` and passes —
//! unless `OTPD_REQUIRE_SDK=1`, as `.ci/run` sets, in which case it fails.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::{Config, OtpdProcess, Sink, TestDir};

/// How long one SDK suite may run.
const SUITE_TIMEOUT: Duration = Duration::from_secs(180);

fn required() -> bool {
    std::env::var("OTPD_REQUIRE_SDK").is_ok_and(|v| v == "1")
}

/// Skips (or, when the SDKs are required, fails) with a reason.
fn skip(reason: &str) {
    assert!(!required(), "OTPD_REQUIRE_SDK=1 but {reason}");
    println!("skipped: {reason}");
}

fn sdk_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk")
}

/// Runs `program args` in `dir` against a fresh otpd; panics with the suite's output when
/// it fails.
async fn run_suite(name: &str, program: &str, args: &[&str], dir: &Path) {
    let test_dir = TestDir::new();
    let sink = Sink::start().await;
    let mut config = Config::for_sink(&sink);
    config.extra_toml = "[webhooks]\nallow_private_targets = true\n".into();
    let otpd = OtpdProcess::start(&test_dir, &config).await;
    let child = tokio::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("OTPD_BASE_URL", otpd.base_url())
        .env("OTPD_API_KEY", otpd.master_key())
        .env("OTPD_SINK_URL", sink.url())
        .env("NO_COLOR", "1")
        .env_remove("TWILIO_ACCOUNT_SID")
        .env_remove("TWILIO_AUTH_TOKEN")
        .env_remove("TWILIO_EDGE")
        .env_remove("TWILIO_REGION")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{name}: cannot start {program}: {e}"));
    let output = tokio::time::timeout(SUITE_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{name}: did not finish within {SUITE_TIMEOUT:?}"))
        .expect("wait for the SDK suite");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("---- {name} stdout ----\n{stdout}\n---- {name} stderr ----\n{stderr}");
    assert!(
        output.status.success(),
        "{name} failed ({}); see its output above",
        output.status
    );
}

/// Runs a Python suite of `tests/sdk/python` with `OTPD_PY`, once that Python imports
/// `modules` (skipped, with the reason, when it cannot).
async fn python_suite(name: &str, file: &str, modules: &str) {
    let Some(py) = std::env::var("OTPD_PY").ok().filter(|p| !p.is_empty()) else {
        return skip(&format!("OTPD_PY is not set (a Python with {modules})"));
    };
    let probe = std::process::Command::new(&py)
        .args(["-c", &format!("import {modules}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        return skip(&format!("{py} cannot import {modules}"));
    }
    run_suite(name, &py, &[file], &sdk_dir().join("python")).await;
}

/// Runs a Node suite of `tests/sdk/node` (`node --test`) with the `twilio` package of
/// `OTPD_NODE_SDK_DIR` (skipped, with the reason, when it or node is missing).
async fn node_suite(name: &str, file: &str) {
    let dir = std::env::var("OTPD_NODE_SDK_DIR")
        .ok()
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| sdk_dir().join("node"));
    if !dir.join("node_modules/twilio/package.json").is_file() {
        return skip(&format!(
            "{} has no node_modules/twilio (run npm ci there)",
            dir.display()
        ));
    }
    let probe = std::process::Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        return skip("node is not installed");
    }
    // Node resolves `twilio` from the suite's directory: the copy in `dir` when there is one.
    let suite = if dir.join(file).is_file() {
        dir.join(file)
    } else {
        sdk_dir().join("node").join(file)
    };
    run_suite(
        name,
        "node",
        &["--test", "--test-reporter=spec", &suite.to_string_lossy()],
        &dir,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_python_sdk() {
    python_suite("python twilio SDK", "test_twilio_sdk.py", "twilio").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_node_sdk() {
    node_suite("node twilio SDK", "twilio_sdk.test.mjs").await;
}

/// Service Rate Limits with Buckets and Messaging Configurations through the Python SDK.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_python_sdk_service_configuration() {
    python_suite(
        "python twilio SDK (service configuration)",
        "test_twilio_sdk_service_config.py",
        "twilio",
    )
    .await;
}

/// The same through the Node SDK.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_node_sdk_service_configuration() {
    node_suite(
        "node twilio SDK (service configuration)",
        "twilio_sdk_service_config.test.mjs",
    )
    .await;
}

/// The official SDKs against Entities, Factors and Challenges
/// (`tests/sdk/python/test_twilio_sdk_factors.py`, `tests/sdk/node/twilio_sdk_factors.test.mjs`).
mod factors {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn official_python_sdk_factors() {
        python_suite(
            "python twilio SDK (factors)",
            "test_twilio_sdk_factors.py",
            "twilio, pyotp",
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn official_node_sdk_factors() {
        node_suite("node twilio SDK (factors)", "twilio_sdk_factors.test.mjs").await;
    }
}
