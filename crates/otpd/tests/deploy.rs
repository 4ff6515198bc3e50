//! The example deployment in `deploy/` (compose file, systemd unit, env files, Redis and
//! nginx settings) is consistent and passes `otpd config check` exactly as each node would
//! see it: the shared `otpd.toml` plus an env file, with nothing from the test's own
//! environment.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The env files a node runs with: compose's and the systemd units'.
const ENV_FILES: [&str; 2] = ["otpd.env", "systemd/otpd.env"];

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(deploy().join(rel)).unwrap_or_else(|e| panic!("deploy/{rel}: {e}"))
}

/// `otpd --config deploy/otpd.toml config check --env-file deploy/<env_file>`, with no
/// `OTPD_*` variable inherited.
fn config_check(env_file: &str) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_otpd"));
    cmd.arg("--config")
        .arg(deploy().join("otpd.toml"))
        .args(["config", "check", "--env-file"])
        .arg(deploy().join(env_file))
        // The secrets and certificates they name are the containers' and hosts' own.
        .arg("--skip-files");
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("OTPD_") {
            cmd.env_remove(name);
        }
    }
    cmd.output().expect("run otpd config check")
}

#[test]
fn every_node_env_file_passes_config_check() {
    for env_file in ENV_FILES {
        let out = config_check(env_file);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        for text in [&stdout, &stderr] {
            assert!(
                !text.contains("change-me"),
                "a password was printed: {text}"
            );
        }
        assert!(out.status.success(), "deploy/{env_file}: {stderr}");
        assert!(stdout.contains("configuration OK"), "{stdout}");
        assert!(
            stdout.contains("database: postgres://otpd:***@"),
            "the env file's database is the one checked: {stdout}"
        );
        // The nodes listen on 0.0.0.0: a TLS proxy stands in front, /metrics has a token.
        assert!(stdout.contains("tls: TLS by proxy"), "{stdout}");
        assert!(stdout.contains("metrics: on, token required"), "{stdout}");
    }
}

/// The shipped nginx is the TLS edge: HTTPS with a certificate, HSTS, the client's address
/// replacing any client-written X-Forwarded-For, and no public /metrics.
#[test]
fn nginx_terminates_tls_and_keeps_metrics_and_forwarding_safe() {
    let nginx = read("nginx.conf");
    for line in [
        "listen 443 ssl;",
        "ssl_certificate     /etc/nginx/tls/tls.crt;",
        "proxy_set_header X-Forwarded-For $remote_addr;",
        "location = /metrics {",
        "add_header Strict-Transport-Security \"max-age=31536000\" always;",
    ] {
        assert!(
            nginx.lines().any(|l| l.trim() == line),
            "nginx.conf: {line}"
        );
    }
    assert!(
        !nginx.contains("proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for"),
        "a client-written X-Forwarded-For must not reach otpd"
    );
    let compose = read("compose.yaml");
    assert!(compose.contains("./secrets/tls.crt:/etc/nginx/tls/tls.crt:ro"));
    assert!(compose.contains("\"443:443\""));
}

/// A bad env file fails the check, naming its line and never its values.
#[test]
fn config_check_reads_env_files_and_reports_their_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = dir.path().join("bad.env");
    std::fs::write(&env, "OTPD_LISTEN=0.0.0.0:8080\nOTPD_SECRET s3cr3t-value\n").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_otpd"))
        .args(["config", "check", "--env-file"])
        .arg(&env)
        .env_remove("OTPD_CONFIG")
        .output()
        .expect("run otpd config check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("bad.env line 2"), "{stderr}");
    assert!(!stderr.contains("s3cr3t"), "{stderr}");

    // A SQLite node from an env file alone: the file's values are the ones in force.
    std::fs::write(
        &env,
        "# one node\nOTPD_LISTEN=0.0.0.0:8089\nOTPD_DATABASE_URL=\"sqlite://data/x.db\"\n\
         OTPD_TLS__TERMINATED_BY_PROXY=true\nOTPD_METRICS__ENABLED=false\n",
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_otpd"))
        .args(["config", "check", "--env-file"])
        .arg(&env)
        .env_remove("OTPD_CONFIG")
        .env("OTPD_LISTEN", "nonsense")
        .output()
        .expect("run otpd config check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("listen: 0.0.0.0:8089"), "{stdout}");
    assert!(stdout.contains("database: sqlite://data/x.db"), "{stdout}");
    assert!(stdout.contains("tls: TLS by proxy"), "{stdout}");
    assert!(stdout.contains("metrics: off"), "{stdout}");
}

/// The files name each other: compose's env file, mounted configs and Dockerfile exist,
/// the systemd unit reads the installed env file, and the Redis settings keep acknowledged
/// writes (docs/scaling.md, "Running many nodes", promises these).
#[test]
fn the_deployment_files_are_consistent() {
    let compose = read("compose.yaml");
    assert!(compose.contains("env_file: otpd.env"));
    for rel in ["otpd.env", "Dockerfile", "nginx.conf", "redis.conf"] {
        assert!(compose.contains(rel), "compose.yaml uses {rel}");
        assert!(deploy().join(rel).is_file(), "deploy/{rel} exists");
    }
    for node in ["otpd-1:", "otpd-2:", "otpd-3:"] {
        assert!(compose.contains(node), "three nodes: {node}");
        assert!(read("nginx.conf").contains(&format!("server {node}8080")));
    }
    assert!(compose.contains("/readyz"), "health check on readiness");
    assert!(read("Dockerfile").contains("COPY deploy/otpd.toml /etc/otpd/otpd.toml"));

    let unit = read("systemd/otpd@.service");
    for line in [
        "EnvironmentFile=/etc/otpd/otpd.env",
        "Environment=OTPD_CONFIG=/etc/otpd/otpd.toml",
        "ExecStartPre=/usr/local/bin/otpd config check",
        "ExecStart=/usr/local/bin/otpd serve",
    ] {
        assert!(unit.lines().any(|l| l == line), "otpd@.service: {line}");
    }

    let redis = read("redis.conf");
    for line in [
        "appendonly yes",
        "appendfsync always",
        "maxmemory-policy noeviction",
    ] {
        assert!(redis.lines().any(|l| l == line), "redis.conf: {line}");
    }
    // Every node shares one secret file; none generates its own.
    for env_file in ENV_FILES {
        let env = read(env_file);
        assert!(env.contains("OTPD_SECRET_FILE="), "{env_file}");
        assert!(
            !env.lines().any(|l| l.starts_with("OTPD_SECRET=")),
            "{env_file}"
        );
    }
}
