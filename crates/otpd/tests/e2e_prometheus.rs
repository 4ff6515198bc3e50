//! The shipped Prometheus rules and Grafana dashboard, proven on the real thing (issue 23):
//!
//! - `promtool check rules` finds `deploy/prometheus/otpd-rules.yml` valid, and `promtool
//!   test rules` runs `otpd-rules.test.yml`: every alert fires under the condition it names
//!   and stays quiet without it;
//! - Debian's `prometheus` scrapes a running otpd through a scripted workload (a primary
//!   provider failing every message until its circuit opens, a fallback delivering, priced
//!   sends, checks, a guard's refusal) with the rules loaded: every rule evaluates without
//!   error, the delivery-rate and circuit alerts are raised for the failing provider and
//!   no other alert is, and every query of every panel of `deploy/grafana/otpd.json`
//!   returns data.
//!
//! Needs `prometheus` and `promtool` (Debian's `prometheus` package); without them the
//! tests print "skipped", unless `OTPD_REQUIRE_PROMETHEUS=1` (as in `.ci/run`) makes that
//! a failure.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Config, OtpdProcess, Sink, TestDir, free_port, wrong_code};
use serde_json::{Value, json};

/// How long Prometheus may take to see what the workload did.
const PROMETHEUS_TIMEOUT: Duration = Duration::from_secs(60);

/// `prometheus` and `promtool`, or `None` (after saying why) when the test must skip.
fn binaries() -> Option<(PathBuf, PathBuf)> {
    let find = |name: &str| {
        std::env::var_os("PATH")
            .into_iter()
            .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    };
    match (find("prometheus"), find("promtool")) {
        (Some(p), Some(t)) => Some((p, t)),
        _ => {
            let why = "`prometheus` and `promtool` are not on PATH (apt-get install prometheus)";
            assert!(
                std::env::var("OTPD_REQUIRE_PROMETHEUS").as_deref() != Ok("1"),
                "OTPD_REQUIRE_PROMETHEUS=1 but {why}"
            );
            println!("skipped: {why}");
            None
        }
    }
}

/// A file of the repository's `deploy/` directory.
fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy")
        .join(path)
}

fn run(command: &mut Command) -> String {
    let out = command.output().expect("run promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{command:?} failed:\n{text}");
    text
}

#[test]
fn promtool_finds_the_rules_valid_and_every_alert_fires_only_under_its_condition() {
    let Some((_, promtool)) = binaries() else {
        return;
    };
    let rules = deploy("prometheus/otpd-rules.yml");
    let checked = run(Command::new(&promtool)
        .arg("check")
        .arg("rules")
        .arg(&rules));
    assert!(checked.contains("SUCCESS"), "{checked}");

    // Every alert of the rules file has a unit test that fires it and one that does not.
    let text = std::fs::read_to_string(&rules).unwrap();
    let tests = std::fs::read_to_string(deploy("prometheus/otpd-rules.test.yml")).unwrap();
    let alerts: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert!(alerts.len() >= 8, "{alerts:?}");
    for alert in &alerts {
        let cases: Vec<&str> = tests
            .split("alertname: ")
            .skip(1)
            .filter(|case| case.starts_with(&format!("{alert}\n")))
            .collect();
        assert!(
            cases
                .iter()
                .any(|c| c.contains("exp_alerts:\n          - exp_labels")),
            "{alert}: no test where it fires"
        );
        assert!(
            cases.iter().any(|c| c.contains("exp_alerts: []")),
            "{alert}: no test where it stays quiet"
        );
    }
    let tested = run(Command::new(&promtool)
        .arg("test")
        .arg("rules")
        .arg(deploy("prometheus/otpd-rules.test.yml")));
    assert!(tested.contains("SUCCESS"), "{tested}");
}

/// A Prometheus server, killed when dropped.
struct Prometheus {
    child: Child,
    base: String,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts `prometheus` scraping `target` (`host:port`) every second, with the shipped
    /// rules evaluated every second.
    async fn start(binary: &Path, target: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules}\n\
             scrape_configs:\n  - job_name: otpd\n    static_configs:\n      - targets: [\"{target}\"]\n",
            rules = deploy("prometheus/otpd-rules.yml").display()
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(binary)
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let prometheus = Prometheus {
            child,
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::builder().no_proxy().build().unwrap(),
            _dir: dir,
        };
        prometheus
            .wait_for("ready", |p| async move {
                p.client
                    .get(format!("{}/-/ready", p.base))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            })
            .await;
        prometheus
    }

    /// Polls `ok` every 100 ms until it holds; panics (with Prometheus's log) after
    /// [`PROMETHEUS_TIMEOUT`].
    async fn wait_for<'a, F, Fut>(&'a self, what: &str, ok: F)
    where
        F: Fn(&'a Prometheus) -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + PROMETHEUS_TIMEOUT;
        while !ok(self).await {
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(self._dir.path().join("prometheus.log"))
                    .unwrap_or_default();
                panic!("prometheus: {what} not seen in {PROMETHEUS_TIMEOUT:?}; log:\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `GET /api/v1/<path>` → its `data`.
    async fn api(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let reply: Value = self
            .client
            .get(format!("{}/api/v1/{path}", self.base))
            .query(query)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(reply["status"], "success", "{path} {query:?}: {reply}");
        reply["data"].clone()
    }

    /// The instant vector of a PromQL query.
    async fn query(&self, expr: &str) -> Vec<Value> {
        let data = self.api("query", &[("query", expr)]).await;
        data["result"].as_array().cloned().unwrap_or_default()
    }

    /// The alerts pending or firing, as (name, labels).
    async fn alerts(&self) -> Vec<(String, Value)> {
        self.api("alerts", &[]).await["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["labels"]["alertname"].as_str().unwrap().to_owned(),
                    a["labels"].clone(),
                )
            })
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_otpd_raises_the_alerts_the_workload_calls_for_and_fills_every_panel() {
    let Some((prometheus_bin, _)) = binaries() else {
        return;
    };
    // `sink` (the primary) fails every message (503, transient; one attempt each); `backup`
    // delivers synchronously. Twenty-six failures open the primary's circuit.
    let primary = Sink::start().await;
    primary.set_status(503);
    let backup = Sink::start().await;
    backup.set_reply(json!({"status": "delivered"}));
    let dir = TestDir::new();
    let mut config = Config::for_sink(&primary);
    config.delivery.max_attempts = 1;
    config.extra_toml = format!(
        "[[providers]]\nname = \"backup\"\nkind = \"http\"\nurl = {url:?}\nchannels = [\"sms\"]\n\n\
         [[routes]]\nchannel = \"sms\"\nproviders = [\"sink\", \"backup\"]\n\n\
         [[prices]]\nchannel = \"sms\"\nprice = 0.05\n",
        url = backup.url()
    );
    let otpd = OtpdProcess::start_with_env(
        &dir,
        &config,
        &[
            ("OTPD_DELIVERY__BREAKER_FAILURES", "26"),
            ("OTPD_DELIVERY__BREAKER_WINDOW_SECONDS", "600"),
            ("OTPD_DELIVERY__BREAKER_OPEN_SECONDS", "600"),
        ],
    )
    .await;
    let target = otpd.base_url().trim_start_matches("http://").to_owned();
    let prometheus = Prometheus::start(&prometheus_bin, &target).await;
    prometheus
        .wait_for("the otpd target up", |p| async move {
            p.query("up{job=\"otpd\"} == 1").await.len() == 1
        })
        .await;

    // A first send makes every series of the workload exist, so that Prometheus sees the
    // rest of the workload as increases.
    let number = |n: usize| format!("+1415555{:04}", 100 + n);
    otpd.send_ok(&json!({"to": number(0)})).await;
    backup
        .wait_for_to(&number(0), 1, Duration::from_secs(10))
        .await;
    prometheus
        .wait_for("the first failure", |p| async move {
            !p.query("otpd_sends_total{provider=\"sink\",outcome=\"failed\"}")
                .await
                .is_empty()
        })
        .await;

    // Twenty-five more failures (the last opens the circuit), then sends that skip it.
    for n in 1..=28 {
        otpd.send_ok(&json!({"to": number(n)})).await;
        backup
            .wait_for_to(&number(n), 1, Duration::from_secs(10))
            .await;
    }
    // Checks (a wrong code, then the right one), and a send the geo guard refuses.
    let code = backup.code_for(&number(1)).await;
    otpd.check(&json!({"to": number(1), "code": wrong_code(&code)}))
        .await
        .assert_status(200, "wrong code");
    otpd.check(&json!({"to": number(1), "code": code}))
        .await
        .assert_status(200, "right code");
    otpd.create_service(
        &json!({"name": "fenced", "guards": {"geo": {"blocked_countries": ["US"]}}}),
    )
    .await;
    otpd.send(&json!({"to": number(30), "service": "fenced"}))
        .await
        .assert_problem(403, "geo_blocked", "geo");

    // The alerts the workload calls for: the primary delivers nothing, and its circuit
    // is open. (Their `for` keeps them pending; either state is raised.)
    prometheus
        .wait_for(
            "the primary's delivery-rate and circuit alerts",
            |p| async move {
                let alerts = p.alerts().await;
                ["OtpdProviderDeliveryRateLow", "OtpdCircuitOpen"]
                    .iter()
                    .all(|name| {
                        alerts
                            .iter()
                            .any(|(n, l)| n == name && l["provider"] == "sink")
                    })
            },
        )
        .await;
    for (name, labels) in prometheus.alerts().await {
        assert!(
            matches!(
                name.as_str(),
                "OtpdProviderDeliveryRateLow" | "OtpdCircuitOpen"
            ) && labels["provider"] == "sink",
            "an alert the workload does not call for: {name} {labels}"
        );
    }
    // Every rule (recording and alerting) evaluates without error.
    let groups = prometheus.api("rules", &[]).await;
    let rules: Vec<&Value> = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .collect();
    assert!(rules.len() >= 15, "{groups}");
    for rule in rules {
        assert_eq!(rule["health"], "ok", "{rule}");
    }

    // Every query of every panel of the Grafana dashboard returns data.
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(deploy("grafana/otpd.json")).unwrap())
            .unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 10, "{} panels", panels.len());
    for panel in panels {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap().to_owned();
            let title = panel["title"].as_str().unwrap().to_owned();
            prometheus
                .wait_for(&format!("data for panel {title:?}: {expr}"), |p| {
                    let expr = expr.clone();
                    async move { !p.query(&expr).await.is_empty() }
                })
                .await;
        }
    }
    // The figures behind them are the workload's.
    let spent = prometheus
        .query("sum(otpd_spend_total{service=\"default\",channel=\"sms\",country=\"US\"})")
        .await;
    let spent: f64 = spent[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!(
        (spent - 29.0 * 0.05).abs() < 1e-9,
        "29 messages at 0.05: {spent}"
    );
    let open = prometheus
        .query("otpd_circuit_state{provider=\"sink\",state=\"open\"}")
        .await;
    assert_eq!(open[0]["value"][1], "1", "{open:?}");
}
