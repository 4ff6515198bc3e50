//! What each subcommand does.

use std::io::IsTerminal;

use anyhow::{Context, anyhow};
use chrono::Utc;
use otpd_core::apikey::{Role, mint};
use otpd_server::config::{FileCheck, LogFormat};
use otpd_server::{Application, Config};
use secrecy::ExposeSecret;
use tracing_subscriber::EnvFilter;

use crate::cli::{
    Cli, ClientArgs, Command, ConfigCommand, EXIT_EXPIRED, EXIT_NO_ATTEMPTS_LEFT, EXIT_NOT_FOUND,
    EXIT_UNREACHABLE, EXIT_WRONG_CODE, KeysCommand, RoleArg,
};

/// A failure with an exit status of its own (`otpd check`'s outcomes, an unreachable
/// server), so scripts can tell them apart.
#[derive(Debug)]
pub struct Failure {
    /// The process's exit status.
    pub status: u8,
    /// Printed on stderr after `otpd: ` (nothing when empty: the summary said it).
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// Log filter when `RUST_LOG` is not set.
const DEFAULT_LOG_FILTER: &str = "info,sqlx=warn,tower_http=info";

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = match &cli.command {
        Some(Command::Config {
            action:
                ConfigCommand::Check {
                    env_files,
                    skip_files,
                },
        }) => Config::check(
            cli.config.as_deref(),
            (!env_files.is_empty()).then_some(env_files.as_slice()),
            if *skip_files {
                FileCheck::Elsewhere
            } else {
                FileCheck::Here
            },
        )?,
        _ => Config::load(cli.config.as_deref())?,
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config).await,
        Command::Migrate => {
            otpd_server::app::open_store(&config).await?.close().await;
            println!(
                "migrations applied to {}",
                otpd_store::redacted(&config.database_url)
            );
            Ok(())
        }
        Command::Config {
            action: ConfigCommand::Check { .. },
        } => {
            otpd_delivery_check(&config)?;
            println!("configuration OK");
            Ok(())
        }
        Command::Keys { action } => keys(config, action).await,
        Command::Send {
            to,
            channel,
            service,
            client,
        } => {
            let mut body = serde_json::json!({"to": to});
            if let Some(c) = channel {
                body["channel"] = c.into();
            }
            if let Some(s) = service {
                body["service"] = s.into();
            }
            let (status, reply) = call(&config, &client, "/v1/verifications", body).await?;
            if client.json {
                print_json(&reply);
            }
            if status.is_success() {
                if !client.json {
                    println!("{}", sent_summary(&reply));
                }
                Ok(())
            } else {
                Err(anyhow!(problem_summary(status, &reply)))
            }
        }
        Command::Check {
            to,
            id,
            code,
            service,
            client,
        } => {
            let mut body = match (to, id) {
                (_, Some(id)) => serde_json::json!({"id": id, "code": code}),
                (to, None) => serde_json::json!({"to": to, "code": code}),
            };
            if let Some(s) = service {
                body["service"] = s.into();
            }
            let (status, reply) = call(&config, &client, "/v1/verifications/check", body).await?;
            if client.json {
                print_json(&reply);
            }
            let (exit, line) = check_outcome(status, &reply);
            if !client.json {
                println!("{line}");
            }
            match exit {
                0 => Ok(()),
                1 => Err(anyhow!(line)),
                status => Err(Failure {
                    status,
                    message: String::new(),
                }
                .into()),
            }
        }
    }
}

/// `config check`: loading already validated everything; this names what is in force.
fn otpd_delivery_check(config: &Config) -> anyhow::Result<()> {
    config.validate()?;
    let tls = config.edge()?;
    // The files `serve` would load, loaded the same way.
    otpd_server::listener::TlsFiles::from_config(&config.tls)?;
    let providers: Vec<String> = config
        .effective_providers()
        .into_iter()
        .map(|p| format!("{} ({})", p.name, p.kind))
        .collect();
    println!("listen: {}", config.listen);
    println!("tls: {}", tls.describe());
    println!(
        "metrics: {}",
        match (
            config.metrics.enabled,
            config.metrics.bearer_token.is_some()
        ) {
            (false, _) => "off",
            (true, true) => "on, token required",
            (true, false) => "on, open (loopback only)",
        }
    );
    println!("database: {}", otpd_store::redacted(&config.database_url));
    if let Some(redis) = &config.redis_url {
        println!("redis: {}", otpd_store::redacted(redis));
    }
    println!("providers: {}", providers.join(", "));
    println!("routes: {}", config.routes.len());
    Ok(())
}

fn init_tracing(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Pretty => builder.init(),
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    init_tracing(config.log_format);
    let public = config.public_url.clone();
    let mut app = Application::build(config).await?;
    let scheme = if app.is_tls() { "https" } else { "http" };
    let base = public.unwrap_or_else(|| format!("{scheme}://{}", app.local_addr()));
    println!("otpd listening on {base}");
    println!("  API reference: {base}/docs");
    println!("  Dashboard:     {base}/dashboard");
    if let Some(key) = app.take_bootstrap_key() {
        println!(
            "  Admin API key (shown once, store it now): {}",
            key.as_str()
        );
    } else {
        println!(
            "  Lost the admin key? Mint another on this host, with the same configuration: \
             otpd keys create --role admin --name NAME"
        );
    }
    app.run_until_stopped(shutdown_signal()).await?;
    println!("otpd stopped");
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutting down: finishing in-flight requests and deliveries");
}

async fn keys(config: Config, action: KeysCommand) -> anyhow::Result<()> {
    let store = otpd_server::app::open_store(&config).await?;
    otpd_server::app::ensure_default_service(&*store).await?;
    let result = match action {
        KeysCommand::Create { name, role, test } => {
            let role = match role {
                RoleArg::Admin => Role::Admin,
                RoleArg::Verify => Role::Verify,
            };
            let key = mint(&name, role, test, None, Utc::now());
            store.insert_key(&key.record, &key.digest).await?;
            println!("id:   {}", key.record.id);
            println!(
                "role: {}{}",
                role.as_str(),
                if test { " (test)" } else { "" }
            );
            println!("key:  {}", key.secret.as_str());
            eprintln!("The key is shown once; store it now.");
            Ok(())
        }
        KeysCommand::List => {
            let keys = store.list_keys().await?;
            if keys.is_empty() {
                println!("no keys yet: `otpd keys create --name NAME` mints one");
                return Ok(());
            }
            let width = keys.iter().map(|k| k.id.len()).max().unwrap_or(2).max(2);
            println!(
                "{:<width$}  {:<6} {:<4} {:<9} {:<10}  {:<7}  NAME",
                "ID", "ROLE", "MODE", "ENDS WITH", "CREATED", "STATE"
            );
            for k in keys {
                println!(
                    "{:<width$}  {:<6} {:<4} {:<9} {:<10}  {:<7}  {}",
                    k.id,
                    k.role.as_str(),
                    if k.test { "test" } else { "live" },
                    format!("…{}", k.hint),
                    k.created_at.format("%Y-%m-%d"),
                    if k.revoked_at.is_some() {
                        "revoked"
                    } else {
                        "active"
                    },
                    k.name,
                );
            }
            Ok(())
        }
        KeysCommand::Revoke { id } => {
            if store.revoke_key(&id, Utc::now()).await? {
                println!("revoked {id}");
                Ok(())
            } else {
                Err(anyhow!("no live key with id {id}"))
            }
        }
    };
    store.close().await;
    result
}

/// POSTs to a running server: the reply's status and JSON body (`null` when it is not JSON).
async fn call(
    config: &Config,
    client: &ClientArgs,
    path: &str,
    body: serde_json::Value,
) -> anyhow::Result<(reqwest::StatusCode, serde_json::Value)> {
    let (base, from) = match (&client.url, &config.public_url) {
        (Some(url), _) => (url.clone(), "from --url or OTPD_URL"),
        (None, Some(url)) => (
            url.clone(),
            "the configuration's public_url; pass --url or set OTPD_URL for another",
        ),
        (None, None) => {
            let scheme = if config.tls.cert_file.is_some() {
                "https"
            } else {
                "http"
            };
            (
                format!("{scheme}://{}", config.listen),
                "the configuration's listen address; pass --url or set OTPD_URL for another",
            )
        }
    };
    let key = client
        .key
        .clone()
        .or_else(|| {
            config
                .master_key
                .as_ref()
                .map(|k| k.expose_secret().to_string())
        })
        .context("no API key: pass --key or set OTPD_API_KEY")?;
    let reply = reqwest::Client::new()
        .post(format!("{}{path}", base.trim_end_matches('/')))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .map_err(|e| Failure {
            status: EXIT_UNREACHABLE,
            message: format!("cannot reach otpd at {base} ({from}): {e}"),
        })?;
    let status = reply.status();
    let text = reply.text().await.unwrap_or_default();
    let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    Ok((status, json))
}

fn print_json(reply: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(reply).unwrap_or_else(|_| reply.to_string())
    );
}

fn text<'a>(reply: &'a serde_json::Value, field: &str) -> &'a str {
    reply[field].as_str().unwrap_or("?")
}

/// One line for a started (or resent) verification.
fn sent_summary(reply: &serde_json::Value) -> String {
    format!(
        "sent: {} to {} by {} (service {}, expires {})",
        text(reply, "id"),
        text(reply, "to"),
        text(reply, "channel"),
        text(reply, "service"),
        text(reply, "expires_at"),
    )
}

/// One line for a refused request: the problem's title, detail and code.
fn problem_summary(status: reqwest::StatusCode, reply: &serde_json::Value) -> String {
    let title = reply["title"].as_str().unwrap_or("request refused");
    let mut line = format!("{title} (HTTP {}", status.as_u16());
    if let Some(code) = reply["code"].as_str() {
        line.push_str(&format!(", {code}"));
    }
    line.push(')');
    if let Some(detail) = reply["detail"].as_str() {
        line.push_str(&format!(": {detail}"));
    } else if let Some(body) = reply.as_str().filter(|b| !b.is_empty()) {
        line.push_str(&format!(": {body}"));
    }
    line
}

/// `otpd check`'s exit status and line for a reply.
fn check_outcome(status: reqwest::StatusCode, reply: &serde_json::Value) -> (u8, String) {
    if status.is_success() {
        return if reply["valid"].as_bool() == Some(true) {
            (
                0,
                format!("approved: {} ({})", text(reply, "id"), text(reply, "to")),
            )
        } else {
            let left = reply["remaining_attempts"]
                .as_u64()
                .map_or("some".to_string(), |n| n.to_string());
            (
                EXIT_WRONG_CODE,
                format!(
                    "wrong code: {left} attempt{} left ({})",
                    if left == "1" { "" } else { "s" },
                    text(reply, "id")
                ),
            )
        };
    }
    let summary = problem_summary(status, reply);
    let exit = match reply["code"].as_str() {
        Some("expired") => EXIT_EXPIRED,
        Some("not_found" | "verification_not_pending") => EXIT_NOT_FOUND,
        Some("max_attempts_reached") => EXIT_NO_ATTEMPTS_LEFT,
        _ => 1,
    };
    let line = match exit {
        EXIT_EXPIRED => format!("expired: {summary}"),
        EXIT_NOT_FOUND => format!("not found: {summary}"),
        EXIT_NO_ATTEMPTS_LEFT => format!("no attempts left: {summary}"),
        _ => summary,
    };
    (exit, line)
}
