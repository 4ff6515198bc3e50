//! What each subcommand does.

use std::io::IsTerminal;

use anyhow::{Context, anyhow, bail};
use chrono::Utc;
use otpd_core::apikey::{Role, mint};
use otpd_server::config::LogFormat;
use otpd_server::{Application, Config};
use secrecy::ExposeSecret;
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, ClientArgs, Command, ConfigCommand, KeysCommand, RoleArg};

/// Log filter when `RUST_LOG` is not set.
const DEFAULT_LOG_FILTER: &str = "info,sqlx=warn,tower_http=info";

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = match &cli.command {
        Some(Command::Config {
            action: ConfigCommand::Check { env_files },
        }) if !env_files.is_empty() => {
            Config::load_with_env_files(cli.config.as_deref(), env_files)?
        }
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
            call(&config, &client, "/v1/verifications", body).await
        }
        Command::Check {
            to,
            code,
            service,
            client,
        } => {
            let mut body = serde_json::json!({"to": to, "code": code});
            if let Some(s) = service {
                body["service"] = s.into();
            }
            call(&config, &client, "/v1/verifications/check", body).await
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
            for k in store.list_keys().await? {
                println!(
                    "{}  {:<6} {:<4} …{}  {}  {}{}",
                    k.id,
                    k.role.as_str(),
                    if k.test { "test" } else { "live" },
                    k.hint,
                    k.created_at.format("%Y-%m-%d"),
                    k.name,
                    if k.revoked_at.is_some() {
                        "  (revoked)"
                    } else {
                        ""
                    }
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

/// POSTs to a running server and prints the reply.
async fn call(
    config: &Config,
    client: &ClientArgs,
    path: &str,
    body: serde_json::Value,
) -> anyhow::Result<()> {
    let base = client
        .url
        .clone()
        .or_else(|| config.public_url.clone())
        .unwrap_or_else(|| {
            let scheme = if config.tls.cert_file.is_some() {
                "https"
            } else {
                "http"
            };
            format!("{scheme}://{}", config.listen)
        });
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
        .with_context(|| format!("cannot reach otpd at {base}"))?;
    let status = reply.status();
    let text = reply.text().await.unwrap_or_default();
    let pretty = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or(text);
    println!("{pretty}");
    if !status.is_success() {
        bail!("HTTP {}", status.as_u16());
    }
    Ok(())
}
